//! Spatial pooling of [`Tensor`]s: Z2 maps `(N, C, H, W)` and group maps
//! `(N, C, |G|, H, W)`, every plane alike. See [`gconv_core::pool`] for the formulas
//! and [`gconv_core::equivariance::pool_is_equivariant`] for when it is exactly
//! equivariant.

use gconv_core::Padding;
use gconv_core::pool::{PoolShape, avg_pool, max_pool};

use crate::error::Error;
use crate::tensor::Tensor;

/// Max or average.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// Maximum over the window (padding never wins).
    Max,
    /// Mean over the window, padding counted as zeros.
    Avg,
}

/// A spatial pooling layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2d {
    /// Max or average.
    pub kind: PoolKind,
    /// Window size `k`.
    pub window: usize,
    /// Stride.
    pub stride: usize,
    /// Padding (each side at most `k / 2`).
    pub padding: Padding,
}

impl Pool2d {
    /// `k x k` max pooling with stride `k`, no padding (the usual `pool2`).
    pub const fn max(window: usize) -> Self {
        Pool2d {
            kind: PoolKind::Max,
            window,
            stride: window,
            padding: Padding::Valid,
        }
    }

    /// Output shape for an input of `shape` (rank 4 or 5).
    ///
    /// # Errors
    /// [`Error::Shape`] for another rank; [`Error::Core`] for an invalid window,
    /// stride or padding.
    pub fn output_shape(&self, shape: &[usize]) -> Result<Vec<usize>, Error> {
        let (pool_shape, _) = self.pool_shape(shape)?;
        let geo = pool_shape.geometry().map_err(core_error)?;
        let mut out = shape.to_vec();
        let rank = out.len();
        out[rank - 2] = geo.out_height();
        out[rank - 1] = geo.out_width();
        Ok(out)
    }

    fn pool_shape(&self, shape: &[usize]) -> Result<(PoolShape, usize), Error> {
        if !(shape.len() == 4 || shape.len() == 5) {
            return Err(Error::Shape {
                tensor: "pooling input",
                expected: "(N, C, H, W) or (N, C, |G|, H, W)".into(),
                found: shape.to_vec(),
            });
        }
        let rank = shape.len();
        let planes = shape[..rank - 2].iter().product();
        let pool_shape = PoolShape {
            planes,
            height: shape[rank - 2],
            width: shape[rank - 1],
            window: self.window,
            stride: self.stride,
            padding: self.padding,
        };
        Ok((pool_shape, rank))
    }

    /// Pools every plane of `x`.
    ///
    /// # Errors
    /// As [`output_shape`](Self::output_shape).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, Error> {
        let (pool_shape, _) = self.pool_shape(x.shape())?;
        let mut out = Tensor::zeros(self.output_shape(x.shape())?);
        match self.kind {
            PoolKind::Max => max_pool(&pool_shape, x.data(), out.data_mut()),
            PoolKind::Avg => avg_pool(&pool_shape, x.data(), out.data_mut()),
        }
        .map_err(core_error)?;
        Ok(out)
    }

    /// Does the rule call this pooling exactly equivariant on a `height x width` map?
    pub fn is_equivariant_on(&self, height: usize, width: usize) -> bool {
        gconv_core::equivariance::pool_is_equivariant(
            height,
            width,
            self.window,
            self.stride,
            self.padding,
        )
    }
}

fn core_error(source: gconv_core::Error) -> Error {
    Error::Core {
        layer: "pooling".into(),
        source,
    }
}
