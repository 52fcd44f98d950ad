//! The shared `.npy` reader must read int32 exactly and refuse anything else loudly.

use std::path::PathBuf;

use gconv_tests::{NpyI32, read_npy_i32};

/// A per-process temporary file name.
fn temp_npy(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("gconv-tests-{}-{name}.npy", std::process::id()))
}

#[test]
fn reads_int32_exactly() {
    let path = temp_npy("i32");
    let data = vec![i32::MIN, -1, 0, 1, 7, i32::MAX];
    npyz::to_file_1d(&path, data.iter().copied()).expect("write");
    let read = read_npy_i32(&path);
    std::fs::remove_file(&path).ok();
    assert_eq!(
        read,
        NpyI32 {
            shape: vec![6],
            data
        }
    );
}

#[test]
#[should_panic(expected = "is not little-endian int32")]
fn refuses_int64() {
    let path = temp_npy("i64");
    npyz::to_file_1d(&path, [1i64, 2, 3]).expect("write");
    let result = std::panic::catch_unwind(|| read_npy_i32(&path));
    std::fs::remove_file(&path).ok();
    std::panic::resume_unwind(result.expect_err("int64 accepted"));
}

#[test]
#[should_panic(expected = "is not little-endian int32")]
fn refuses_float32() {
    let path = temp_npy("f32");
    npyz::to_file_1d(&path, [1.0f32, 2.0]).expect("write");
    let result = std::panic::catch_unwind(|| read_npy_i32(&path));
    std::fs::remove_file(&path).ok();
    std::panic::resume_unwind(result.expect_err("float32 accepted"));
}

#[test]
#[should_panic(expected = "cannot open")]
fn missing_file_panics() {
    read_npy_i32(&temp_npy("does-not-exist"));
}
