//! The `gconv` command's argument parsers on arbitrary text: the library's
//! `parse_padding` and `Space`/`ConvPath` parsers, and the binary's own argument module
//! (`src/bin/gconv/args.rs`, included by path since a binary cannot be a dependency).
//! For the two-value `--stride`/`--padding` pair the text is cut at its first newline.
#![no_main]

#[allow(dead_code)]
#[path = "../../gconv-std/src/bin/gconv/args.rs"]
mod args;

use gconv_std::{ConvPath, Padding, Space};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lib = gconv_std::parse_padding(text);
    let bin = args::parse_padding(text);
    assert_eq!(lib.is_ok(), bin.is_ok());
    if let Ok(p) = lib {
        // What parses is one of the four forms, and parses the same when re-written.
        let again = match p {
            Padding::Valid => "valid".to_string(),
            Padding::Same => "same".to_string(),
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => format!("{top},{bottom},{left},{right}"),
        };
        assert_eq!(gconv_std::parse_padding(&again), Ok(p));
    }
    let _ = args::parse_space(text);
    let _ = text.parse::<Space>();
    let _ = ConvPath::parse(text);
    if let Ok(n) = args::parse_positive(text) {
        assert!(n >= 1);
    }
    let (stride, padding) = text.split_once('\n').unwrap_or((text, "valid"));
    let _ = args::StridePadding {
        stride: stride.to_string(),
        padding: padding.to_string(),
    }
    .parse();
});
