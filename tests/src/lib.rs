//! Shared helpers for the cross-crate integration tests in `tests/`.
//!
//! * [`groupy_indices_dir`] and [`d4_even_extension_dir`]: the GrouPy reference index
//!   tables, committed under `tests/data/groupy-indices/` (see the README.md there for
//!   where they come from and what each file holds).
//! * [`read_npy_i32`] reads one of those int32 `.npy` files.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Location of the GrouPy index tables, relative to this crate's manifest directory.
pub const GROUPY_INDICES: &str = "data/groupy-indices";

/// Location of the even-`K` D4 extension tables (not GrouPy output), relative to this
/// crate's manifest directory.
pub const D4_EVEN_EXTENSION: &str = "data/groupy-indices/d4-even-extension";

/// `<this crate>/<relative>`, found from the manifest directory, so from any working
/// directory.
///
/// # Panics
/// If it is not a directory: the data is part of the repository, so its absence is a
/// broken checkout, never a reason to skip a test.
fn data_dir(relative: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    assert!(
        dir.is_dir(),
        "{} is not a directory: the reference data is committed with the tests",
        dir.display()
    );
    dir
}

/// The folder of GrouPy's index tables, `tests/data/groupy-indices/`
/// ([`GROUPY_INDICES`]).
///
/// # Panics
/// If the folder is missing.
pub fn groupy_indices_dir() -> PathBuf {
    data_dir(GROUPY_INDICES)
}

/// The folder of the even-`K` D4 extension tables,
/// `tests/data/groupy-indices/d4-even-extension/` ([`D4_EVEN_EXTENSION`]).
///
/// # Panics
/// If the folder is missing.
pub fn d4_even_extension_dir() -> PathBuf {
    data_dir(D4_EVEN_EXTENSION)
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
