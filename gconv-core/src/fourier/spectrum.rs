//! The real Fourier transform on C4 and D4: irreducible representations, the
//! coefficient layout, and the add-only butterflies that analyse a function on the
//! group and synthesise it back.
//!
//! Elements are GrouPy's `g = 4m + r` (rotate by `r`, then flip if `m = 1`), with the
//! product `(m1,r1)(m2,r2) = (m1 xor m2, (-1)^m2 r1 + r2)` (see [`crate::group`]).
//! The real irreducible representations used here, with
//! `R = [[0,-1],[1,0]]` (a quarter turn) and `F = [[1,0],[0,-1]]`:
//!
//! * C4: the characters `1` and `(-1)^r`, and the plane `rho(r) = R^r`.
//! * D4: the characters `a^m b^r` for `a, b` in `{+1, -1}` (order `++, -+, +-, --`),
//!   and the plane `rho(m, r) = F^m R^r`.
//!
//! That each is a homomorphism of the composition table is checked at compile time.
//!
//! # Coefficients
//!
//! The transform of `f: G -> R` is `f^(rho) = sum_g f(g) rho(g)` (a `d x d` matrix).
//! For the C4 plane, `f^(rho)` commutes with `R` (it is a complex number), so only its
//! row 0 is kept; in general [`Block::rows`] rows of each `f^(rho)` are kept, and the
//! kept entries of all blocks are exactly `|G|` numbers (4 or 8): the
//! [`coefficient`](Spectrum::COEFFS) layout.
//!
//! Group correlation `y(g) = sum_k w(g^-1 k) z(k)` becomes `y^ = z^ w^T` per block,
//! and synthesis is `y(g) = sum_rho d/|G| sum_{a,b} rho(g)[a][b] y^(rho)[a][b]` (row 0
//! only, for the C4 plane, with the same `d/|G|` = 2/4). The scale `d/|G|` is a power
//! of two and is applied to the weights, so the butterflies below are additions only.

/// Lanes processed together by the butterflies: one AVX-512 vector, two AVX2 vectors.
pub(crate) const LANES: usize = 8;

/// `LANES` consecutive pixels of one function value.
pub(crate) type Lanes = [f32; LANES];

// Plain indexed loops over fixed-size arrays: each compiles to one vector operation
// (`core::array::from_fn` here left values on the stack).
#[inline(always)]
fn add<const L: usize>(mut a: [f32; L], b: [f32; L]) -> [f32; L] {
    for l in 0..L {
        a[l] += b[l];
    }
    a
}

#[inline(always)]
fn sub<const L: usize>(mut a: [f32; L], b: [f32; L]) -> [f32; L] {
    for l in 0..L {
        a[l] -= b[l];
    }
    a
}

#[inline(always)]
#[allow(clippy::needless_range_loop)] // as `add`: one vector operation
fn neg<const L: usize>(mut a: [f32; L]) -> [f32; L] {
    for l in 0..L {
        a[l] = -a[l];
    }
    a
}

/// One irreducible representation: its matrices are `dim x dim`; `rows` of its
/// coefficient matrix are kept (`dim` for a real-type irrep, 1 for the C4 plane).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) dim: usize,
    pub(crate) rows: usize,
    irrep: Irrep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Irrep {
    /// `g = (m, r) -> flip^m * rot^r`, each `+1` or `-1`.
    Character { flip: i8, rot: i8 },
    /// `g = (m, r) -> F^m R^r`.
    Plane,
}

/// A 2x2 integer matrix (1x1 irreps use entry `[0][0]`).
pub(crate) type Mat = [[i8; 2]; 2];

const fn mat_mul(a: Mat, b: Mat) -> Mat {
    [
        [
            a[0][0] * b[0][0] + a[0][1] * b[1][0],
            a[0][0] * b[0][1] + a[0][1] * b[1][1],
        ],
        [
            a[1][0] * b[0][0] + a[1][1] * b[1][0],
            a[1][0] * b[0][1] + a[1][1] * b[1][1],
        ],
    ]
}

impl Block {
    const fn character(flip: i8, rot: i8) -> Block {
        Block {
            dim: 1,
            rows: 1,
            irrep: Irrep::Character { flip, rot },
        }
    }

    /// The representation matrix of element `g` (0..8).
    pub(crate) const fn matrix(&self, g: usize) -> Mat {
        let (m, r) = crate::group::flip_and_rotation(g);
        match self.irrep {
            Irrep::Character { flip, rot } => {
                let mut v = 1i8;
                if m == 1 {
                    v *= flip;
                }
                if r % 2 == 1 {
                    v *= rot;
                }
                [[v, 0], [0, 0]]
            }
            Irrep::Plane => {
                const R: Mat = [[0, -1], [1, 0]];
                const F: Mat = [[1, 0], [0, -1]];
                let mut a: Mat = if m == 1 { F } else { [[1, 0], [0, 1]] };
                let mut i = 0;
                while i < r {
                    a = mat_mul(a, R);
                    i += 1;
                }
                a
            }
        }
    }
}

/// Where coefficient `j` of an analysed vector lives: block, row `a` of the block's
/// coefficient matrix, column `c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Coeff {
    pub(crate) block: usize,
    pub(crate) row: usize,
    pub(crate) col: usize,
}

const fn coeff(block: usize, row: usize, col: usize) -> Coeff {
    Coeff { block, row, col }
}

/// The Fourier transform of one group (`N = |G|`).
pub(crate) trait Spectrum<const N: usize> {
    /// The irreps, in coefficient order.
    const BLOCKS: &'static [Block];
    /// Coefficient `j` of [`analyze`](Self::analyze)'s output (and of
    /// [`synthesize`](Self::synthesize)'s input).
    const COEFFS: [Coeff; N];
    /// `z^(rho)[a][c] = sum_k z(k) rho(k)[a][c]` for every kept `(rho, a, c)`, on
    /// `L` pixels at once. Additions only.
    fn analyze<const L: usize>(z: &[[f32; L]; N]) -> [[f32; L]; N];
    /// `y(g) = sum_{(rho, a, b)} rho(g)[a][b] y^(rho)[a][b]`: synthesis with the scale
    /// `d/|G|` already in `y^`. Additions only.
    fn synthesize<const L: usize>(y: &[[f32; L]; N]) -> [[f32; L]; N];
}

/// C4: `1`, `(-1)^r`, and the plane (row 0 kept: 2 coefficients).
pub(crate) const C4_BLOCKS: [Block; 3] = [
    Block::character(1, 1),
    Block::character(1, -1),
    Block {
        dim: 2,
        rows: 1,
        irrep: Irrep::Plane,
    },
];

/// D4: the four characters and the plane (both rows kept: 4 coefficients).
pub(crate) const D4_BLOCKS: [Block; 5] = [
    Block::character(1, 1),
    Block::character(-1, 1),
    Block::character(1, -1),
    Block::character(-1, -1),
    Block {
        dim: 2,
        rows: 2,
        irrep: Irrep::Plane,
    },
];

impl Spectrum<4> for crate::C4 {
    const BLOCKS: &'static [Block] = &C4_BLOCKS;
    const COEFFS: [Coeff; 4] = [
        coeff(0, 0, 0),
        coeff(1, 0, 0),
        coeff(2, 0, 0),
        coeff(2, 0, 1),
    ];

    #[inline(always)]
    fn analyze<const L: usize>(z: &[[f32; L]; 4]) -> [[f32; L]; 4] {
        let (s02, s13) = (add(z[0], z[2]), add(z[1], z[3]));
        // Row 0 of sum_r z_r R^r: R^r[0] = (1,0), (0,-1), (-1,0), (0,1).
        [
            add(s02, s13),
            sub(s02, s13),
            sub(z[0], z[2]),
            sub(z[3], z[1]),
        ]
    }

    #[inline(always)]
    fn synthesize<const L: usize>(y: &[[f32; L]; 4]) -> [[f32; L]; 4] {
        let (even, odd) = (add(y[0], y[1]), sub(y[0], y[1]));
        [
            add(even, y[2]),
            sub(odd, y[3]),
            sub(even, y[2]),
            add(odd, y[3]),
        ]
    }
}

impl Spectrum<8> for crate::D4 {
    const BLOCKS: &'static [Block] = &D4_BLOCKS;
    const COEFFS: [Coeff; 8] = [
        coeff(0, 0, 0),
        coeff(1, 0, 0),
        coeff(2, 0, 0),
        coeff(3, 0, 0),
        coeff(4, 0, 0),
        coeff(4, 0, 1),
        coeff(4, 1, 0),
        coeff(4, 1, 1),
    ];

    #[inline(always)]
    fn analyze<const L: usize>(z: &[[f32; L]; 8]) -> [[f32; L]; 8] {
        // Per flip coset m: sums over r, alternating sums, and the plane's
        // `sum_r z(m,r) R^r = [[u, -v], [v, u]]`, u = z0 - z2, v = z1 - z3.
        let coset = |m: usize| {
            let (s02, s13) = (add(z[4 * m], z[4 * m + 2]), add(z[4 * m + 1], z[4 * m + 3]));
            let u = sub(z[4 * m], z[4 * m + 2]);
            let v = sub(z[4 * m + 1], z[4 * m + 3]);
            (add(s02, s13), sub(s02, s13), u, v)
        };
        let (sum0, alt0, u0, v0) = coset(0);
        let (sum1, alt1, u1, v1) = coset(1);
        // The flipped coset contributes F [[u1, -v1], [v1, u1]] = [[u1, -v1], [-v1, -u1]].
        [
            add(sum0, sum1),
            sub(sum0, sum1),
            add(alt0, alt1),
            sub(alt0, alt1),
            add(u0, u1),
            neg(add(v0, v1)),
            sub(v0, v1),
            sub(u0, u1),
        ]
    }

    #[inline(always)]
    fn synthesize<const L: usize>(y: &[[f32; L]; 8]) -> [[f32; L]; 8] {
        // Characters: (m, r) -> E_m + (-1)^r O_m.
        let (e0, e1) = (add(y[0], y[1]), sub(y[0], y[1]));
        let (o0, o1) = (add(y[2], y[3]), sub(y[2], y[3]));
        // Plane: sum_ab (F^m R^r)[a][b] Y[a][b] is P, Q, -P, -Q over r, with
        // P = Y00 + Y11, Q = Y10 - Y01 (m = 0) and P = Y00 - Y11, Q = -Y01 - Y10 (m = 1).
        let (p0, q0) = (add(y[4], y[7]), sub(y[6], y[5]));
        let (p1, q1) = (sub(y[4], y[7]), neg(add(y[5], y[6])));
        let (c0, d0) = (add(e0, o0), sub(e0, o0));
        let (c1, d1) = (add(e1, o1), sub(e1, o1));
        [
            add(c0, p0),
            add(d0, q0),
            sub(c0, p0),
            sub(d0, q0),
            add(c1, p1),
            add(d1, q1),
            sub(c1, p1),
            sub(d1, q1),
        ]
    }
}

/// Whether every block is a homomorphism of the composition table `compose` of
/// order `n`: `rho(a b) = rho(a) rho(b)`.
const fn homomorphisms(blocks: &[Block], compose: &[u8], n: usize) -> bool {
    let mut i = 0;
    while i < blocks.len() {
        let mut a = 0;
        while a < n {
            let mut b = 0;
            while b < n {
                let ab = compose[a * n + b] as usize;
                let lhs = blocks[i].matrix(ab);
                let rhs = mat_mul(blocks[i].matrix(a), blocks[i].matrix(b));
                if lhs[0][0] != rhs[0][0]
                    || lhs[0][1] != rhs[0][1]
                    || lhs[1][0] != rhs[1][0]
                    || lhs[1][1] != rhs[1][1]
                {
                    return false;
                }
                b += 1;
            }
            a += 1;
        }
        i += 1;
    }
    true
}

/// Whether the kept coefficients number exactly `n` (`sum rows * dim = |G|`).
const fn coefficient_count(blocks: &[Block], n: usize) -> bool {
    let mut total = 0;
    let mut i = 0;
    while i < blocks.len() {
        total += blocks[i].rows * blocks[i].dim;
        i += 1;
    }
    total == n
}

const _: () = assert!(homomorphisms(
    &C4_BLOCKS,
    <crate::C4 as crate::Group>::COMPOSE,
    4
));
const _: () = assert!(homomorphisms(
    &D4_BLOCKS,
    <crate::D4 as crate::Group>::COMPOSE,
    8
));
const _: () = assert!(coefficient_count(&C4_BLOCKS, 4));
const _: () = assert!(coefficient_count(&D4_BLOCKS, 8));

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // index loops mirror the formulas
mod tests {
    use super::*;

    /// Analysis by the definition, `sum_k z(k) rho(k)[a][c]`, from the matrices.
    fn analyze_by_definition<const N: usize, S: Spectrum<N>>(z: &[f32; N]) -> [f32; N] {
        core::array::from_fn(|j| {
            let Coeff { block, row, col } = S::COEFFS[j];
            (0..N)
                .map(|k| f32::from(S::BLOCKS[block].matrix(k)[row][col]) * z[k])
                .sum()
        })
    }

    /// Synthesis by the definition, with `d/|G|` applied here.
    fn synthesize_by_definition<const N: usize, S: Spectrum<N>>(y: &[f32; N]) -> [f32; N] {
        core::array::from_fn(|g| {
            (0..N)
                .map(|j| {
                    let Coeff { block, row, col } = S::COEFFS[j];
                    let b = S::BLOCKS[block];
                    let scale = b.dim as f32 / N as f32;
                    scale * f32::from(b.matrix(g)[row][col]) * y[j]
                })
                .sum()
        })
    }

    fn lanes<const N: usize>(v: &[f32; N]) -> [Lanes; N] {
        // Lane l holds v scaled by (l + 1): every lane is checked, with distinct data.
        core::array::from_fn(|k| core::array::from_fn(|l| v[k] * (l as f32 + 1.0)))
    }

    /// Butterflies equal the definitions exactly on small integers (all sums exact),
    /// for every unit vector and a mixed one, in every lane; and synthesis inverts
    /// analysis exactly.
    fn check<const N: usize, S: Spectrum<N>>() {
        let mut inputs: [[f32; N]; 9] = [[0.0; N]; 9];
        for (k, v) in inputs.iter_mut().take(N).enumerate() {
            v[k] = 1.0;
        }
        inputs[8] =
            core::array::from_fn(|k| (k as f32 * 3.0 + 1.0) * if k % 3 == 0 { -1.0 } else { 1.0 });
        for z in inputs.iter().take(N).chain(core::iter::once(&inputs[8])) {
            let want = analyze_by_definition::<N, S>(z);
            let got = S::analyze(&lanes(z));
            for j in 0..N {
                for l in 0..LANES {
                    assert_eq!(
                        got[j][l],
                        want[j] * (l as f32 + 1.0),
                        "coefficient {j}, lane {l}"
                    );
                }
            }
            // Synthesis with d/|G| folded in (as the weights carry it).
            let scaled: [f32; N] = core::array::from_fn(|j| {
                let b = S::BLOCKS[S::COEFFS[j].block];
                want[j] * b.dim as f32 / N as f32
            });
            let back = S::synthesize(&lanes(&scaled));
            let by_def = synthesize_by_definition::<N, S>(&want);
            for g in 0..N {
                assert_eq!(by_def[g], z[g], "definition round trip, element {g}");
                for l in 0..LANES {
                    assert_eq!(
                        back[g][l],
                        z[g] * (l as f32 + 1.0),
                        "round trip {g}, lane {l}"
                    );
                }
            }
        }
    }

    #[test]
    fn c4_butterflies_match_definition_and_invert() {
        check::<4, crate::C4>();
    }

    #[test]
    fn d4_butterflies_match_definition_and_invert() {
        check::<8, crate::D4>();
    }

    #[test]
    fn c4_plane_coefficients_commute_with_rotation() {
        // The C4 plane keeps one row because sum_r z_r R^r commutes with R; check it.
        let r = C4_BLOCKS[2].matrix(1);
        for z in [
            [1, 0, 0, 0],
            [0, 1, 0, 0],
            [0, 0, 1, 0],
            [0, 0, 0, 1],
            [3, -1, 4, 2],
        ] {
            let mut acc = [[0i8; 2]; 2];
            for (k, &zk) in z.iter().enumerate() {
                let m = C4_BLOCKS[2].matrix(k);
                for a in 0..2 {
                    for b in 0..2 {
                        acc[a][b] += zk * m[a][b];
                    }
                }
            }
            assert_eq!(mat_mul(acc, r), mat_mul(r, acc));
            assert_eq!((acc[1][0], acc[1][1]), (-acc[0][1], acc[0][0]));
        }
    }

    #[test]
    fn a_wrong_table_fails_the_homomorphism_check() {
        // The check can fail: swap two products in D4's table.
        let mut t = [0u8; 64];
        t.copy_from_slice(<crate::D4 as crate::Group>::COMPOSE);
        t.swap(9, 10);
        assert!(!homomorphisms(&D4_BLOCKS, &t, 8));
        assert!(homomorphisms(
            &D4_BLOCKS,
            <crate::D4 as crate::Group>::COMPOSE,
            8
        ));
    }
}
