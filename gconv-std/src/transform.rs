//! The transformation law of feature maps under a group element (`CONVENTIONS.md`):
//!
//! * Z2 map `(N, C, H, W)`: `(g.x) = spatial_g(x)`.
//! * Group map `(N, C, |G|, H, W)`: `(g.y)[.., h, :, :] = spatial_g(y[.., g^-1 h, :, :])`.
//!
//! `spatial_g` rotates (and flips) every plane about its centre, for odd and even
//! sizes; rotations by 90° and 270° (and the D4 transposes) swap `H` and `W`.
//! A layer `Phi` is equivariant when `Phi(g.x) == g.Phi(x)` for every `g`.

use gconv_core::Group;
use gconv_core::group::{spatial_source_rect, transformed_dims};

use crate::error::Error;
use crate::tensor::Tensor;

/// Applies element `g` of `G` to a Z2 map (rank 4) or a group map (rank 5 with
/// `|G|` orientation planes on axis -3).
///
/// # Errors
/// [`Error::Element`] for `g >= |G|`; [`Error::Shape`] for another rank or a
/// group map whose orientation axis is not `|G|`.
pub fn transform<G: Group>(g: usize, x: &Tensor) -> Result<Tensor, Error> {
    if g >= G::ORDER {
        return Err(Error::Element {
            group: G::NAME,
            order: G::ORDER,
            element: g,
        });
    }
    let shape = x.shape();
    let (planes_per_item, h, w, group_axis) = match *shape {
        [n, c, h, w] => (n * c, h, w, false),
        [n, c, o, h, w] if o == G::ORDER => (n * c, h, w, true),
        _ => {
            return Err(Error::Shape {
                tensor: "feature map",
                expected: format!("(N, C, H, W) or (N, C, {}, H, W)", G::ORDER),
                found: shape.to_vec(),
            });
        }
    };
    let (oh, ow) = transformed_dims(g, h, w);
    let mut out_shape = shape.to_vec();
    let rank = out_shape.len();
    out_shape[rank - 2] = oh;
    out_shape[rank - 1] = ow;

    let orientations = if group_axis { G::ORDER } else { 1 };
    let plane = h * w;
    let g_inv = G::inverse(g);
    let src = x.data();
    let mut data = Vec::with_capacity(x.len());
    for item in 0..planes_per_item {
        for hh in 0..orientations {
            // Output orientation hh reads input orientation g^-1 hh.
            let source_orientation = if group_axis { G::compose(g_inv, hh) } else { 0 };
            let src_plane = &src[(item * orientations + source_orientation) * plane..][..plane];
            for u in 0..oh {
                for v in 0..ow {
                    // (u, v) ranges over g.x, so the source always exists.
                    if let Some((su, sv)) = spatial_source_rect(g, h, w, u, v) {
                        data.push(src_plane[su * w + sv]);
                    }
                }
            }
        }
    }
    Tensor::new(out_shape, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gconv_core::{C4, D4};

    fn group_map(shape: Vec<usize>) -> Tensor {
        Tensor::from_fn(shape, |i| i as f32)
    }

    /// `g.(h.y) == (g h).y` for every pair: the law is a left action on Z2 and group
    /// maps, square and not.
    fn action_composes<G: Group>() {
        for shape in [
            vec![2, 3, 5, 5],
            vec![1, 2, 4, 6],
            vec![2, 2, G::ORDER, 4, 4],
            vec![1, 1, G::ORDER, 3, 5],
        ] {
            let y = group_map(shape.clone());
            for g in 0..G::ORDER {
                for h in 0..G::ORDER {
                    let lhs = transform::<G>(g, &transform::<G>(h, &y).unwrap()).unwrap();
                    let rhs = transform::<G>(G::compose(g, h), &y).unwrap();
                    assert_eq!(lhs, rhs, "{} g={g} h={h} {shape:?}", G::NAME);
                }
            }
        }
    }

    #[test]
    fn c4_action_composes() {
        action_composes::<C4>();
    }

    #[test]
    fn d4_action_composes() {
        action_composes::<D4>();
    }

    /// The C4 shortcut of CONVENTIONS.md: `np.roll(np.rot90(y, r, axes=(-2,-1)), r, axis=-3)`.
    #[test]
    fn c4_matches_roll_of_rot90() {
        let y = group_map(vec![1, 1, 4, 3, 3]);
        let r1 = transform::<C4>(1, &y).unwrap();
        for t in 0..4 {
            let src = (t + 3) % 4; // roll by 1: plane t comes from t - 1
            for u in 0..3 {
                for v in 0..3 {
                    // rot90(A)[u][v] = A[v][2-u]
                    let want = y.data()[src * 9 + v * 3 + (2 - u)];
                    assert_eq!(r1.data()[t * 9 + u * 3 + v], want);
                }
            }
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let y = group_map(vec![1, 1, 4, 3, 3]);
        assert!(matches!(
            transform::<C4>(4, &y),
            Err(Error::Element { element: 4, .. })
        ));
        assert!(matches!(transform::<D4>(1, &y), Err(Error::Shape { .. })));
        assert!(matches!(
            transform::<C4>(1, &group_map(vec![3, 3])),
            Err(Error::Shape { .. })
        ));
    }
}
