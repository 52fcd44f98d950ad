//! The point groups C4 (`p4`) and D4 (`p4m`), their arithmetic and their action on
//! a `K x K` grid.
//!
//! Element order follows GrouPy (see `CONVENTIONS.md`):
//!
//! * C4 element `r` (0..4) is a counter-clockwise rotation by `r * 90°` as displayed,
//!   i.e. numpy's `np.rot90(A, r)`; one step reads `rot90(A)[u][v] = A[v][K-1-u]`.
//! * D4 element `g = 4*m + r` is "rotate by `r`, then flip the row axis (flipud) if
//!   `m = 1`": 4 = flipud, 5 = transpose, 6 = fliplr, 7 = anti-transpose.
//!
//! C4 is the subgroup `m = 0` of D4 with the same indices, so the spatial action
//! [`spatial_source`] is one function for both groups.
//!
//! The composition tables are `const` data built by `const fn`s from the closed form
//! `(m1,r1)(m2,r2) = (m1 xor m2, ((-1)^m2 r1 + r2) mod 4)`; the group axioms are
//! checked at compile time (see [`axioms_hold`]).

mod c4;
mod d4;
pub mod tables;

pub use c4::C4;
pub use d4::D4;

/// A finite point group acting on the square grid: C4 or D4.
///
/// Implementors are zero-sized marker types. All data is `const`, so generic code
/// (including `const fn`s such as the [index tables](tables)) can read it.
pub trait Group: Copy + Default + core::fmt::Debug + Send + Sync + 'static {
    /// Number of elements |G| (4 for C4, 8 for D4). Also the number of orientation
    /// planes `nto` of a feature map on this group.
    const ORDER: usize;
    /// Short name as used in the literature: `"C4"` (p4) or `"D4"` (p4m).
    const NAME: &'static str;
    /// Composition table, row-major `ORDER x ORDER`: `COMPOSE[a * ORDER + b]` is the
    /// index of `a * b`, the transformation "apply `b`, then `a`".
    const COMPOSE: &'static [u8];
    /// Inverse table: `INVERSE[a]` is the index of `a^-1`.
    const INVERSE: &'static [u8];

    /// Index of `a * b` (apply `b` first, then `a`), for `a, b <`
    /// [`ORDER`](Group::ORDER). An index out of range is a caller's bug: a debug
    /// assertion in debug builds; in release it is reduced modulo `ORDER`, so this
    /// never panics.
    #[inline]
    fn compose(a: usize, b: usize) -> usize {
        debug_assert!(
            a < Self::ORDER && b < Self::ORDER,
            "compose({a}, {b}) outside a group of order {}",
            Self::ORDER
        );
        Self::COMPOSE[(a % Self::ORDER) * Self::ORDER + (b % Self::ORDER)] as usize
    }

    /// Index of `a^-1`, for `a <` [`ORDER`](Group::ORDER) (out of range: a debug
    /// assertion; reduced modulo `ORDER` in release).
    #[inline]
    fn inverse(a: usize) -> usize {
        debug_assert!(
            a < Self::ORDER,
            "inverse({a}) outside a group of order {}",
            Self::ORDER
        );
        Self::INVERSE[a % Self::ORDER] as usize
    }
}

/// Names of the elements in GrouPy order (C4 uses the first four).
pub const ELEMENT_NAMES: [&str; 8] = [
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "flipud",
    "transpose",
    "fliplr",
    "anti-transpose",
];

/// Splits an element index into `(m, r)`: `g = 4*m + r`, flip bit `m`, rotation `r`.
/// Valid for C4 (always `m = 0`) and D4.
#[inline]
pub const fn flip_and_rotation(g: usize) -> (usize, usize) {
    ((g / 4) % 2, g % 4)
}

/// Index of the D4 (or, for `m = 0`, C4) product `(m1,r1)(m2,r2) =
/// (m1 xor m2, ((-1)^m2 r1 + r2) mod 4)`.
#[inline]
pub const fn compose_closed_form(a: usize, b: usize) -> usize {
    let (m1, r1) = flip_and_rotation(a);
    let (m2, r2) = flip_and_rotation(b);
    let r1 = if m2 == 1 { (4 - r1) % 4 } else { r1 };
    4 * (m1 ^ m2) + (r1 + r2) % 4
}

/// Index of the inverse: `(0,r)^-1 = (0,-r)`, `(1,r)^-1 = (1,r)` (reflections are
/// involutions).
#[inline]
pub const fn inverse_closed_form(a: usize) -> usize {
    let (m, r) = flip_and_rotation(a);
    if m == 1 { a } else { (4 - r) % 4 }
}

/// Source coordinate of the spatial action of element `g` on an `n x n` grid:
/// `(g.A)[u][v] = A[u'][v']` where `Some((u', v')) = spatial_source(g, n, u, v)`.
///
/// `g.A` is `flipud^m(rot90(A, r))` for `g = 4m + r`, rotating about the grid's
/// geometric centre, for odd and even `n` alike (a pure permutation: no resampling).
/// One rotation step reads `rot90(A)[u][v] = A[v][n-1-u]`. `g` is taken modulo 8.
///
/// Returns `None` when `(u, v)` is outside the grid.
#[inline]
pub const fn spatial_source(g: usize, n: usize, u: usize, v: usize) -> Option<(usize, usize)> {
    spatial_source_rect(g, n, n, u, v)
}

/// Source coordinate of element `g`'s action on a non-square `height x width` map:
/// `(g.A)[u][v] = A[u'][v']` where `Some((u', v')) = spatial_source_rect(g, height,
/// width, u, v)`. Rotations by an odd multiple of 90° swap the map's dimensions: the
/// result map is `width x height` and `(u, v)` index that map (see
/// [`transformed_dims`]).
///
/// Returns `None` when `(u, v)` is outside `g.A`.
#[inline]
pub const fn spatial_source_rect(
    g: usize,
    height: usize,
    width: usize,
    u: usize,
    v: usize,
) -> Option<(usize, usize)> {
    let (rows, cols) = transformed_dims(g, height, width);
    if u >= rows || v >= cols {
        return None;
    }
    Some(source_in_range(g, height, width, u, v))
}

/// [`spatial_source_rect`] for `(u, v)` known to be inside `g.A`.
#[inline]
pub(crate) const fn source_in_range(
    g: usize,
    height: usize,
    width: usize,
    u: usize,
    v: usize,
) -> (usize, usize) {
    let (m, r) = flip_and_rotation(g);
    // Dimensions of rot90^r(A) (before the flip).
    let (rows, _) = transformed_dims(r, height, width);
    let (mut u, mut v) = if m == 1 { (rows - 1 - u, v) } else { (u, v) };
    // Walk back through the rotations; each step maps a (h x w) source to (w x h).
    let mut step = 0;
    while step < r {
        // B = rot90(C) with C of dims (rows_c, cols_c): B[u][v] = C[v][cols_c-1-u].
        let (_, cols_c) = transformed_dims(r - 1 - step, height, width);
        let next = (v, cols_c - 1 - u);
        u = next.0;
        v = next.1;
        step += 1;
    }
    (u, v)
}

/// Dimensions `(rows, cols)` of `g.A` for an `height x width` map `A`: swapped for
/// odd rotations.
#[inline]
pub const fn transformed_dims(g: usize, height: usize, width: usize) -> (usize, usize) {
    if g % 2 == 1 {
        (width, height)
    } else {
        (height, width)
    }
}

/// Checks the group axioms on a composition table and inverse table of order `n`:
/// closure, identity 0, inverses, associativity. `const`, so it runs at compile time.
/// Tables of the wrong length fail the check.
pub const fn axioms_hold(compose: &[u8], inverse: &[u8], n: usize) -> bool {
    if compose.len() != n * n || inverse.len() != n {
        return false;
    }
    let mut a = 0;
    while a < n {
        // closure and identity
        if compose[a] as usize != a || compose[a * n] as usize != a {
            return false;
        }
        let ai = inverse[a] as usize;
        if ai >= n || compose[a * n + ai] != 0 || compose[ai * n + a] != 0 {
            return false;
        }
        let mut b = 0;
        while b < n {
            let ab = compose[a * n + b] as usize;
            if ab >= n {
                return false;
            }
            let mut c = 0;
            while c < n {
                let bc = compose[b * n + c] as usize;
                if compose[ab * n + c] != compose[a * n + bc] {
                    return false;
                }
                c += 1;
            }
            b += 1;
        }
        a += 1;
    }
    true
}

/// Checks that the spatial action on an `n x n` grid is a left action compatible
/// with the composition table: `(a*b).A == a.(b.A)` for all `a, b` and every grid
/// point. `const`, so it runs at compile time for chosen `n`. A table of the wrong
/// length or with out-of-range entries fails the check.
pub const fn action_is_homomorphism(compose: &[u8], order: usize, n: usize) -> bool {
    if compose.len() != order * order {
        return false;
    }
    let mut a = 0;
    while a < order {
        let mut b = 0;
        while b < order {
            let ab = compose[a * order + b] as usize;
            if ab >= order {
                return false;
            }
            let mut u = 0;
            while u < n {
                let mut v = 0;
                while v < n {
                    // (a.(b.A))[u][v] = (b.A)[src_a(u,v)] = A[src_b(src_a(u,v))]
                    let (u1, v1) = source_in_range(a, n, n, u, v);
                    let (u2, v2) = source_in_range(b, n, n, u1, v1);
                    let (u3, v3) = source_in_range(ab, n, n, u, v);
                    if u2 != u3 || v2 != v3 {
                        return false;
                    }
                    v += 1;
                }
                u += 1;
            }
            b += 1;
        }
        a += 1;
    }
    true
}

/// Builds the composition table of the first `N` elements (4: C4, 8: D4).
pub(crate) const fn compose_table<const NN: usize>(n: usize) -> [u8; NN] {
    let mut t = [0u8; NN];
    let mut a = 0;
    while a < n {
        let mut b = 0;
        while b < n {
            t[a * n + b] = compose_closed_form(a, b) as u8;
            b += 1;
        }
        a += 1;
    }
    t
}

/// Builds the inverse table of the first `N` elements.
pub(crate) const fn inverse_table<const N: usize>() -> [u8; N] {
    let mut t = [0u8; N];
    let mut a = 0;
    while a < N {
        t[a] = inverse_closed_form(a) as u8;
        a += 1;
    }
    t
}
