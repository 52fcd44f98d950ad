//! Compile-time index tables that expand a raw filter into its `nto` transformed
//! copies, identical to GrouPy's `make_{c4_z2,c4_p4,d4_z2,d4_p4m}_indices(K)`.
//!
//! A table has shape `(nto, nti, K, K)` of entries `(T, U, V)`:
//!
//! ```text
//! tw[o][t][i][s][u][v] = w[o][i][ T[t][s][u][v] ][ U[t][s][u][v] ][ V[t][s][u][v] ]
//! ```
//!
//! * `(U, V)[t][s][u][v] = spatial_source(t, K, u, v)` (see [`super::spatial_source`]): the filter is rotated (and
//!   flipped) by `t` about its geometric centre, for odd and even `K`.
//! * `T[t][s] = index of t^-1 * s` (constant over `u, v`; 0 when `nti = 1`).
//!
//! The tables are built by `const fn`, so `const TABLE: IndexTable<4, 4, 3> =
//! c4_c4::<3>();` costs nothing at run time. The same entries are available at run
//! time for any `K` through [`table_entry`].

use super::{C4, D4, Group, compose_closed_form, inverse_closed_form, source_in_range};

/// One table entry `[T, U, V]`: source orientation plane, source row, source column.
pub type IndexEntry = [u16; 3];

/// An index table for a layer with `NTO` output and `NTI` input orientation planes and
/// `K x K` filters, laid out `entries[t][s][u][v] = [T, U, V]` like GrouPy's int32
/// `(nto, nti, K, K, 3)` array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexTable<const NTO: usize, const NTI: usize, const K: usize> {
    /// `entries[t][s][u][v] = [T, U, V]`.
    pub entries: [[[[IndexEntry; K]; K]; NTI]; NTO],
}

/// The entry `(T, U, V)` for output orientation `t`, input orientation `s` and filter
/// position `(u, v)` of a `k x k` filter with `nti` input planes (1 for a lifting
/// layer, |G| for a group layer). Same values as the `const` tables, for a kernel
/// size known only at run time.
///
/// Returns `None` when an index is out of range (`t >= 8`, `s >= nti`, `u` or
/// `v >= k`) or `nti` is not 1, 4 or 8.
#[inline]
pub const fn table_entry(
    nti: usize,
    k: usize,
    t: usize,
    s: usize,
    u: usize,
    v: usize,
) -> Option<(usize, usize, usize)> {
    if t >= 8 || s >= nti || u >= k || v >= k || !matches!(nti, 1 | 4 | 8) {
        return None;
    }
    Some(entry_in_range(nti, k, t, s, u, v))
}

/// [`table_entry`] for indices known to be in range.
#[inline]
pub(crate) const fn entry_in_range(
    nti: usize,
    k: usize,
    t: usize,
    s: usize,
    u: usize,
    v: usize,
) -> (usize, usize, usize) {
    let plane = if nti == 1 {
        0
    } else {
        compose_closed_form(inverse_closed_form(t), s)
    };
    let (su, sv) = source_in_range(t, k, k, u, v);
    (plane, su, sv)
}

const fn build<const NTO: usize, const NTI: usize, const K: usize>() -> IndexTable<NTO, NTI, K> {
    const {
        assert!(
            K >= 1 && K <= u16::MAX as usize,
            "kernel size must be in 1..=65535"
        );
        assert!(
            NTO == 4 || NTO == 8,
            "output group order must be 4 (C4) or 8 (D4)"
        );
        assert!(
            NTI == 1 || NTI == NTO,
            "nti must be 1 (lifting) or the group order"
        );
    }
    let mut entries = [[[[[0u16; 3]; K]; K]; NTI]; NTO];
    let mut t = 0;
    while t < NTO {
        let mut s = 0;
        while s < NTI {
            let mut u = 0;
            while u < K {
                let mut v = 0;
                while v < K {
                    let (p, su, sv) = entry_in_range(NTI, K, t, s, u, v);
                    entries[t][s][u][v] = [p as u16, su as u16, sv as u16];
                    v += 1;
                }
                u += 1;
            }
            s += 1;
        }
        t += 1;
    }
    IndexTable { entries }
}

/// Z2 -> C4 lifting table (GrouPy `make_c4_z2_indices(K)`), shape `(4, 1, K, K)`.
pub const fn z2_c4<const K: usize>() -> IndexTable<{ C4::ORDER }, 1, K> {
    build::<{ C4::ORDER }, 1, K>()
}

/// C4 -> C4 group-convolution table (GrouPy `make_c4_p4_indices(K)`), shape
/// `(4, 4, K, K)`.
pub const fn c4_c4<const K: usize>() -> IndexTable<{ C4::ORDER }, { C4::ORDER }, K> {
    build::<{ C4::ORDER }, { C4::ORDER }, K>()
}

/// Z2 -> D4 lifting table (GrouPy `make_d4_z2_indices(K)`), shape `(8, 1, K, K)`.
/// Even `K` included (GrouPy refuses it; the closed form is the same).
pub const fn z2_d4<const K: usize>() -> IndexTable<{ D4::ORDER }, 1, K> {
    build::<{ D4::ORDER }, 1, K>()
}

/// D4 -> D4 group-convolution table (GrouPy `make_d4_p4m_indices(K)`), shape
/// `(8, 8, K, K)`. Even `K` included.
pub const fn d4_d4<const K: usize>() -> IndexTable<{ D4::ORDER }, { D4::ORDER }, K> {
    build::<{ D4::ORDER }, { D4::ORDER }, K>()
}

impl<const NTO: usize, const NTI: usize, const K: usize> IndexTable<NTO, NTI, K> {
    /// The entries flattened in GrouPy's C order `(nto, nti, K, K, 3)`.
    pub fn flat(&self) -> impl Iterator<Item = u16> + '_ {
        self.entries
            .iter()
            .flatten()
            .flatten()
            .flatten()
            .flatten()
            .copied()
    }
}

// The tables are genuinely compile-time: evaluate one of each kind in a const.
const _: IndexTable<4, 4, 3> = c4_c4::<3>();
const _: IndexTable<8, 8, 2> = d4_d4::<2>();
