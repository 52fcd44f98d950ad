//! The `.npy` reader on arbitrary bytes: the four readers (float32/float64 to f32,
//! exact int8, exact int32, exact float32) on the same input. A value read exactly as
//! float32 must read the same through the converting reader.
#![no_main]

use gconv_std::npy::{
    read_npy_bytes, read_npy_f32_strict_bytes, read_npy_i8_bytes, read_npy_i32_bytes,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let converting = read_npy_bytes("fuzz.npy", data);
    let strict = read_npy_f32_strict_bytes("fuzz.npy", data);
    if let Ok((shape, values)) = &strict {
        let t = converting.as_ref().expect("a float32 file reads as f32");
        assert_eq!(t.shape(), &shape[..]);
        let same = t
            .data()
            .iter()
            .zip(values)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same && t.len() == values.len());
    }
    for e in [converting.err(), strict.err()].into_iter().flatten() {
        let _ = e.to_string();
    }
    if let Ok((shape, values)) = read_npy_i8_bytes("fuzz.npy", data) {
        assert_eq!(shape.iter().product::<usize>(), values.len());
    }
    if let Ok((shape, values)) = read_npy_i32_bytes("fuzz.npy", data) {
        assert_eq!(shape.iter().product::<usize>(), values.len());
    }
});
