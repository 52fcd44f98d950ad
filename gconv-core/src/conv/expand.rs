//! Filter-bank expansion: raw learnable weights to the ordinary OIHW bank of
//! `nto` transformed copies.
//!
//! ```text
//! bank[o*nto + t][i*nti + s][u][v] = w[o][i][T][U][V],   (T, U, V) = table[t][s][u][v]
//! ```
//!
//! with `w` of shape `(C_out, C_in, nti, K, K)` and the bank of shape
//! `(C_out*nto, C_in*nti, K, K)`; see [`crate::group::tables`] for the table.

use core::num::NonZeroUsize;

use crate::error::{Buffer, Dim, Error};
use crate::group::Group;
use crate::group::tables::{IndexTable, entry_in_range};
use crate::shape::{ConvGeometry, Domain, checked_product};

/// Length of the expanded bank for `c_out` x `c_in` G-channels and `k x k` filters:
/// `C_out * |G| * C_in * nti * K * K`.
///
/// # Errors
/// [`Error::ZeroDimension`] for a zero size; [`Error::SizeOverflow`] when the length
/// does not fit in `usize`.
pub const fn expanded_bank_len<G: Group>(
    domain: Domain,
    c_out: usize,
    c_in: usize,
    k: usize,
) -> Result<usize, Error> {
    match BankDims::new(c_out, c_in, domain.planes::<G>(), G::ORDER, k) {
        Ok(dims) => Ok(dims.bank_len),
        Err(e) => Err(e),
    }
}

/// Expands raw weights `(C_out, C_in, nti, K, K)` into the OIHW bank
/// `(C_out*|G|, C_in*nti, K, K)` for a convolution from `domain` to `G`, for any
/// kernel size known at run time. Every element of `bank` is written.
///
/// # Errors
/// [`Error::ZeroDimension`] for zero `c_out`, `c_in` or `k`; [`Error::SizeOverflow`];
/// [`Error::BufferLength`] if `raw` or `bank` does not have exactly the required
/// length. Nothing is written on error.
pub fn expand_filter_bank<G: Group>(
    domain: Domain,
    c_out: usize,
    c_in: usize,
    k: usize,
    raw: &[f32],
    bank: &mut [f32],
) -> Result<(), Error> {
    let dims = BankDims::new(c_out, c_in, domain.planes::<G>(), G::ORDER, k)?;
    dims.check(raw, bank)?;
    dims.expand_by_closed_form(raw, bank);
    Ok(())
}

impl<const NTO: usize, const NTI: usize, const K: usize> IndexTable<NTO, NTI, K> {
    /// Expands raw weights `(C_out, C_in, NTI, K, K)` into the OIHW bank
    /// `(C_out*NTO, C_in*NTI, K, K)` by this compile-time table. Same result as
    /// [`expand_filter_bank`].
    ///
    /// # Errors
    /// As [`expand_filter_bank`].
    pub fn expand(
        &self,
        c_out: usize,
        c_in: usize,
        raw: &[f32],
        bank: &mut [f32],
    ) -> Result<(), Error> {
        let dims = BankDims::new(c_out, c_in, NTI, NTO, K)?;
        dims.check(raw, bank)?;
        dims.expand_with(raw, bank, |t, s, u, v| {
            let [p, su, sv] = *self.entries.get(t)?.get(s)?.get(u)?.get(v)?;
            Some((p as usize, su as usize, sv as usize))
        });
        Ok(())
    }
}

/// Validates `raw` and `bank` against a convolution's geometry and expands; used by
/// the forward kernels that take raw weights.
///
/// # Errors
/// [`Error::BufferLength`] for a raw weight or bank of the wrong length.
pub(crate) fn expand_for(geo: &ConvGeometry, raw: &[f32], bank: &mut [f32]) -> Result<(), Error> {
    let dims = BankDims {
        c_out: geo.out_channels(),
        c_in: geo.in_channels(),
        nti: geo.nti(),
        nto: geo.nto(),
        k: geo.kernel(),
        raw_len: geo.weight_len(),
        bank_len: geo.bank_len(),
    };
    dims.check(raw, bank)?;
    dims.expand_by_closed_form(raw, bank);
    Ok(())
}

/// The sizes of one expansion, validated: nonzero, and both lengths fit in `usize`.
struct BankDims {
    c_out: usize,
    c_in: usize,
    nti: usize,
    nto: usize,
    k: usize,
    /// `C_out * C_in * nti * K * K`.
    raw_len: usize,
    /// `nto * raw_len`.
    bank_len: usize,
}

impl BankDims {
    const fn new(
        c_out: usize,
        c_in: usize,
        nti: usize,
        nto: usize,
        k: usize,
    ) -> Result<Self, Error> {
        if c_out == 0 {
            return Err(Error::ZeroDimension(Dim::OutChannels));
        }
        if c_in == 0 {
            return Err(Error::ZeroDimension(Dim::InChannels));
        }
        if k == 0 {
            return Err(Error::ZeroDimension(Dim::Kernel));
        }
        match (
            checked_product(&[c_out, c_in, nti, k, k]),
            checked_product(&[c_out, c_in, nti, k, k, nto]),
        ) {
            (Some(raw_len), Some(bank_len)) => Ok(BankDims {
                c_out,
                c_in,
                nti,
                nto,
                k,
                raw_len,
                bank_len,
            }),
            _ => Err(Error::SizeOverflow),
        }
    }

    fn check(&self, raw: &[f32], bank: &[f32]) -> Result<(), Error> {
        if raw.len() != self.raw_len {
            return Err(Error::BufferLength {
                buffer: Buffer::Weight,
                expected: self.raw_len,
                found: raw.len(),
            });
        }
        if bank.len() != self.bank_len {
            return Err(Error::BufferLength {
                buffer: Buffer::Bank,
                expected: self.bank_len,
                found: bank.len(),
            });
        }
        Ok(())
    }

    /// Expansion with table entries computed on the fly by
    /// [`table_entry`](crate::group::tables::table_entry)'s in-range core (the same
    /// `const fn` the compile-time tables are built with), for a run-time `k`.
    fn expand_by_closed_form(&self, raw: &[f32], bank: &mut [f32]) {
        let (nti, k) = (self.nti, self.k);
        self.expand_with(raw, bank, |t, s, u, v| {
            Some(entry_in_range(nti, k, t, s, u, v))
        });
    }

    /// The expansion loop, parameterised by where table entries come from. Buffers
    /// have been checked. A bank row `o*nto + t` has the length of a raw row `o`,
    /// `c_in * nti * k * k`.
    ///
    /// Written without indexing, division or zero-size chunks, so that release builds
    /// contain no panic path: rows and filters come from `chunks_exact` with nonzero
    /// sizes, outputs from iterators, and a source index outside the filter (which
    /// the validated tables never produce) is skipped rather than trusted.
    fn expand_with(
        &self,
        raw: &[f32],
        bank: &mut [f32],
        entry: impl Fn(usize, usize, usize, usize) -> Option<(usize, usize, usize)>,
    ) {
        let (nto, nti, k) = (self.nto, self.nti, self.k);
        let taps = k * k;
        let (Some(filter_len), Some(row_len)) = (
            NonZeroUsize::new(nti * taps),
            NonZeroUsize::new(self.c_in * nti * taps),
        ) else {
            debug_assert!(false, "expand: zero size in a validated shape");
            return;
        };
        let mut bank_rows = bank.chunks_exact_mut(row_len.get());
        for raw_row in raw.chunks_exact(row_len.get()).take(self.c_out) {
            for t in 0..nto {
                let Some(bank_row) = bank_rows.next() else {
                    debug_assert!(false, "expand: bank shorter than C_out*nto rows");
                    return;
                };
                let filters = raw_row
                    .chunks_exact(filter_len.get())
                    .zip(bank_row.chunks_exact_mut(filter_len.get()));
                for (raw_filter, bank_filter) in filters {
                    let mut outs = bank_filter.iter_mut();
                    for s in 0..nti {
                        for u in 0..k {
                            for v in 0..k {
                                let (Some(out), Some((p, su, sv))) =
                                    (outs.next(), entry(t, s, u, v))
                                else {
                                    debug_assert!(false, "expand: index table entry missing");
                                    continue;
                                };
                                match raw_filter.get(p * taps + su * k + sv) {
                                    Some(&w) => *out = w,
                                    None => debug_assert!(false, "expand: source tap out of range"),
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
