//! The small vocabulary of vector loops the kernels are written in. Portable code,
//! written in fixed-width chunks so LLVM vectorizes it on any target.

/// Chunk width: 8 f32 lanes (one AVX register, two NEON / SSE registers).
const LANES: usize = 8;

/// `y[i] += a * x[i]` for `i < min(y.len(), x.len())`.
#[inline]
pub(crate) fn axpy(y: &mut [f32], x: &[f32], a: f32) {
    let n = y.len().min(x.len());
    let (y, x) = (&mut y[..n], &x[..n]);
    let mut y_chunks = y.chunks_exact_mut(LANES);
    let mut x_chunks = x.chunks_exact(LANES);
    for (yc, xc) in (&mut y_chunks).zip(&mut x_chunks) {
        for lane in 0..LANES {
            yc[lane] += a * xc[lane];
        }
    }
    for (yi, xi) in y_chunks
        .into_remainder()
        .iter_mut()
        .zip(x_chunks.remainder())
    {
        *yi += a * *xi;
    }
}

/// `y[i] += a * x[i * stride]` for every `i` with `i * stride < x.len()` and
/// `i < y.len()`.
#[inline]
pub(crate) fn axpy_strided(y: &mut [f32], x: &[f32], stride: usize, a: f32) {
    for (yi, xi) in y.iter_mut().zip(x.iter().step_by(stride.max(1))) {
        *yi += a * *xi;
    }
}
