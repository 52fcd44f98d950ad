//! # gconv-std
//!
//! The std side of gconv: owned [`Tensor`]s in the `CONVENTIONS.md` layouts, the
//! transformation law ([`transform()`]), convolution layers for the four pairs
//! ([`Z2ToC4`], [`C4ToC4`], [`Z2ToD4`], [`D4ToD4`]) owning raw weights and caching the
//! expanded bank, parameter accounting ([`params`]), whole models loaded from JSON +
//! safetensors ([`Model`], [`quant`]), and, behind Cargo features, `.npy` I/O, the
//! independent f64 test oracle and the `gconv` command line.
//!
//! ```
//! use gconv_std::{C4ToC4, Padding, Tensor, Z2ToC4, transform};
//!
//! let lift = Z2ToC4::new(1, 4, 3, 1, Padding::Same, 7)?;
//! let gconv = C4ToC4::new(4, 4, 3, 1, Padding::Same, 8)?;
//! let x = Tensor::from_fn(vec![1, 1, 9, 9], |i| (i % 7) as f32 - 3.0);
//! let y = gconv.forward(&lift.forward(&x)?)?; // (1, 4, 4, 9, 9)
//! // Rotate the input by 90°: the output rotates and its orientation planes shift.
//! let y_rot = gconv.forward(&lift.forward(&transform::<gconv_std::C4>(1, &x)?)?)?;
//! let err = y_rot.max_abs_diff(&transform::<gconv_std::C4>(1, &y)?).unwrap();
//! assert!(err < 1e-4);
//! # Ok::<(), gconv_std::Error>(())
//! ```
//!
//! # Cargo features
//!
//! A plain dependency on gconv-std compiles the library only: no command-line parser,
//! no `.npy` reader, no test oracle.
//!
//! | Feature | Default | Enables | Extra dependencies |
//! |---|---|---|---|
//! | `rayon` | yes | multi-threaded forward passes (`GConv::forward_into_par`, the rayon split of the fast and Fourier paths) | rayon |
//! | `npy` | no | the `npy` module: NumPy `.npy` reading and writing of tensors | npyz, py_literal |
//! | `reference` | no | the `reference` module: the slow, independent f64 and int8 oracle the tests and benchmarks compare against. Test support: it panics on inconsistent arguments | none |
//! | `cli` | no | the `gconv` binary (`src/bin/gconv/`); implies `npy` | clap, npyz, py_literal |
//!
//! The binary is built and run from the workspace root with
//! `cargo run --release -p gconv-std --features cli --bin gconv -- demo`. The
//! workspace's tests and benchmarks turn on the features they need, so
//! `cargo test --workspace` builds and tests all of it.
// `unsafe` only in `fast` and `fourier`: the calls of the AVX-512 and AVX2+FMA kernels
// after run-time detection. Tested under Miri.
#![deny(unsafe_code)]

pub mod any;
pub mod error;
pub mod export;
pub mod fast;
pub mod fourier;
pub mod import;
pub mod layer;
pub mod model;
pub mod model_file;
#[cfg(feature = "npy")]
pub mod npy;
pub mod parallel;
pub mod params;
pub mod pool;
pub mod quant;
#[cfg(feature = "reference")]
pub mod reference;
pub mod tensor;
pub mod transform;

pub use any::{AnyConv, Pair, Space, parse_padding};
pub use error::Error;
pub use gconv_core::{self, C4, D4, Group, Padding};
pub use layer::{
    C4ToC4, ConvPath, D4ToD4, FromGroup, FromZ2, GConv, GroupConv, LiftingConv, Z2ToC4, Z2ToD4,
};
pub use model::{Feature, Layer, Model};
pub use parallel::forward_into_threads;
pub use params::LayerParams;
pub use pool::{Pool2d, PoolKind};
pub use tensor::Tensor;
pub use transform::transform;

/// The README's Rust examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
