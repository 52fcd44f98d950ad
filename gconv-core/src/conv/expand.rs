//! Filter-bank expansion: raw learnable weights to the ordinary OIHW bank of
//! `nto` transformed copies.
//!
//! ```text
//! bank[o*nto + t][i*nti + s][u][v] = w[o][i][T][U][V],   (T, U, V) = table[t][s][u][v]
//! ```
//!
//! with `w` of shape `(C_out, C_in, nti, K, K)` and the bank of shape
//! `(C_out*nto, C_in*nti, K, K)`; see [`crate::group::tables`] for the table.

use crate::error::{Buffer, Error};
use crate::group::Group;
use crate::group::tables::{IndexTable, entry_in_range};
use crate::shape::{ConvGeometry, Domain};

/// Length of the expanded bank for `c_out` x `c_in` G-channels and `k x k` filters:
/// `C_out * |G| * C_in * nti * K * K`.
///
/// # Errors
/// [`Error::SizeOverflow`] when the length does not fit in `usize`.
pub const fn expanded_bank_len<G: Group>(
    domain: Domain,
    c_out: usize,
    c_in: usize,
    k: usize,
) -> Result<usize, Error> {
    let factors = [c_out, G::ORDER, c_in, domain.planes::<G>(), k, k];
    let mut acc: usize = 1;
    let mut i = 0;
    while i < factors.len() {
        acc = match acc.checked_mul(factors[i]) {
            Some(v) => v,
            None => return Err(Error::SizeOverflow),
        };
        i += 1;
    }
    Ok(acc)
}

/// Expands raw weights `(C_out, C_in, nti, K, K)` into the OIHW bank
/// `(C_out*|G|, C_in*nti, K, K)` for a convolution from `domain` to `G`, for any
/// kernel size known at run time. Every element of `bank` is written.
///
/// # Errors
/// [`Error::ZeroDimension`] for zero `c_out`, `c_in` or `k`; [`Error::SizeOverflow`];
/// [`Error::BufferLength`] if `raw` or `bank` does not have exactly the required
/// length.
pub fn expand_filter_bank<G: Group>(
    domain: Domain,
    c_out: usize,
    c_in: usize,
    k: usize,
    raw: &[f32],
    bank: &mut [f32],
) -> Result<(), Error> {
    check_bank_buffers::<G>(domain, c_out, c_in, k, raw, bank)?;
    expand_by_closed_form(c_out, c_in, G::ORDER, domain.planes::<G>(), k, raw, bank);
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
        let bank_len = checked_len(&[c_out, NTO, c_in, NTI, K, K])?;
        check_lengths(
            c_out,
            c_in,
            K,
            raw.len(),
            bank_len / NTO,
            bank.len(),
            bank_len,
        )?;
        expand_with(c_out, c_in, NTO, NTI, K, raw, bank, |t, s, u, v| {
            let [p, su, sv] = self.entries[t][s][u][v];
            (p as usize, su as usize, sv as usize)
        });
        Ok(())
    }
}

/// Validates `raw` and `bank` against the geometry of a convolution (used by the
/// forward kernels, which own a validated [`ConvGeometry`]).
pub(crate) fn check_raw_and_bank(
    geo: &ConvGeometry,
    raw: &[f32],
    bank: &[f32],
) -> Result<(), Error> {
    check_lengths(
        geo.out_channels(),
        geo.in_channels(),
        geo.kernel(),
        raw.len(),
        geo.weight_len(),
        bank.len(),
        geo.bank_len(),
    )
}

/// Expansion for a validated geometry (buffers already checked).
pub(crate) fn expand_for(geo: &ConvGeometry, raw: &[f32], bank: &mut [f32]) {
    let (c_out, c_in) = (geo.out_channels(), geo.in_channels());
    expand_by_closed_form(c_out, c_in, geo.nto(), geo.nti(), geo.kernel(), raw, bank);
}

/// Expansion with table entries computed on the fly by
/// [`table_entry`](crate::group::tables::table_entry) (the same
/// `const fn` the compile-time tables are built with), for a run-time `k`.
fn expand_by_closed_form(
    c_out: usize,
    c_in: usize,
    nto: usize,
    nti: usize,
    k: usize,
    raw: &[f32],
    bank: &mut [f32],
) {
    expand_with(c_out, c_in, nto, nti, k, raw, bank, |t, s, u, v| {
        entry_in_range(nti, k, t, s, u, v)
    });
}

fn check_bank_buffers<G: Group>(
    domain: Domain,
    c_out: usize,
    c_in: usize,
    k: usize,
    raw: &[f32],
    bank: &[f32],
) -> Result<(), Error> {
    let bank_len = expanded_bank_len::<G>(domain, c_out, c_in, k)?;
    check_lengths(
        c_out,
        c_in,
        k,
        raw.len(),
        bank_len / G::ORDER.max(1),
        bank.len(),
        bank_len,
    )
}

fn checked_len(factors: &[usize]) -> Result<usize, Error> {
    factors
        .iter()
        .try_fold(1usize, |acc, &f| acc.checked_mul(f))
        .ok_or(Error::SizeOverflow)
}

fn check_lengths(
    c_out: usize,
    c_in: usize,
    k: usize,
    raw_len: usize,
    raw_expected: usize,
    bank_len: usize,
    bank_expected: usize,
) -> Result<(), Error> {
    use crate::error::Dim;
    if c_out == 0 {
        return Err(Error::ZeroDimension(Dim::OutChannels));
    }
    if c_in == 0 {
        return Err(Error::ZeroDimension(Dim::InChannels));
    }
    if k == 0 {
        return Err(Error::ZeroDimension(Dim::Kernel));
    }
    if raw_len != raw_expected {
        return Err(Error::BufferLength {
            buffer: Buffer::Weight,
            expected: raw_expected,
            found: raw_len,
        });
    }
    if bank_len != bank_expected {
        return Err(Error::BufferLength {
            buffer: Buffer::Bank,
            expected: bank_expected,
            found: bank_len,
        });
    }
    Ok(())
}

/// The expansion loop, parameterised by where table entries come from. Buffers have
/// been checked: `raw` is `(c_out, c_in, nti, k, k)` and `bank` is
/// `(c_out*nto, c_in*nti, k, k)`. A bank row `o*nto + t` has the length of a raw row
/// `o`, `c_in * nti * k * k`.
#[allow(clippy::too_many_arguments)]
fn expand_with(
    c_out: usize,
    c_in: usize,
    nto: usize,
    nti: usize,
    k: usize,
    raw: &[f32],
    bank: &mut [f32],
    entry: impl Fn(usize, usize, usize, usize) -> (usize, usize, usize),
) {
    let taps = k * k;
    let filter_len = nti * taps;
    let row_len = c_in * filter_len;
    for o in 0..c_out {
        let raw_row = &raw[o * row_len..(o + 1) * row_len];
        for t in 0..nto {
            let bank_row = &mut bank[(o * nto + t) * row_len..(o * nto + t + 1) * row_len];
            for (raw_filter, bank_filter) in raw_row
                .chunks_exact(filter_len)
                .zip(bank_row.chunks_exact_mut(filter_len))
            {
                for (index, out) in bank_filter.iter_mut().enumerate() {
                    let (s, u, v) = (index / taps, (index % taps) / k, index % k);
                    let (p, su, sv) = entry(t, s, u, v);
                    *out = raw_filter[p * taps + su * k + sv];
                }
            }
        }
    }
}
