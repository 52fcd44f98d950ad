//! Shared helpers for the cross-crate integration tests in `tests/`.
//!
//! * [`shared_reference_dir`] finds the `shared` folder that holds the GrouPy reference
//!   tables (`shared/reference/groupy-indices`), beside the repository.
//! * [`read_npy_i32`] reads one of those int32 `.npy` files.

use std::env;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Environment variable that overrides the location of the `shared` folder.
pub const SHARED_DIR_ENV: &str = "GCONV_SHARED_DIR";

/// Path of the GrouPy index tables inside the `shared` folder.
pub const GROUPY_INDICES: &str = "reference/groupy-indices";

/// Path of the even-`K` D4 extension tables inside the `shared` folder.
pub const D4_EVEN_EXTENSION: &str = "reference/groupy-indices/d4-even-extension";

/// Is this run under continuous integration (`CI` is `true` or `1`)? There, missing
/// reference data is an error instead of a skipped test.
pub fn running_under_ci() -> bool {
    env::var("CI").is_ok_and(|v| {
        let v = v.trim();
        v == "1" || v.eq_ignore_ascii_case("true")
    })
}

/// The `shared` folder that holds `reference/groupy-indices`, or `None` when it is absent
/// (after a loud warning that the calling test is skipped).
///
/// Looked up, in order:
/// 1. `$GCONV_SHARED_DIR` ([`SHARED_DIR_ENV`]), when set. An override that does not
///    contain `reference/groupy-indices` is a configuration error and always panics.
/// 2. `<repository>/../shared`, i.e. `<CARGO_MANIFEST_DIR>/../../shared`.
///
/// # Panics
/// When the data is missing and [`running_under_ci`], with a message starting
/// "shared reference data missing under CI"; and for a bad override (see above).
pub fn shared_reference_dir() -> Option<PathBuf> {
    if let Some(dir) = env::var_os(SHARED_DIR_ENV) {
        let dir = PathBuf::from(dir);
        let indices = dir.join(GROUPY_INDICES);
        assert!(
            indices.is_dir(),
            "{SHARED_DIR_ENV} is set to {} but {} is not a directory",
            dir.display(),
            indices.display()
        );
        return Some(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = manifest.join("..").join("..").join("shared");
    let indices = dir.join(GROUPY_INDICES);
    if indices.is_dir() {
        return Some(dir);
    }
    let why = format!(
        "{} not found (looked beside the repository, from {}; set {SHARED_DIR_ENV} to the \
         `shared` folder to point elsewhere)",
        indices.display(),
        manifest.display()
    );
    if running_under_ci() {
        panic!("shared reference data missing under CI: {why}");
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    eprintln!();
    eprintln!("################################################################");
    eprintln!("WARNING: test `{test}` SKIPPED: GrouPy reference data missing.");
    eprintln!("WARNING: {why}");
    eprintln!("WARNING: under CI (CI=true) this is a failure, not a skip.");
    eprintln!("################################################################");
    None
}

/// An int32 array read from a `.npy` file: C-order `shape` and row-major `data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyI32 {
    /// Shape, outermost axis first.
    pub shape: Vec<u64>,
    /// The elements in C (row-major) order; `data.len()` is the product of `shape`.
    pub data: Vec<i32>,
}

/// Reads a `.npy` file that must hold a C-order, little-endian int32 (`<i4`) array.
///
/// # Panics
/// If the file cannot be read or parsed, if its dtype is anything but `<i4`, if it is
/// Fortran-ordered, or if the element count does not match the shape. Test data that is
/// not what the tests expect must fail loudly, never be converted.
pub fn read_npy_i32(path: &Path) -> NpyI32 {
    let file = File::open(path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let npy = npyz::NpyFile::new(BufReader::new(file))
        .unwrap_or_else(|e| panic!("{} is not a valid .npy file: {e}", path.display()));
    match npy.dtype() {
        npyz::DType::Plain(ty) if ty.to_string() == "<i4" => {}
        other => panic!(
            "{}: dtype {} is not little-endian int32 ('<i4')",
            path.display(),
            other.descr()
        ),
    }
    assert!(
        npy.order() == npyz::Order::C,
        "{}: Fortran-ordered array, expected C order",
        path.display()
    );
    let shape = npy.shape().to_vec();
    let data: Vec<i32> = npy
        .into_vec()
        .unwrap_or_else(|e| panic!("cannot read the data of {}: {e}", path.display()));
    let expected: u64 = shape.iter().product();
    assert_eq!(
        data.len() as u64,
        expected,
        "{}: {} elements for shape {shape:?}",
        path.display(),
        data.len()
    );
    NpyI32 { shape, data }
}
