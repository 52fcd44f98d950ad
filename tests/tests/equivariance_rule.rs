//! `gconv_core::equivariance` against independent brute force, in exact integers.
//!
//! * 1-D: the output sample positions `pos(i) = i*stride - pad_before + (k-1)/2` (doubled, so
//!   even `k` stays integral) must map onto themselves under the reflection
//!   `x -> size-1-x` about the axis centre.
//! * 2-D: the output grid of a layer on `x` must be carried by every element `g` of D4
//!   (matrix oracle, doubled centred coordinates) exactly onto the output grid of the same
//!   layer on `g.x`. That is the exact condition for `Phi(g.x) == g.Phi(x)` of a
//!   cross-correlation or pooling with zero padding (the value at an output position only
//!   depends on the input around it and on the filter, which is transformed with it).

use std::collections::BTreeSet;

use gconv_core::equivariance::{axis_is_centred, layer_is_equivariant, pool_is_equivariant};
use gconv_core::{C4, ConvShape, D4, Domain, Error, Padding};
use gconv_std::reference::{RefGroup, element_matrix};

/// Doubled output positions `2*pos(i)` on one axis, or `None` when the window does not
/// fit the padded axis (no output).
fn doubled_positions(
    size: usize,
    k: usize,
    stride: usize,
    pad_before: usize,
    pad_after: usize,
) -> Option<Vec<i64>> {
    let padded = size + pad_before + pad_after;
    if k == 0 || stride == 0 || size == 0 || padded < k {
        return None;
    }
    let out = (padded - k) / stride + 1;
    Some(
        (0..out)
            .map(|i| 2 * (i * stride) as i64 - 2 * pad_before as i64 + (k as i64 - 1))
            .collect(),
    )
}

/// Brute force 1-D rule: `{size-1-pos(i)} == {pos(i)}`.
fn brute_force_centred(
    size: usize,
    k: usize,
    stride: usize,
    pad_before: usize,
    pad_after: usize,
) -> bool {
    let Some(pos) = doubled_positions(size, k, stride, pad_before, pad_after) else {
        return false;
    };
    let grid: BTreeSet<i64> = pos.iter().copied().collect();
    let reflected: BTreeSet<i64> = pos.iter().map(|p| 2 * (size as i64 - 1) - p).collect();
    grid == reflected
}

#[test]
fn axis_is_centred_equals_brute_force() {
    let (mut yes, mut no) = (0, 0);
    for size in 1..=12 {
        for k in 1..=6 {
            for stride in 1..=3 {
                for pad_before in 0..=3 {
                    for pad_after in 0..=3 {
                        let want = brute_force_centred(size, k, stride, pad_before, pad_after);
                        assert_eq!(
                            axis_is_centred(size, k, stride, pad_before, pad_after),
                            want,
                            "size={size} k={k} stride={stride} pad=({pad_before}, {pad_after})"
                        );
                        if want {
                            yes += 1;
                        } else {
                            no += 1;
                        }
                    }
                }
            }
        }
    }
    // Both outcomes are well represented: the comparison is not vacuous.
    assert!(yes > 500 && no > 500, "{yes} centred, {no} not");
}

#[test]
fn axis_rule_degenerate_arguments_are_false() {
    assert!(!axis_is_centred(0, 1, 1, 0, 0), "empty axis");
    assert!(!axis_is_centred(5, 0, 1, 0, 0), "zero window");
    assert!(!axis_is_centred(5, 3, 0, 1, 1), "zero stride");
    assert!(
        !axis_is_centred(2, 3, 1, 0, 0),
        "window larger than the axis"
    );
    assert!(
        !axis_is_centred(1, 4, 1, 1, 1),
        "window larger than the padded axis"
    );
    // Huge values neither overflow nor panic.
    assert!(axis_is_centred(usize::MAX, 1, 1, 0, 0));
    let _ = axis_is_centred(usize::MAX, usize::MAX, usize::MAX, usize::MAX, usize::MAX);
}

/// Output grid of a layer on an `h x w` map in doubled centred coordinates.
fn output_grid(
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    [top, bottom, left, right]: [usize; 4],
) -> Option<BTreeSet<[i64; 2]>> {
    let rows = doubled_positions(h, k, stride, top, bottom)?;
    let cols = doubled_positions(w, k, stride, left, right)?;
    let (ch, cw) = (h as i64 - 1, w as i64 - 1);
    Some(
        rows.iter()
            .flat_map(|&r| cols.iter().map(move |&c| [r - ch, c - cw]))
            .collect(),
    )
}

/// Does element `g` of D4 carry the output grid on `x` exactly onto the output grid on `g.x`?
fn element_preserves_grid(
    g: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: [usize; 4],
) -> bool {
    let Some(grid) = output_grid(h, w, k, stride, pad) else {
        return false;
    };
    let m = element_matrix(RefGroup::D4, g);
    let moved: BTreeSet<[i64; 2]> = grid
        .iter()
        .map(|&[a, b]| [m[0][0] * a + m[0][1] * b, m[1][0] * a + m[1][1] * b])
        .collect();
    // g.x is w x h for the odd rotations.
    let (h2, w2) = if g % 2 == 1 { (w, h) } else { (h, w) };
    output_grid(h2, w2, k, stride, pad).is_some_and(|target| target == moved)
}

/// The 2-D brute force: exactly equivariant under every element of D4.
fn brute_force_equivariant(h: usize, w: usize, k: usize, stride: usize, pad: [usize; 4]) -> bool {
    (0..8).all(|g| element_preserves_grid(g, h, w, k, stride, pad))
}

/// Elements of D4 that preserve the grid.
fn preserving_elements(h: usize, w: usize, k: usize, stride: usize, pad: [usize; 4]) -> Vec<usize> {
    (0..8)
        .filter(|&g| element_preserves_grid(g, h, w, k, stride, pad))
        .collect()
}

fn explicit([top, bottom, left, right]: [usize; 4]) -> Padding {
    Padding::Explicit {
        top,
        bottom,
        left,
        right,
    }
}

/// `layer_is_equivariant` (and `pool_is_equivariant`) against the 2-D brute force on square
/// and non-square maps: exact agreement on every configuration, including trailing padding
/// that the stride never reads.
#[test]
fn layer_rule_against_2d_brute_force() {
    let (mut checked, mut equivariant) = (0, 0);
    for h in 1..=9 {
        for w in 1..=9 {
            for k in 1..=5 {
                for stride in 1..=3 {
                    for pad in (0..81).map(|n| [n / 27, (n / 9) % 3, (n / 3) % 3, n % 3]) {
                        let here = format!("{h}x{w} k={k} stride={stride} pad={pad:?}");
                        let got = layer_is_equivariant(h, w, k, stride, explicit(pad));
                        assert_eq!(
                            pool_is_equivariant(h, w, k, stride, explicit(pad)),
                            got,
                            "pool vs layer, {here}"
                        );
                        let want = brute_force_equivariant(h, w, k, stride, pad);
                        assert_eq!(got, want, "{here}");
                        checked += 1;
                        equivariant += usize::from(want);
                    }
                }
            }
        }
    }
    assert!(
        checked > 50_000 && equivariant > 1_000,
        "{checked} checked, {equivariant} equivariant"
    );
}

/// `Same` is symmetric `(k-1)/2` and `Valid` is zero padding, for the rule too.
#[test]
fn same_and_valid_resolve_like_explicit_padding() {
    for h in 1..=10 {
        for w in 1..=10 {
            for k in 1..=6 {
                for stride in 1..=3 {
                    assert_eq!(
                        layer_is_equivariant(h, w, k, stride, Padding::Valid),
                        layer_is_equivariant(h, w, k, stride, Padding::symmetric(0))
                    );
                    if k % 2 == 1 {
                        assert_eq!(
                            layer_is_equivariant(h, w, k, stride, Padding::Same),
                            layer_is_equivariant(h, w, k, stride, Padding::symmetric((k - 1) / 2))
                        );
                    }
                }
            }
        }
    }
}

/// CONVENTIONS: "VALID padding at stride 1: always equivariant, odd or even K."
#[test]
fn valid_stride_1_is_always_equivariant() {
    for h in 1..=12 {
        for w in 1..=12 {
            for k in 1..=h.min(w) {
                assert!(
                    layer_is_equivariant(h, w, k, 1, Padding::Valid),
                    "{h}x{w} k={k}"
                );
                assert!(
                    brute_force_equivariant(h, w, k, 1, [0; 4]),
                    "brute force {h}x{w} k={k}"
                );
            }
        }
    }
}

/// CONVENTIONS: "Symmetric SAME for odd K ((K-1)/2 each side): equivariant", and the output
/// keeps the input size.
#[test]
fn symmetric_same_odd_k_is_equivariant() {
    for n in 1..=12 {
        for k in (1..=7).step_by(2) {
            assert!(
                layer_is_equivariant(n, n, k, 1, Padding::Same),
                "{n}x{n} k={k}"
            );
            let p = (k - 1) / 2;
            assert!(
                layer_is_equivariant(n, n, k, 1, Padding::symmetric(p)),
                "{n}x{n} k={k}"
            );
            assert!(
                brute_force_equivariant(n, n, k, 1, [p; 4]),
                "brute force {n}x{n} k={k}"
            );
            let shape = conv_shape(n, k, 1, Padding::Same);
            let geo = shape.geometry::<C4>(Domain::Z2).expect("valid shape");
            assert_eq!(
                (geo.out_height(), geo.out_width()),
                (n, n),
                "same keeps the size"
            );
        }
    }
}

/// CONVENTIONS: even K with TensorFlow's "same" padding `(K/2-1, K/2)` shifts the grid by
/// half a pixel: not equivariant; only the identity (and, in D4, the transpose) preserve
/// the grid.
#[test]
fn tf_same_even_k_is_not_equivariant() {
    for k in (2..=6).step_by(2) {
        let (before, after) = (k / 2 - 1, k / 2);
        let pad = [before, after, before, after];
        for n in k.max(2)..=12 {
            assert!(!axis_is_centred(n, k, 1, before, after), "axis n={n} k={k}");
            assert!(
                !layer_is_equivariant(n, n, k, 1, explicit(pad)),
                "{n}x{n} k={k}"
            );
            // Same output size as the input.
            assert_eq!(
                doubled_positions(n, k, 1, before, after).map(|p| p.len()),
                Some(n)
            );
            // Identity = 0, transpose = 5 (`M R`: rot90 then flipud).
            assert_eq!(
                preserving_elements(n, n, k, 1, pad),
                vec![0, 5],
                "{n}x{n} k={k}"
            );
        }
    }
}

/// CONVENTIONS: symmetric padding `K/2` on each side for even K (output one pixel larger)
/// is exactly equivariant.
#[test]
fn symmetric_half_k_padding_even_k_is_equivariant() {
    for k in (2..=6).step_by(2) {
        for n in 1..=12 {
            let p = k / 2;
            assert!(
                layer_is_equivariant(n, n, k, 1, Padding::symmetric(p)),
                "{n}x{n} k={k}"
            );
            assert!(
                brute_force_equivariant(n, n, k, 1, [p; 4]),
                "brute force {n}x{n} k={k}"
            );
            let geo = conv_shape(n, k, 1, Padding::symmetric(p))
                .geometry::<D4>(Domain::Group)
                .expect("valid shape");
            assert_eq!(
                (geo.out_height(), geo.out_width()),
                (n + 1, n + 1),
                "one pixel larger"
            );
        }
    }
}

/// `Same` with an even kernel is an error elsewhere and `false` here, for every size.
#[test]
fn same_with_even_k_is_false() {
    for h in 1..=12 {
        for w in 1..=12 {
            for k in (2..=8).step_by(2) {
                for stride in 1..=3 {
                    assert!(
                        !layer_is_equivariant(h, w, k, stride, Padding::Same),
                        "{h}x{w} k={k} s={stride}"
                    );
                    assert!(
                        !pool_is_equivariant(h, w, k, stride, Padding::Same),
                        "pool {h}x{w} k={k} s={stride}"
                    );
                }
            }
            assert_eq!(
                conv_shape(h, 4, 1, Padding::Same).geometry::<C4>(Domain::Z2),
                Err(Error::SameNeedsOddKernel { kernel: 4 })
            );
        }
    }
}

/// The 90° rotations swap the axes, so different leading padding on rows and columns is
/// never equivariant, even when each axis alone is centred.
#[test]
fn top_different_from_left_is_false() {
    let mut centred_axes = 0;
    for h in 1..=9 {
        for w in 1..=9 {
            for k in 1..=5 {
                for stride in 1..=3 {
                    for top in 0..=3 {
                        for left in (0..=3).filter(|&l| l != top) {
                            for (bottom, right) in
                                [(top, left), (left, top), (top, top), (left, left), (3, 3)]
                            {
                                let pad = [top, bottom, left, right];
                                let here = format!("{h}x{w} k={k} stride={stride} pad={pad:?}");
                                assert!(
                                    !layer_is_equivariant(h, w, k, stride, explicit(pad)),
                                    "{here}"
                                );
                                assert!(
                                    !brute_force_equivariant(h, w, k, stride, pad),
                                    "brute force {here}"
                                );
                                if axis_is_centred(h, k, stride, top, bottom)
                                    && axis_is_centred(w, k, stride, left, right)
                                {
                                    centred_axes += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    // The interesting case (each axis centred on its own) does occur.
    assert!(centred_axes > 100, "{centred_axes}");
}

/// CONVENTIONS: "Stride 2, VALID: odd K needs odd H, even K needs even H."
#[test]
fn stride_2_valid_needs_matching_parity() {
    for k in 1..=6 {
        for n in k..=16 {
            let want = n % 2 == k % 2;
            assert_eq!(
                layer_is_equivariant(n, n, k, 2, Padding::Valid),
                want,
                "{n}x{n} k={k}"
            );
            assert_eq!(
                brute_force_equivariant(n, n, k, 2, [0; 4]),
                want,
                "brute force {n}x{n} k={k}"
            );
        }
    }
}

/// CONVENTIONS: "2x2/2 max pooling needs even H; 3x3/2 pooling needs odd H."
#[test]
fn pooling_2x2_stride_2_needs_even_and_3x3_stride_2_needs_odd() {
    for n in 3..=16 {
        assert_eq!(
            pool_is_equivariant(n, n, 2, 2, Padding::Valid),
            n % 2 == 0,
            "2x2/2 on {n}x{n}"
        );
        assert_eq!(
            pool_is_equivariant(n, n, 3, 2, Padding::Valid),
            n % 2 == 1,
            "3x3/2 on {n}x{n}"
        );
    }
}

fn conv_shape(n: usize, kernel: usize, stride: usize, padding: Padding) -> ConvShape {
    ConvShape {
        batch: 1,
        in_channels: 1,
        out_channels: 1,
        height: n,
        width: n,
        kernel,
        stride,
        padding,
    }
}

/// One layer of a stack: window, stride, padding.
type Layer = (usize, usize, Padding);

/// Walks a stack of layers on an `n x n` map: for each layer, whether the rule holds, and
/// whether the 2-D brute force agrees. Sizes come from `ConvShape::geometry`.
fn walk_stack(mut n: usize, layers: &[Layer]) -> Vec<bool> {
    let mut verdicts = Vec::new();
    for &(k, stride, padding) in layers {
        let rule = layer_is_equivariant(n, n, k, stride, padding);
        let pad = padding.resolve(k).expect("odd kernels only");
        assert_eq!(
            rule,
            brute_force_equivariant(n, n, k, stride, pad),
            "{n}x{n} k={k} stride={stride}"
        );
        verdicts.push(rule);
        n = conv_shape(n, k, stride, padding)
            .geometry::<C4>(Domain::Group)
            .expect("valid layer")
            .out_height();
    }
    verdicts
}

/// CONVENTIONS: "Stacked layers must satisfy the rule at every layer": the same stack is
/// fine on one input size and broken at a deeper layer on another.
#[test]
fn stacked_layers_are_checked_at_every_layer() {
    let pool = (2, 2, Padding::Valid);
    let stack: [Layer; 5] = [
        (3, 1, Padding::Valid),
        pool,
        (3, 1, Padding::Same),
        pool,
        (3, 1, Padding::Valid),
    ];
    // 18 -> 16 -> 8 -> 8 -> 4 -> 2: every layer fine.
    assert_eq!(walk_stack(18, &stack), vec![true; 5]);
    // 17 -> 15: the first pooling (2x2/2 on an odd map) breaks it.
    assert_eq!(walk_stack(17, &stack)[..2], [true, false]);
    // 16 -> 14 -> 7 -> 7: the second pooling breaks it, although the first layers are fine.
    assert_eq!(walk_stack(16, &stack)[..4], [true, true, true, false]);
}
