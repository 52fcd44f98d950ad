//! gconv-core's spatial pooling against the oracle's reference max pool and a direct
//! average, and its equivariance predicted by the rule over every D4 element.

mod common;

use common::{random_vec, rng};
use gconv_core::pool::{PoolShape, avg_pool, max_pool};
use gconv_core::{Buffer, Dim, Error, Padding};
use gconv_std::reference::reference_max_pool;
use gconv_std::{D4, Group, Pool2d, PoolKind, Tensor, transform};

fn padding(p: [usize; 4]) -> Padding {
    Padding::Explicit {
        top: p[0],
        bottom: p[1],
        left: p[2],
        right: p[3],
    }
}

/// Direct average over the padded window, dividing by k^2.
fn direct_avg(
    planes: usize,
    h: usize,
    w: usize,
    x: &[f32],
    k: usize,
    s: usize,
    p: [usize; 4],
) -> Vec<f32> {
    let oh = (h + p[0] + p[1] - k) / s + 1;
    let ow = (w + p[2] + p[3] - k) / s + 1;
    let mut out = Vec::new();
    for plane in 0..planes {
        for a in 0..oh {
            for b in 0..ow {
                let mut sum = 0.0f64;
                for i in 0..k {
                    for j in 0..k {
                        let (r, c) = (
                            (a * s + i) as isize - p[0] as isize,
                            (b * s + j) as isize - p[2] as isize,
                        );
                        if r >= 0 && c >= 0 && (r as usize) < h && (c as usize) < w {
                            sum += f64::from(x[plane * h * w + r as usize * w + c as usize]);
                        }
                    }
                }
                out.push((sum / (k * k) as f64) as f32);
            }
        }
    }
    out
}

#[test]
fn max_and_avg_match_references() {
    let mut rng = rng(11);
    let mut cases = 0;
    for k in 1..=4 {
        for s in 1..=3 {
            for (h, w) in [(7, 8), (8, 8), (9, 5)] {
                for p in [[0; 4], [k / 2; 4], [0, k / 2, k / 2, 0]] {
                    let shape = PoolShape {
                        planes: 3,
                        height: h,
                        width: w,
                        window: k,
                        stride: s,
                        padding: padding(p),
                    };
                    let geo = shape.geometry().unwrap();
                    let x = random_vec(&mut rng, geo.input_len());
                    let mut y = vec![f32::NAN; geo.output_len()];
                    max_pool(&shape, &x, &mut y).unwrap();
                    let (want, oh, ow) = reference_max_pool(3, h, w, &x, k, s, p);
                    assert_eq!((oh, ow), (geo.out_height(), geo.out_width()));
                    assert_eq!(y, want, "max k={k} s={s} {h}x{w} {p:?}");
                    avg_pool(&shape, &x, &mut y).unwrap();
                    let want = direct_avg(3, h, w, &x, k, s, p);
                    for (a, b) in y.iter().zip(&want) {
                        // k^2 terms summed in f32: tolerance (k^2 + 1) eps * k^2 max|x| / k^2.
                        assert!(
                            (a - b).abs() <= (k * k + 1) as f32 * f32::EPSILON,
                            "avg {a} vs {b}"
                        );
                    }
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 4 * 3 * 3 * 3);
}

#[test]
fn pooling_errors_are_values() {
    let ok = PoolShape {
        planes: 2,
        height: 6,
        width: 6,
        window: 2,
        stride: 2,
        padding: Padding::Valid,
    };
    let x = vec![0.0; 72];
    let mut y = vec![f32::NAN; 18];
    assert_eq!(
        max_pool(&ok, &x[1..], &mut y),
        Err(Error::BufferLength {
            buffer: Buffer::Input,
            expected: 72,
            found: 71
        })
    );
    assert_eq!(
        avg_pool(&ok, &x, &mut y[1..]),
        Err(Error::BufferLength {
            buffer: Buffer::Output,
            expected: 18,
            found: 17
        })
    );
    assert_eq!(
        max_pool(&PoolShape { stride: 0, ..ok }, &x, &mut y),
        Err(Error::ZeroDimension(Dim::Stride))
    );
    assert_eq!(
        max_pool(&PoolShape { window: 0, ..ok }, &x, &mut y),
        Err(Error::ZeroDimension(Dim::Kernel))
    );
    assert_eq!(
        max_pool(
            &PoolShape {
                padding: Padding::symmetric(2),
                ..ok
            },
            &x,
            &mut y
        ),
        Err(Error::PoolPaddingTooLarge {
            padding: 2,
            window: 2
        })
    );
    assert_eq!(
        max_pool(
            &PoolShape {
                window: 7,
                stride: 1,
                ..ok
            },
            &x,
            &mut y
        ),
        Err(Error::KernelLargerThanInput {
            kernel: 7,
            padded_height: 6,
            padded_width: 6
        })
    );
    assert_eq!(
        max_pool(
            &PoolShape {
                padding: Padding::Same,
                ..ok
            },
            &x,
            &mut y
        ),
        Err(Error::SameNeedsOddKernel { kernel: 2 })
    );
    assert!(y.iter().all(|v| v.is_nan()), "output written on error");
}

#[test]
fn max_pool_propagates_nan_and_ignores_padding() {
    let shape = PoolShape {
        planes: 1,
        height: 2,
        width: 2,
        window: 3,
        stride: 1,
        padding: Padding::symmetric(1),
    };
    let x = [-5.0, -6.0, -7.0, f32::NAN];
    let mut y = [0.0; 4];
    max_pool(&shape, &x, &mut y).unwrap();
    assert!(y.iter().all(|v| v.is_nan()));
    let x = [-5.0, -6.0, -7.0, -8.0];
    max_pool(&shape, &x, &mut y).unwrap();
    assert_eq!(y, [-5.0; 4]); // padding (zeros elsewhere) never wins
}

/// Over every D4 element: exact equivariance where the rule says so, errors of order
/// one where it does not; max and average, group maps and Z2 maps.
#[test]
fn pooling_rule_predicts_equivariance() {
    let mut seen = [0usize; 2];
    for kind in [PoolKind::Max, PoolKind::Avg] {
        for window in 1..=3 {
            for stride in 1..=3 {
                for size in 5..=8 {
                    for p in [[0; 4], [window / 2; 4], [0, window / 2, 0, window / 2]] {
                        let pool = Pool2d {
                            kind,
                            window,
                            stride,
                            padding: padding(p),
                        };
                        for shape in [vec![2, 2, D4::ORDER, size, size], vec![2, 3, size, size]] {
                            let x = Tensor::new(
                                shape.clone(),
                                random_vec(&mut rng(size as u64), shape.iter().product()),
                            )
                            .unwrap();
                            let y = pool.forward(&x).unwrap();
                            let worst = (0..D4::ORDER)
                                .map(|g| {
                                    let lhs =
                                        pool.forward(&transform::<D4>(g, &x).unwrap()).unwrap();
                                    lhs.max_abs_diff(&transform::<D4>(g, &y).unwrap())
                                        .unwrap_or(f32::INFINITY)
                                })
                                .fold(0.0f32, f32::max);
                            let rule = pool.is_equivariant_on(size, size);
                            let what = format!("{kind:?} {window}/{stride} {p:?} on {shape:?}");
                            if rule {
                                // Max is exact; the mean sums the same k^2 values in another order.
                                let tol = if kind == PoolKind::Max {
                                    0.0
                                } else {
                                    2.0 * (window * window) as f32 * f32::EPSILON
                                };
                                assert!(
                                    worst <= tol,
                                    "{what}: rule says equivariant, error {worst}"
                                );
                            } else {
                                assert!(
                                    worst > 0.01,
                                    "{what}: rule says broken, error only {worst}"
                                );
                            }
                            seen[usize::from(rule)] += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(seen[0] > 50 && seen[1] > 50, "{seen:?}");
}
