//! When is a convolution or pooling layer *exactly* equivariant?
//!
//! Output sample `i` of a window of size `K` with stride `s` and leading padding
//! `p` sits at input coordinate `pos(i) = i*s - p + (K-1)/2`. Rotations and flips act
//! about the array centre `(size-1)/2`, so the output grid maps onto itself exactly
//! when it is centred on the input:
//!
//! ```text
//! pos(0) + pos(out-1) == size - 1        (checked in doubled integer units)
//! ```
//!
//! Consequences (all checked by the tests against measured equivariance errors):
//! * `Valid` at stride 1 is always equivariant, odd or even `K`.
//! * Symmetric `Same` for odd `K` is equivariant; even `K` with the asymmetric
//!   `(K/2-1, K/2)` "same" padding is not (half-pixel shift); symmetric `K/2` is.
//! * Stride 2, `Valid`: odd `K` needs odd size, even `K` needs even size. 2x2/2
//!   pooling needs an even map, 3x3/2 pooling an odd one.
//!
//! The same rule covers pooling windows: call it with the pooling window as `k`.

use crate::shape::Padding;

/// The one-dimensional rule: is the output grid of a window of size `k`, `stride` and
/// padding `(pad_before, pad_after)` on an axis of `size` samples centred on the
/// input? False when the window does not fit or `k` or `stride` is zero.
pub const fn axis_is_centred(
    size: usize,
    k: usize,
    stride: usize,
    pad_before: usize,
    pad_after: usize,
) -> bool {
    let padded = size as u128 + pad_before as u128 + pad_after as u128;
    if k == 0 || stride == 0 || size == 0 || padded < k as u128 {
        return false;
    }
    let out = (padded - k as u128) / stride as u128 + 1;
    // 2*pos(0) + 2*pos(out-1) == 2*(size-1), divided by 2:
    // (k-1) + (out-1)*stride - 2*pad_before == size-1
    (k as u128 - 1) + (out - 1) * stride as u128 == size as u128 - 1 + 2 * pad_before as u128
}

/// Is a convolution (or pooling window) of size `k` over a `height x width` map
/// exactly equivariant under every element of C4 and D4?
///
/// Both axes must be centred ([`axis_is_centred`]). The 90° rotations (and, in D4,
/// the transposes) swap the axes: the rotated input is `width x height` and is padded
/// with the same `(top, bottom)` rows and `(left, right)` columns, so the rows'
/// padding must also centre the `width` axis and the columns' padding the `height`
/// axis, with the same first sample (`top == left`). Trailing padding may differ
/// where the stride never reads it. The map itself need not be square.
/// `Same` with an even kernel is an error elsewhere and is reported `false` here.
pub const fn layer_is_equivariant(
    height: usize,
    width: usize,
    k: usize,
    stride: usize,
    padding: Padding,
) -> bool {
    let [top, bottom, left, right] = match padding.resolve(k) {
        Ok(p) => p,
        Err(_) => return false,
    };
    top == left
        && axis_is_centred(height, k, stride, top, bottom)
        && axis_is_centred(width, k, stride, left, right)
        && axis_is_centred(width, k, stride, top, bottom)
        && axis_is_centred(height, k, stride, left, right)
}

/// The rule for a pooling window: identical to [`layer_is_equivariant`] with the
/// window size as `k` (named separately so call sites say what they check).
pub const fn pool_is_equivariant(
    height: usize,
    width: usize,
    window: usize,
    stride: usize,
    padding: Padding,
) -> bool {
    layer_is_equivariant(height, width, window, stride, padding)
}

// The consequences listed above, proven at compile time.
const _: () = {
    assert!(axis_is_centred(7, 4, 1, 0, 0)); // valid, even K
    assert!(axis_is_centred(8, 3, 1, 1, 1)); // same, odd K
    assert!(!axis_is_centred(8, 4, 1, 1, 2)); // TF "same", even K
    assert!(axis_is_centred(8, 4, 1, 2, 2)); // symmetric K/2
    assert!(axis_is_centred(9, 3, 2, 0, 0) && !axis_is_centred(8, 3, 2, 0, 0));
    assert!(axis_is_centred(8, 2, 2, 0, 0) && !axis_is_centred(9, 2, 2, 0, 0));
    // An unread extra column of padding does not matter.
    let unread = Padding::Explicit {
        top: 0,
        bottom: 0,
        left: 0,
        right: 1,
    };
    assert!(layer_is_equivariant(5, 5, 3, 2, unread));
};
