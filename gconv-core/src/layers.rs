//! The non-convolution building blocks of a G-CNN, each validate-then-run like the
//! convolutions:
//!
//! * [`group_pool`]: max or mean over the orientation axis,
//!   `(N, C, |G|, H, W) -> (N, C, H, W)`, an invariant planar map;
//! * [`channel_affine`]: `y = scale[c] * x + shift[c]` per G-channel, shared by all
//!   planes of the channel: batch normalisation in inference form, with
//!   `scale = gamma / sqrt(var + eps)` and `shift = beta - mean * scale` computed once
//!   when the model is loaded (per-plane statistics would break equivariance);
//! * [`relu`]: `max(x, 0)` in place;
//! * [`global_avg_pool`]: the mean of every plane, `(P, H*W) -> (P,)`;
//! * [`dense`]: `y[n][j] = b[j] + sum_i W[j][i] x[n][i]`, `W` of shape
//!   `(out_features, in_features)` (PyTorch `Linear`).

use core::num::NonZeroUsize;

use crate::error::{Buffer, Dim, Error, check_len};
use crate::shape::checked_product;
use crate::simd::axpy;

/// Max or mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reduce {
    /// Maximum (NaN propagates).
    Max,
    /// Arithmetic mean.
    Mean,
}

/// [`check_len`] against a length computed with overflow checks.
fn check_checked_len(buffer: Buffer, found: usize, expected: Option<usize>) -> Result<(), Error> {
    check_len(buffer, found, expected.ok_or(Error::SizeOverflow)?)
}

/// Pools over the orientation axis: `y[n][c][h][w] = reduce_t x[n][c][t][h][w]` for an
/// input `(N, C, orientations, H, W)` given as `items = N * C`,
/// `plane_len = H * W`. The output `(N, C, H, W)` is invariant: the group permutes
/// the orientations and moves pixels, and the reduction ignores the order.
///
/// # Errors
/// [`Error::ZeroDimension`] for zero orientations; [`Error::BufferLength`] when
/// `input` is not `items * orientations * plane_len` or `output` not
/// `items * plane_len`; [`Error::SizeOverflow`].
pub fn group_pool(
    reduce: Reduce,
    items: usize,
    orientations: usize,
    plane_len: usize,
    input: &[f32],
    output: &mut [f32],
) -> Result<(), Error> {
    if orientations == 0 {
        return Err(Error::ZeroDimension(Dim::InChannels));
    }
    check_checked_len(
        Buffer::Input,
        input.len(),
        checked_product(&[items, orientations, plane_len]),
    )?;
    check_checked_len(
        Buffer::Output,
        output.len(),
        checked_product(&[items, plane_len]),
    )?;
    // Chunk sizes as `NonZeroUsize` (no panic path), the item's from `checked_mul`
    // (see `crate::pool`): a zero plane has nothing to write, and the product fits
    // since the input's length did (items = 0 aside, which has no input either).
    let (Some(plane_nz), Some(o)) = (
        NonZeroUsize::new(plane_len),
        NonZeroUsize::new(orientations),
    ) else {
        return Ok(());
    };
    let Some(item) = plane_nz.checked_mul(o) else {
        return Ok(());
    };
    for (x, y) in input
        .chunks_exact(item.get())
        .zip(output.chunks_exact_mut(plane_nz.get()))
    {
        let mut planes = x.chunks_exact(plane_nz.get());
        // The first orientation: every item has `orientations >= 1` planes.
        let first = planes.next();
        debug_assert!(first.is_some(), "an item without planes");
        for (acc, &v) in y.iter_mut().zip(first.unwrap_or(&[])) {
            *acc = v;
        }
        for plane in planes {
            match reduce {
                Reduce::Max => {
                    for (acc, &v) in y.iter_mut().zip(plane) {
                        if v > *acc || v.is_nan() {
                            *acc = v;
                        }
                    }
                }
                Reduce::Mean => axpy(y, plane, 1.0),
            }
        }
        if reduce == Reduce::Mean {
            let inv = 1.0 / orientations as f32;
            y.iter_mut().for_each(|v| *v *= inv);
        }
    }
    Ok(())
}

/// `data[n][c][..] = scale[c] * data[n][c][..] + shift[c]` in place, for data laid
/// out `(N, C, per_channel)` where `per_channel` is `|G| * H * W` for a group map
/// (every plane of G-channel `c` shares its parameters) or `H * W` for a Z2 map.
///
/// # Errors
/// [`Error::BufferLength`] when `scale` or `shift` is not `channels` long or `data`
/// not a whole number of `(channels, per_channel)` items.
pub fn channel_affine(
    channels: usize,
    per_channel: usize,
    scale: &[f32],
    shift: &[f32],
    data: &mut [f32],
) -> Result<(), Error> {
    check_len(Buffer::Weight, scale.len(), channels)?;
    check_len(Buffer::Bias, shift.len(), channels)?;
    let item = checked_product(&[channels, per_channel]).ok_or(Error::SizeOverflow)?;
    // `per_channel` is zero only when `item` is; as `NonZeroUsize`s the chunk sizes
    // have no panic path.
    let (Some(item), Some(per_channel)) = (NonZeroUsize::new(item), NonZeroUsize::new(per_channel))
    else {
        return check_len(Buffer::Input, data.len(), 0);
    };
    let item = item.get();
    if !data.len().is_multiple_of(item) {
        return Err(Error::BufferLength {
            buffer: Buffer::Input,
            expected: (data.len() / item + 1) * item,
            found: data.len(),
        });
    }
    for image in data.chunks_exact_mut(item) {
        for ((block, &a), &b) in image
            .chunks_exact_mut(per_channel.get())
            .zip(scale)
            .zip(shift)
        {
            block.iter_mut().for_each(|v| *v = a * *v + b);
        }
    }
    Ok(())
}

/// `max(x, 0)` in place (NaN stays NaN).
pub fn relu(data: &mut [f32]) {
    data.iter_mut().for_each(|v| {
        if *v < 0.0 {
            *v = 0.0;
        }
    });
}

/// The mean of each of `planes` planes of `plane_len` values: `y[p] = mean x[p][..]`.
///
/// # Errors
/// [`Error::ZeroDimension`] for `plane_len = 0`; [`Error::BufferLength`];
/// [`Error::SizeOverflow`].
pub fn global_avg_pool(
    planes: usize,
    plane_len: usize,
    input: &[f32],
    output: &mut [f32],
) -> Result<(), Error> {
    if plane_len == 0 {
        return Err(Error::ZeroDimension(Dim::Height));
    }
    check_checked_len(
        Buffer::Input,
        input.len(),
        checked_product(&[planes, plane_len]),
    )?;
    check_len(Buffer::Output, output.len(), planes)?;
    let inv = 1.0 / plane_len as f32;
    for (x, y) in input.chunks_exact(plane_len).zip(output.iter_mut()) {
        *y = x.iter().sum::<f32>() * inv;
    }
    Ok(())
}

/// Fully connected layer: `y[n][j] = b[j] + sum_i weight[j][i] * x[n][i]`, input
/// `(batch, in_features)`, weight `(out_features, in_features)` (PyTorch `Linear`),
/// bias `(out_features,)`, output `(batch, out_features)`.
///
/// # Errors
/// [`Error::ZeroDimension`] for zero features; [`Error::BufferLength`];
/// [`Error::SizeOverflow`].
pub fn dense(
    batch: usize,
    in_features: usize,
    out_features: usize,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) -> Result<(), Error> {
    if in_features == 0 {
        return Err(Error::ZeroDimension(Dim::InChannels));
    }
    if out_features == 0 {
        return Err(Error::ZeroDimension(Dim::OutChannels));
    }
    check_checked_len(
        Buffer::Input,
        input.len(),
        checked_product(&[batch, in_features]),
    )?;
    check_checked_len(
        Buffer::Weight,
        weight.len(),
        checked_product(&[out_features, in_features]),
    )?;
    if let Some(b) = bias {
        check_len(Buffer::Bias, b.len(), out_features)?;
    }
    check_checked_len(
        Buffer::Output,
        output.len(),
        checked_product(&[batch, out_features]),
    )?;
    // The bias (checked: `out_features` values) as an iterator, then zeros: `dot + 0.0`
    // without a bias, as before.
    let bias = bias.unwrap_or(&[]);
    for (x, y) in input
        .chunks_exact(in_features)
        .zip(output.chunks_exact_mut(out_features))
    {
        let mut b = bias.iter().copied().chain(core::iter::repeat(0.0));
        for (yj, row) in y.iter_mut().zip(weight.chunks_exact(in_features)) {
            let dot: f32 = row.iter().zip(x).map(|(w, v)| w * v).sum();
            *yj = dot + b.next().unwrap_or(0.0);
        }
    }
    Ok(())
}
