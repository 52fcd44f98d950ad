//! A plain owned tensor: `Vec<f32>` in C order plus its shape.
//!
//! Layouts follow `CONVENTIONS.md`: Z2 maps `(N, C, H, W)`, group maps
//! `(N, C, |G|, H, W)` with the orientation axis at -3, raw weights
//! `(C_out, C_in, nti, K, K)`.

use crate::error::Error;

/// An owned f32 tensor in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// Wraps `data` with `shape`.
    ///
    /// # Errors
    /// [`Error::DataLength`] when `data.len()` is not the product of `shape` (or the
    /// product overflows `usize`).
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, Error> {
        let expected = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if expected != Some(data.len()) {
            let expected = expected.unwrap_or(usize::MAX);
            return Err(Error::DataLength {
                shape,
                expected,
                found: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    ///
    /// # Panics
    /// Like `vec!`, when the shape's product overflows or the allocation fails.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let len = shape.iter().product();
        Tensor {
            shape,
            data: vec![0.0; len],
        }
    }

    /// A tensor whose value at flat index `i` is `f(i)`.
    ///
    /// # Panics
    /// Like `vec!`, when the shape's product overflows or the allocation fails.
    pub fn from_fn(shape: Vec<usize>, f: impl FnMut(usize) -> f32) -> Self {
        let len = shape.iter().product();
        Tensor {
            shape,
            data: (0..len).map(f).collect(),
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values in C order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values in C order, mutable (the shape stays fixed).
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor, returning its shape and values.
    pub fn into_parts(self) -> (Vec<usize>, Vec<f32>) {
        (self.shape, self.data)
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no values.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Largest absolute difference to `other`, or `None` when the shapes differ.
    /// NaN anywhere gives NaN.
    pub fn max_abs_diff(&self, other: &Tensor) -> Option<f32> {
        if self.shape != other.shape {
            return None;
        }
        Some(
            self.data
                .iter()
                .zip(&other.data)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, |m, d| {
                    if d.is_nan() || m.is_nan() {
                        f32::NAN
                    } else {
                        m.max(d)
                    }
                }),
        )
    }

    /// Largest absolute value (0 for an empty tensor).
    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, x| m.max(x.abs()))
    }

    /// Applies `f` to every value.
    pub fn map(&self, f: impl Fn(f32) -> f32) -> Tensor {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&x| f(x)).collect(),
        }
    }
}
