//! Generates the Rust source of the digits models with `gconv export`'s library
//! function, for `tests/model_runner.rs` to compile and run (the same source the
//! firmware compiles).

use std::path::Path;

use gconv_std::Model;
use gconv_std::export::{Exportable, rust_source};
use gconv_std::quant::QModel;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo::rerun-if-changed={}", root.display());
    for name in ["p4cnn", "p4m"] {
        let q = root.join(format!("digits-{name}-int8"));
        let model = QModel::load(q.join("model.json"), q.join("model.safetensors")).unwrap();
        let (src, _) = rust_source(
            Exportable::Int8(&model),
            &format!("models/digits-{name}-int8"),
            None,
        )
        .unwrap();
        std::fs::write(out.join(format!("digits_{name}_int8.rs")), src).unwrap();
    }
    let f = root.join("digits-p4cnn");
    let model = Model::load(f.join("model.json"), f.join("model.safetensors")).unwrap();
    let (src, _) = rust_source(Exportable::F32(&model), "models/digits-p4cnn", None).unwrap();
    std::fs::write(out.join("digits_p4cnn_f32.rs"), src).unwrap();
}
