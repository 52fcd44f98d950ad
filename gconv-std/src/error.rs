//! Errors of the std API: every one names what was wrong, what was expected and what
//! was found.

use thiserror::Error;

/// The error type of gconv-std.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A tensor's shape does not fit the operation.
    #[error("{tensor}: expected shape {expected}, found {found:?}")]
    Shape {
        /// Which tensor (`"input"`, `"weight"`, `"bias"`, ...).
        tensor: &'static str,
        /// The expected shape, in words (e.g. `"(N, 3, 4, H, W)"`).
        expected: String,
        /// The shape that was given.
        found: Vec<usize>,
    },
    /// A tensor was built from data whose length does not match its shape.
    #[error("tensor data has {found} values but shape {shape:?} needs {expected}")]
    DataLength {
        /// The shape given.
        shape: Vec<usize>,
        /// Product of the shape.
        expected: usize,
        /// Length of the data given.
        found: usize,
    },
    /// A group element index out of range.
    #[error("group element {element} does not exist in {group} (order {order})")]
    Element {
        /// Group name.
        group: &'static str,
        /// Its order.
        order: usize,
        /// The index given.
        element: usize,
    },
    /// A file could not be read or written, or is not what it must be (not .npy,
    /// wrong dtype, truncated, ...).
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong, in words.
        message: String,
    },
    /// Two arguments do not fit together (e.g. `--from c4 --to d4`).
    #[error("{0}")]
    Usage(String),
    /// An error from a gconv-core kernel (shape, padding, buffer), with the layer it
    /// came from.
    #[error("{layer}: {source}")]
    Core {
        /// The layer, e.g. `"Z2->C4 conv"`.
        layer: String,
        /// The core error.
        source: gconv_core::Error,
    },
    /// `GCONV_KERNEL` or `GCONV_INT8_KERNEL` names no kernel, or one this CPU cannot
    /// run.
    #[error(transparent)]
    KernelEnv(#[from] crate::fast::KernelEnvError),
}
