//! Run-time checks of gconv-core's group arithmetic and grid action against the matrix
//! oracle of `gconv_std::reference` and against a direct numpy-semantics construction.

use gconv_core::group::{spatial_source, spatial_source_rect, transformed_dims};
use gconv_core::{C4, D4, Group};
use gconv_std::reference::{self, RefGroup};

/// The oracle group matching `G`.
fn ref_group<G: Group>() -> RefGroup {
    match G::NAME {
        "C4" => RefGroup::C4,
        "D4" => RefGroup::D4,
        other => panic!("unknown group {other}"),
    }
}

fn check_against_oracle<G: Group>() {
    let rg = ref_group::<G>();
    assert_eq!(G::ORDER, rg.order(), "{} order", G::NAME);
    assert_eq!(
        G::COMPOSE.len(),
        G::ORDER * G::ORDER,
        "{} COMPOSE length",
        G::NAME
    );
    assert_eq!(G::INVERSE.len(), G::ORDER, "{} INVERSE length", G::NAME);
    for a in 0..G::ORDER {
        assert_eq!(
            G::inverse(a),
            reference::inverse(rg, a),
            "{} inverse of {a}",
            G::NAME
        );
        for b in 0..G::ORDER {
            assert_eq!(
                G::compose(a, b),
                reference::compose(rg, a, b),
                "{} {a} * {b}",
                G::NAME
            );
        }
    }
}

#[test]
fn c4_arithmetic_equals_matrix_oracle() {
    check_against_oracle::<C4>();
}

#[test]
fn d4_arithmetic_equals_matrix_oracle() {
    check_against_oracle::<D4>();
}

/// The D4 composition table printed in `CONVENTIONS.md` (`T[t][s] = t^-1 s`): row `t`,
/// column `s`.
const CONVENTIONS_D4_T: [[usize; 8]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7],
    [3, 0, 1, 2, 5, 6, 7, 4],
    [2, 3, 0, 1, 6, 7, 4, 5],
    [1, 2, 3, 0, 7, 4, 5, 6],
    [4, 5, 6, 7, 0, 1, 2, 3],
    [5, 6, 7, 4, 3, 0, 1, 2],
    [6, 7, 4, 5, 2, 3, 0, 1],
    [7, 4, 5, 6, 1, 2, 3, 0],
];

#[test]
fn t_inverse_s_equals_conventions_table() {
    for (t, row) in CONVENTIONS_D4_T.iter().enumerate() {
        for (s, &want) in row.iter().enumerate() {
            assert_eq!(D4::compose(D4::inverse(t), s), want, "D4 {t}^-1 * {s}");
            if t < 4 && s < 4 {
                assert_eq!(
                    C4::compose(C4::inverse(t), s),
                    (s + 4 - t) % 4,
                    "C4 {t}^-1 * {s}"
                );
            }
        }
    }
}

fn check_axioms<G: Group>() {
    let n = G::ORDER;
    for a in 0..n {
        assert_eq!(G::compose(0, a), a, "{}: e * {a}", G::NAME);
        assert_eq!(G::compose(a, 0), a, "{}: {a} * e", G::NAME);
        assert!(
            G::inverse(a) < n,
            "{}: inverse of {a} out of range",
            G::NAME
        );
        assert_eq!(G::compose(a, G::inverse(a)), 0, "{}: {a} * {a}^-1", G::NAME);
        assert_eq!(G::compose(G::inverse(a), a), 0, "{}: {a}^-1 * {a}", G::NAME);
        let mut row: Vec<usize> = (0..n).map(|b| G::compose(a, b)).collect();
        row.sort_unstable();
        assert_eq!(
            row,
            (0..n).collect::<Vec<_>>(),
            "{}: row {a} is not a permutation",
            G::NAME
        );
        for b in 0..n {
            for c in 0..n {
                assert_eq!(
                    G::compose(G::compose(a, b), c),
                    G::compose(a, G::compose(b, c)),
                    "{}: ({a} * {b}) * {c}",
                    G::NAME
                );
            }
        }
    }
}

#[test]
fn c4_group_axioms() {
    check_axioms::<C4>();
}

#[test]
fn d4_group_axioms() {
    check_axioms::<D4>();
    // Non-abelian: flipud after rot90 is not rot90 after flipud.
    assert_ne!(D4::compose(4, 1), D4::compose(1, 4));
}

#[test]
fn c4_is_the_rotation_subgroup_of_d4() {
    for a in 0..4 {
        assert_eq!(C4::inverse(a), D4::inverse(a));
        for b in 0..4 {
            assert_eq!(C4::compose(a, b), D4::compose(a, b));
        }
    }
}

/// `(g.A)[x] = A[g^-1 x]` with `x` the doubled centred coordinate `(2u - (n-1), 2v - (n-1))`.
fn oracle_source(g: usize, n: usize, u: usize, v: usize) -> (usize, usize) {
    let m = reference::element_matrix(RefGroup::D4, reference::inverse(RefGroup::D4, g));
    let c = n as i64 - 1;
    let x = [2 * u as i64 - c, 2 * v as i64 - c];
    let y = [
        m[0][0] * x[0] + m[0][1] * x[1],
        m[1][0] * x[0] + m[1][1] * x[1],
    ];
    for d in y {
        assert!(
            (d + c) % 2 == 0 && (0..=2 * c).contains(&(d + c)),
            "oracle left the grid"
        );
    }
    (((y[0] + c) / 2) as usize, ((y[1] + c) / 2) as usize)
}

#[test]
fn spatial_source_equals_matrix_oracle() {
    for n in 1..=8 {
        for g in 0..D4::ORDER {
            for u in 0..n {
                for v in 0..n {
                    assert_eq!(
                        spatial_source(g, n, u, v),
                        Some(oracle_source(g, n, u, v)),
                        "g={g} n={n} (u={u}, v={v})"
                    );
                }
            }
        }
    }
}

/// A closed-form source coordinate `(u, v) -> (u', v')`.
type Source = fn(usize, usize) -> (usize, usize);

/// The elements named in `CONVENTIONS.md`, spelled out on a 3 x 3 grid.
#[test]
fn named_elements_on_a_3x3_grid() {
    let n = 3;
    let cases: [(usize, &str, Source); 8] = [
        (0, "identity", |u, v| (u, v)),
        (1, "rot90", |u, v| (v, 2 - u)),
        (2, "rot180", |u, v| (2 - u, 2 - v)),
        (3, "rot270", |u, v| (2 - v, u)),
        (4, "flipud", |u, v| (2 - u, v)),
        (5, "transpose", |u, v| (v, u)),
        (6, "fliplr", |u, v| (u, 2 - v)),
        (7, "anti-transpose", |u, v| (2 - v, 2 - u)),
    ];
    for (g, name, source) in cases {
        for u in 0..n {
            for v in 0..n {
                assert_eq!(
                    spatial_source(g, n, u, v),
                    Some(source(u, v)),
                    "{name} (g={g}) at ({u}, {v})"
                );
            }
        }
    }
}

/// A 2-D array as a vector of rows.
type Grid = Vec<Vec<usize>>;

/// `A[u][v] = u * w + v`: every entry names its own position.
fn labelled(h: usize, w: usize) -> Grid {
    (0..h)
        .map(|u| (0..w).map(|v| u * w + v).collect())
        .collect()
}

/// numpy's `np.rot90(A)` for an `h x w` array: `w x h`, `rot90(A)[u][v] = A[v][w-1-u]`.
fn rot90(a: &Grid) -> Grid {
    let (h, w) = (a.len(), a[0].len());
    (0..w)
        .map(|u| (0..h).map(|v| a[v][w - 1 - u]).collect())
        .collect()
}

/// numpy's `np.flipud(A)`: the row order reversed.
fn flipud(a: &Grid) -> Grid {
    a.iter().rev().cloned().collect()
}

/// `g.A = flipud^m(rot90^r(A))` for `g = 4m + r`, built from the array operations.
fn act(g: usize, a: &Grid) -> Grid {
    let mut out = a.clone();
    for _ in 0..g % 4 {
        out = rot90(&out);
    }
    if g / 4 == 1 { flipud(&out) } else { out }
}

/// `g.A` built from `spatial_source_rect`.
fn act_by_source(g: usize, a: &Grid) -> Grid {
    let (h, w) = (a.len(), a[0].len());
    let (rows, cols) = transformed_dims(g, h, w);
    (0..rows)
        .map(|u| {
            (0..cols)
                .map(|v| {
                    let (su, sv) = spatial_source_rect(g, h, w, u, v).expect("inside g.A");
                    assert!(
                        su < h && sv < w,
                        "g={g} {h}x{w}: source ({su}, {sv}) of ({u}, {v}) out of range"
                    );
                    a[su][sv]
                })
                .collect()
        })
        .collect()
}

const RECTANGLES: [(usize, usize); 10] = [
    (3, 5),
    (5, 3),
    (4, 6),
    (6, 4),
    (2, 7),
    (7, 2),
    (1, 4),
    (4, 1),
    (2, 3),
    (3, 8),
];

#[test]
fn rot90_helper_is_numpy() {
    // np.rot90(np.arange(6).reshape(2, 3)) == [[2, 5], [1, 4], [0, 3]]
    assert_eq!(
        rot90(&labelled(2, 3)),
        vec![vec![2, 5], vec![1, 4], vec![0, 3]]
    );
    // np.flipud(np.arange(6).reshape(2, 3)) == [[3, 4, 5], [0, 1, 2]]
    assert_eq!(flipud(&labelled(2, 3)), vec![vec![3, 4, 5], vec![0, 1, 2]]);
}

#[test]
fn spatial_source_rect_equals_numpy_construction() {
    let squares = (1..=6).map(|n| (n, n));
    for (h, w) in RECTANGLES.into_iter().chain(squares) {
        let a = labelled(h, w);
        for g in 0..D4::ORDER {
            let want = act(g, &a);
            let dims = (want.len(), want[0].len());
            assert_eq!(
                transformed_dims(g, h, w),
                dims,
                "transformed_dims g={g} {h}x{w}"
            );
            assert_eq!(act_by_source(g, &a), want, "g={g} on {h}x{w}");
        }
    }
}

#[test]
fn square_action_equals_rect_action() {
    for n in 1..=8 {
        for g in 0..D4::ORDER {
            for u in 0..n {
                for v in 0..n {
                    assert_eq!(
                        spatial_source(g, n, u, v),
                        spatial_source_rect(g, n, n, u, v)
                    );
                }
            }
        }
    }
}

/// `(a*b).A == a.(b.A)` for every pair of `G` on an `h x w` map.
fn check_homomorphism<G: Group>(h: usize, w: usize) {
    let a0 = labelled(h, w);
    for a in 0..G::ORDER {
        for b in 0..G::ORDER {
            let ab = G::compose(a, b);
            let lhs = act_by_source(ab, &a0);
            let rhs = act_by_source(a, &act_by_source(b, &a0));
            assert_eq!(
                lhs,
                rhs,
                "{}: ({a} * {b}).A != {a}.({b}.A) on {h}x{w}",
                G::NAME
            );
            // And the same with the array operations, independent of spatial_source_rect.
            assert_eq!(
                act(ab, &a0),
                act(a, &act(b, &a0)),
                "{}: numpy ({a} * {b}) on {h}x{w}",
                G::NAME
            );
        }
    }
}

#[test]
fn action_is_a_homomorphism_on_squares() {
    for n in 1..=6 {
        check_homomorphism::<C4>(n, n);
        check_homomorphism::<D4>(n, n);
    }
}

#[test]
fn action_is_a_homomorphism_on_rectangles() {
    for (h, w) in RECTANGLES {
        check_homomorphism::<C4>(h, w);
        check_homomorphism::<D4>(h, w);
    }
}

/// Coordinates outside the grid give `None`, never a panic or a wrapped index.
#[test]
fn out_of_range_coordinates_are_none() {
    for g in 0..8 {
        assert_eq!(spatial_source(g, 3, 3, 0), None);
        assert_eq!(spatial_source(g, 3, 0, 3), None);
        assert_eq!(spatial_source(g, 0, 0, 0), None);
        // A 2 x 5 map: rotated by an odd element it is 5 x 2.
        let (rows, cols) = transformed_dims(g, 2, 5);
        assert_eq!(spatial_source_rect(g, 2, 5, rows, 0), None);
        assert_eq!(spatial_source_rect(g, 2, 5, 0, cols), None);
        assert!(spatial_source_rect(g, 2, 5, rows - 1, cols - 1).is_some());
    }
}
