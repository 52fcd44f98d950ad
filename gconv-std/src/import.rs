//! Import of plain OIHW filter banks exported by other libraries, escnn's
//! `R2Conv(...).export()` above all: recover the raw weight from an expanded bank,
//! check that the bank really has the G-structure, and store it `|G|` times smaller.
//!
//! An expanded bank `(C_out*nto, C_in*nti, K, K)` holds `nto = |G|` transformed copies of
//! each raw filter (`CONVENTIONS.md`):
//!
//! ```text
//! bank[o*nto + t][i*nti + s] = spatial_t(w[o][i][t^-1 s])     (GrouPy plane order)
//! ```
//!
//! so the raw weight is the `t = 0` rows, `w[o][i][s] = bank[o*nto][i*nti + s]`, and every
//! other row must be a copy of it. [`raw_weight_from_bank`] takes those rows, re-expands
//! them with the library ([`expand_filter_bank`]) and checks every value of the given
//! bank against the re-expansion; a bank that is not G-structured (another group, other
//! plane order, a hand-edited plane) is refused with the output plane, tap and size of
//! the worst disagreement. [`conv_from_bank`] builds the layer in one call.
//!
//! # escnn's plane order and spatial convention
//!
//! escnn lays a regular field out as `|G|` consecutive channels, channel `j` being the
//! value at `G.elements[j]` (its regular representation permutes the basis like left
//! multiplication: `rho(g) e_j = e_(g h_j)`), fields one after the other: feature maps
//! are `(N, C*|G|, H, W)` with channel `c*|G| + j`, and the exported bank has the same
//! layout on both axes. The element orders are:
//!
//! | escnn `G.elements[j]` | acts on an `(H, W)` array as | GrouPy element |
//! |---|---|---|
//! | C4 `r[2pi/4]`, `j = r` | `np.rot90(A, r)` | `r` |
//! | D4 `(+, r)`, `j = r` | `np.rot90(A, r)` | `r` |
//! | D4 `(-, r)`, `j = 4 + r` | `np.rot90(np.fliplr(A), r)` | `4 + ((2 - r) mod 4)` |
//!
//! So C4 needs no reordering ([`ESCNN_C4_TO_GROUPY`]), and D4 swaps escnn `(-, 0)`
//! (fliplr, GrouPy 6) with `(-, 2)` (flipud, GrouPy 4) and keeps the rest
//! ([`ESCNN_D4_TO_GROUPY`] = `[0, 1, 2, 3, 6, 5, 4, 7]`; `4 + ((2 - r) mod 4)` is the
//! same number as `4 + ((-r - 2) mod 4)`). escnn's image axes are GrouPy's: its rotation
//! by `+90°` is `np.rot90(A, 1)` on axes `(-2, -1)`, with no y-up flip of the sense of
//! rotation.
//!
//! How this was verified, on escnn 1.0.11 (PyPI) with `tools/escnn/export_banks.py`,
//! which stops on a failed check and records the numbers in
//! `tools/escnn/golden/cases.json`:
//!
//! 1. `GeometricTensor(a, trivial).transform(g)` of a random 7x7 array equals the GrouPy
//!    action (`rot90`, then `flipud` for `m = 1`) of exactly one GrouPy element, bit for
//!    bit, for every escnn element `g`: that gives the table above.
//! 2. The map is a group isomorphism (escnn's `g @ h` against GrouPy's composition), and
//!    escnn's transform of a regular field, reordered by the map, equals GrouPy's law
//!    `(g.y)[h] = spatial_g(y[g^-1 h])` exactly.
//! 3. Each exported bank (C4, D4; lifting and group; K = 3 and 5), reordered by the map,
//!    equals the numpy GrouPy expansion of its own `t = 0` rows to a relative `5e-7`
//!    (escnn samples its basis in floating point, so the copies are not bit-identical);
//!    without the reordering the D4 banks are off by more than 100 % of their largest
//!    value, and read with the opposite sense of rotation (escnn `r` as GrouPy `-r`,
//!    what a y-up axis would give) every bank, C4 and D4, is off by more than 100 %.
//!    For the lifting banks, plane `j` equals `spatial_(map[j])` of plane 0.
//! 4. The integration test `gconv-std/tests/escnn_import.rs` imports every bank here,
//!    runs the gconv layer on escnn's input and matches escnn's own output to float
//!    rounding.
//!
//! e2cnn, escnn's predecessor, has the same `R2Conv(...).export()`, but it was not
//! installed or checked here: run the same checks on an e2cnn export before importing
//! one with [`BankOrder::Escnn`].

use core::fmt;

use gconv_core::conv::expand::expand_filter_bank;
use gconv_core::{C4, D4, Domain, Padding};

use crate::any::{AnyConv, Pair, Space};
use crate::error::Error;
use crate::tensor::Tensor;

/// escnn's C4 element `j` (`j[2pi/4]`, channel `j` of a regular field) as a GrouPy
/// element: the same.
pub const ESCNN_C4_TO_GROUPY: [usize; 4] = [0, 1, 2, 3];

/// escnn's D4 element `j` (`(+, j)` for `j < 4`, `(-, j - 4)` after; channel `j` of a
/// regular field) as a GrouPy element `4m + r`: `(-, r)` is `4 + ((2 - r) mod 4)`.
pub const ESCNN_D4_TO_GROUPY: [usize; 8] = [0, 1, 2, 3, 6, 5, 4, 7];

const GROUPY_C4: [usize; 4] = [0, 1, 2, 3];
const GROUPY_D4: [usize; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

/// The order of the orientation planes within each G-channel of an expanded bank or a
/// flattened feature map (the output and, for group input, the input channels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BankOrder {
    /// GrouPy's (and gconv's): plane `t` is element `t` of `CONVENTIONS.md`.
    GrouPy,
    /// escnn's regular fields: plane `j` is `G.elements[j]`
    /// ([`ESCNN_C4_TO_GROUPY`], [`ESCNN_D4_TO_GROUPY`]).
    Escnn,
}

impl BankOrder {
    /// For each plane index `j` in this order, the GrouPy element it holds. A Z2 space
    /// has one plane, `[0]`.
    pub fn to_groupy(self, space: Space) -> &'static [usize] {
        match (self, space) {
            (_, Space::Z2) => &[0],
            (BankOrder::GrouPy, Space::C4) => &GROUPY_C4,
            (BankOrder::Escnn, Space::C4) => &ESCNN_C4_TO_GROUPY,
            (BankOrder::GrouPy, Space::D4) => &GROUPY_D4,
            (BankOrder::Escnn, Space::D4) => &ESCNN_D4_TO_GROUPY,
        }
    }

    /// For each GrouPy element, its plane index in this order (the inverse of
    /// [`to_groupy`](Self::to_groupy)).
    pub fn from_groupy(self, space: Space) -> Vec<usize> {
        let forward = self.to_groupy(space);
        let mut inverse = vec![0; forward.len()];
        for (j, &element) in forward.iter().enumerate() {
            inverse[element] = j;
        }
        inverse
    }
}

impl fmt::Display for BankOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BankOrder::GrouPy => "GrouPy",
            BankOrder::Escnn => "escnn",
        })
    }
}

/// `(C_out, C_in, K)` of an expanded bank `(C_out*nto, C_in*nti, K, K)` for `pair`.
fn bank_dims(pair: Pair, shape: &[usize]) -> Result<(usize, usize, usize), Error> {
    let (nto, nti) = (pair.to().planes(), pair.from().planes());
    match *shape {
        [co, ci, k1, k2]
            if co > 0 && ci > 0 && k1 > 0 && k1 == k2 && co % nto == 0 && ci % nti == 0 =>
        {
            Ok((co / nto, ci / nti, k1))
        }
        _ => Err(Error::Shape {
            tensor: "bank",
            expected: format!(
                "(C_out*{nto}, C_in*{nti}, K, K) for a {} layer, nonzero",
                pair.name()
            ),
            found: shape.to_vec(),
        }),
    }
}

/// Copies `data`, viewed as `(outer, planes, inner)`, moving plane `j` to `dest[j]`.
fn move_planes(data: &[f32], planes: usize, inner: usize, dest: &[usize]) -> Vec<f32> {
    if planes * inner == 0 {
        // A map with no pixels (found by fuzzing: `chunks_exact(0)` panicked): its data
        // is empty, nothing to move.
        return data.to_vec();
    }
    let mut out = vec![0.0; data.len()];
    for (src, dst) in data
        .chunks_exact(planes * inner)
        .zip(out.chunks_exact_mut(planes * inner))
    {
        for (j, &d) in dest.iter().enumerate() {
            dst[d * inner..(d + 1) * inner].copy_from_slice(&src[j * inner..(j + 1) * inner]);
        }
    }
    out
}

/// Where plane `j` of order `from` goes in order `to`.
fn plane_moves(space: Space, from: BankOrder, to: BankOrder) -> Vec<usize> {
    let into = to.from_groupy(space);
    from.to_groupy(space).iter().map(|&e| into[e]).collect()
}

/// Reorders the orientation planes of an expanded bank `(C_out*nto, C_in*nti, K, K)`
/// (output planes, and input planes for a group layer) from order `from` to order `to`.
///
/// # Errors
/// [`Error::Shape`] when the bank is not rank 4 with square nonzero `K x K` filters and
/// channel counts divisible by `nto` and `nti`.
pub fn reorder_bank(
    pair: Pair,
    bank: &Tensor,
    from: BankOrder,
    to: BankOrder,
) -> Result<Tensor, Error> {
    let (c_out, c_in, k) = bank_dims(pair, bank.shape())?;
    let (nto, nti) = (pair.to().planes(), pair.from().planes());
    let rows = move_planes(
        bank.data(),
        nto,
        c_in * nti * k * k,
        &plane_moves(pair.to(), from, to),
    );
    let data = move_planes(&rows, nti, k * k, &plane_moves(pair.from(), from, to));
    Tensor::new(vec![c_out * nto, c_in * nti, k, k], data)
}

/// Expands a raw weight with the library; `raw` has been sized for the dimensions.
fn expand(pair: Pair, c_out: usize, c_in: usize, k: usize, raw: &[f32]) -> Result<Vec<f32>, Error> {
    let domain = match pair.from() {
        Space::Z2 => Domain::Z2,
        _ => Domain::Group,
    };
    let mut bank = vec![0.0; raw.len() * pair.to().planes()];
    match pair.to() {
        Space::D4 => expand_filter_bank::<D4>(domain, c_out, c_in, k, raw, &mut bank),
        _ => expand_filter_bank::<C4>(domain, c_out, c_in, k, raw, &mut bank),
    }
    .map_err(|source| Error::Core {
        layer: format!("{} bank import", pair.name()),
        source,
    })?;
    Ok(bank)
}

fn check_tolerance(tolerance: f32) -> Result<(), Error> {
    if tolerance.is_finite() && tolerance >= 0.0 {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid tolerance {tolerance}: expected a finite value >= 0 (relative to the \
             largest absolute value)"
        )))
    }
}

/// `|a - b|`, infinite when either is not finite.
fn deviation(a: f32, b: f32) -> f32 {
    if a.is_finite() && b.is_finite() {
        (a - b).abs()
    } else {
        f32::INFINITY
    }
}

/// Recovers the raw weight `(C_out, C_in, nti, K, K)` from an expanded OIHW bank
/// `(C_out*nto, C_in*nti, K, K)` whose planes are in `order`, and checks that the bank
/// is G-structured.
///
/// The planes are put in GrouPy order, the raw weight is read off the `t = 0` rows
/// (`w[o][i][s] = bank[o*nto][i*nti + s]`), re-expanded with the library, and every
/// value of the bank must equal the re-expansion within `tolerance` times the bank's
/// largest absolute value (escnn's exports need about `1e-6`; `0.0` asks for exact
/// copies). The result is `|G|` times smaller than the bank and is what
/// [`GConv::from_weights`](crate::GConv::from_weights) and
/// [`AnyConv::from_weights`] take.
///
/// # Errors
/// [`Error::Shape`] for a bank of the wrong shape (see [`reorder_bank`]);
/// [`Error::Usage`] for a negative or non-finite tolerance, and when the bank is not
/// G-structured: the message names the output channel and plane, the input channel and
/// plane, the tap, the value found, the value the G-structure requires and the size of
/// the difference (a non-finite value anywhere counts as an infinite difference).
pub fn raw_weight_from_bank(
    pair: Pair,
    bank: &Tensor,
    order: BankOrder,
    tolerance: f32,
) -> Result<Tensor, Error> {
    check_tolerance(tolerance)?;
    let (c_out, c_in, k) = bank_dims(pair, bank.shape())?;
    let (nto, nti) = (pair.to().planes(), pair.from().planes());
    let groupy = reorder_bank(pair, bank, order, BankOrder::GrouPy)?;
    let row_len = c_in * nti * k * k;
    let raw: Vec<f32> = groupy
        .data()
        .chunks_exact(nto * row_len)
        .flat_map(|rows| &rows[..row_len])
        .copied()
        .collect();
    let again = expand(pair, c_out, c_in, k, &raw)?;

    let scale = groupy.data().iter().fold(
        0.0f32,
        |m, v| {
            if v.is_finite() { m.max(v.abs()) } else { m }
        },
    );
    let allowed = tolerance * scale;
    let worst = groupy
        .data()
        .iter()
        .zip(&again)
        .map(|(&a, &b)| deviation(a, b))
        .enumerate()
        .fold(
            (0, 0.0f32),
            |best, (i, d)| if d > best.1 { (i, d) } else { best },
        );
    if worst.1 > allowed {
        return Err(structure_error(
            pair,
            order,
            (c_in, k),
            groupy.data(),
            &again,
            worst,
            (scale, tolerance),
        ));
    }
    Tensor::new(vec![c_out, c_in, nti, k, k], raw)
}

/// The "not G-structured" error for the worst flat index (GrouPy order) of the bank.
fn structure_error(
    pair: Pair,
    order: BankOrder,
    (c_in, k): (usize, usize),
    groupy: &[f32],
    again: &[f32],
    (index, diff): (usize, f32),
    (scale, tolerance): (f32, f32),
) -> Error {
    let (nto, nti) = (pair.to().planes(), pair.from().planes());
    let taps = k * k;
    let row_len = c_in * nti * taps;
    let (row, within) = (index / row_len, index % row_len);
    let (o, t) = (row / nto, row % nto);
    let (i, s) = (within / (nti * taps), (within / taps) % nti);
    let (u, v) = ((within % taps) / k, within % k);
    let t_given = order.from_groupy(pair.to())[t];
    let s_given = order.from_groupy(pair.from())[s];
    let group = pair.to();
    let input = match pair.from() {
        Space::Z2 => format!("input channel {i}"),
        _ => format!("input channel {i} plane {s_given} (GrouPy element {s})"),
    };
    let relative = if scale > 0.0 {
        format!("{:.3e} of", diff / scale)
    } else {
        "all of".to_string()
    };
    Error::Usage(format!(
        "the {} bank ({order} plane order) is not {group}-structured: output channel {o} \
         plane {t_given} (GrouPy element {t}), {input}, tap ({u}, {v}) holds {found}, but \
         output plane 0 transformed by element {t} gives {expected}; the difference {diff:.3e} \
         is {relative} the bank's largest |value| {scale:.3e}, over the tolerance {tolerance:e} \
         (bank row {bank_row}, column {bank_col})",
        pair.name(),
        found = groupy[index],
        expected = again[index],
        bank_row = o * nto + t_given,
        bank_col = i * nti + s_given,
    ))
}

/// Collapses an expanded bias `(C_out*nto,)` (one value per output plane, as escnn's
/// export has it) to gconv's one value per G-channel `(C_out,)`, checking that each
/// G-channel's `nto` values agree within `tolerance` times the largest absolute value
/// (a per-plane bias would break equivariance). The plane order does not matter.
///
/// # Errors
/// [`Error::Shape`] when the length is not a nonzero multiple of `nto`;
/// [`Error::Usage`] for a bad tolerance or a G-channel whose values differ.
pub fn bias_from_bank(pair: Pair, bias: &[f32], tolerance: f32) -> Result<Vec<f32>, Error> {
    check_tolerance(tolerance)?;
    let nto = pair.to().planes();
    if bias.is_empty() || !bias.len().is_multiple_of(nto) {
        return Err(Error::Shape {
            tensor: "bias",
            expected: format!("(C_out*{nto},) for a {} layer, nonzero", pair.name()),
            found: vec![bias.len()],
        });
    }
    let scale = bias.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (o, planes) in bias.chunks_exact(nto).enumerate() {
        for (t, &b) in planes.iter().enumerate() {
            let diff = deviation(b, planes[0]);
            if diff > tolerance * scale {
                return Err(Error::Usage(format!(
                    "the {} bias is not shared by the {nto} planes of output channel {o}: \
                     plane {t} holds {b}, plane 0 holds {}; the difference {diff:.3e} is over \
                     the tolerance {tolerance:e} x {scale:.3e}",
                    pair.name(),
                    planes[0],
                )));
            }
        }
    }
    Ok(bias.iter().step_by(nto).copied().collect())
}

/// A layer from an expanded bank (and optionally an expanded bias) in one call:
/// [`raw_weight_from_bank`], [`bias_from_bank`], then [`AnyConv::from_weights`] with
/// `stride` and `padding` (escnn's `R2Conv(padding=p)` is [`Padding::symmetric`]`(p)`;
/// its default, 0, is [`Padding::Valid`]).
///
/// # Errors
/// As [`raw_weight_from_bank`], [`bias_from_bank`] and [`AnyConv::from_weights`]
/// (including a bias whose channel count differs from the bank's).
pub fn conv_from_bank(
    pair: Pair,
    bank: &Tensor,
    bias: Option<&[f32]>,
    order: BankOrder,
    tolerance: f32,
    stride: usize,
    padding: Padding,
) -> Result<AnyConv, Error> {
    let raw = raw_weight_from_bank(pair, bank, order, tolerance)?;
    let bias = bias
        .map(|b| bias_from_bank(pair, b, tolerance))
        .transpose()?;
    AnyConv::from_weights(pair, raw, bias, stride, padding)
}

/// An escnn feature map `(N, C*|G|, H, W)` (channel `c*|G| + j` = element
/// `G.elements[j]`) as a gconv group map `(N, C, |G|, H, W)` in GrouPy order. A Z2 map
/// `(N, C, H, W)` (`space` = [`Space::Z2`]: trivial fields) is the same in both and is
/// returned as is.
///
/// # Errors
/// [`Error::Shape`] for a map that is not rank 4 or whose channels are not a multiple
/// of `|G|`.
pub fn escnn_map_to_groupy(space: Space, x: &Tensor) -> Result<Tensor, Error> {
    let planes = space.planes();
    match *x.shape() {
        [n, ch, h, w] if ch % planes == 0 => {
            if space == Space::Z2 {
                return Ok(x.clone());
            }
            let moves = plane_moves(space, BankOrder::Escnn, BankOrder::GrouPy);
            let data = move_planes(x.data(), planes, h * w, &moves);
            Tensor::new(vec![n, ch / planes, planes, h, w], data)
        }
        _ => Err(Error::Shape {
            tensor: "escnn feature map",
            expected: format!("(N, C*{planes}, H, W)"),
            found: x.shape().to_vec(),
        }),
    }
}

/// A gconv map, `(N, C, |G|, H, W)` in GrouPy order (or `(N, C, H, W)` for
/// [`Space::Z2`]), in escnn's layout `(N, C*|G|, H, W)`: the inverse of
/// [`escnn_map_to_groupy`].
///
/// # Errors
/// [`Error::Shape`] for a group map that is not rank 5 with `|G|` planes on axis -3, or
/// a Z2 map that is not rank 4.
pub fn groupy_map_to_escnn(space: Space, y: &Tensor) -> Result<Tensor, Error> {
    let planes = space.planes();
    match (space, y.shape()) {
        (Space::Z2, &[_, _, _, _]) => Ok(y.clone()),
        (Space::C4 | Space::D4, &[n, c, o, h, w]) if o == planes => {
            let moves = plane_moves(space, BankOrder::GrouPy, BankOrder::Escnn);
            let data = move_planes(y.data(), planes, h * w, &moves);
            Tensor::new(vec![n, c * planes, h, w], data)
        }
        _ => Err(Error::Shape {
            tensor: "feature map",
            expected: match space {
                Space::Z2 => "(N, C, H, W)".to_string(),
                _ => format!("(N, C, {planes}, H, W)"),
            },
            found: y.shape().to_vec(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAIRS: [Pair; 4] = [Pair::Z2C4, Pair::C4C4, Pair::Z2D4, Pair::D4D4];

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 2003) as f32 - 1001.0) / 1001.0)
            .collect()
    }

    fn raw(pair: Pair, c_out: usize, c_in: usize, k: usize, seed: usize) -> Tensor {
        let shape = vec![c_out, c_in, pair.from().planes(), k, k];
        let n = shape.iter().product();
        Tensor::new(shape, values(n, seed)).unwrap()
    }

    fn expanded(pair: Pair, w: &Tensor) -> Tensor {
        let s = w.shape();
        let (c_out, c_in, nti, k) = (s[0], s[1], s[2], s[3]);
        let bank = expand(pair, c_out, c_in, k, w.data()).unwrap();
        Tensor::new(vec![c_out * pair.to().planes(), c_in * nti, k, k], bank).unwrap()
    }

    #[test]
    fn round_trip_is_exact_in_both_orders() {
        for pair in PAIRS {
            for k in [1, 3, 4] {
                let w = raw(pair, 3, 2, k, k);
                let bank = expanded(pair, &w);
                assert_eq!(bank.len(), pair.to().planes() * w.len());
                let back = raw_weight_from_bank(pair, &bank, BankOrder::GrouPy, 0.0).unwrap();
                assert_eq!(back, w, "{} K={k}", pair.name());
                let escnn = reorder_bank(pair, &bank, BankOrder::GrouPy, BankOrder::Escnn).unwrap();
                let back = raw_weight_from_bank(pair, &escnn, BankOrder::Escnn, 0.0).unwrap();
                assert_eq!(back, w, "{} K={k} escnn order", pair.name());
                let again =
                    reorder_bank(pair, &escnn, BankOrder::Escnn, BankOrder::GrouPy).unwrap();
                assert_eq!(again, bank);
            }
        }
    }

    #[test]
    fn escnn_d4_order_swaps_fliplr_and_flipud_only() {
        assert_eq!(BankOrder::Escnn.to_groupy(Space::C4), &[0, 1, 2, 3]);
        assert_eq!(
            BankOrder::Escnn.from_groupy(Space::D4),
            vec![0, 1, 2, 3, 6, 5, 4, 7]
        );
        // (-, r) acts as rot90(fliplr(A), r) = GrouPy 4 + ((2 - r) mod 4) = 4 + ((-r - 2) mod 4).
        for r in 0..4 {
            assert_eq!(ESCNN_D4_TO_GROUPY[4 + r], 4 + (6 - r) % 4);
            assert_eq!(ESCNN_D4_TO_GROUPY[r], r);
        }
        // A D4 bank in GrouPy order read as escnn order is not G-structured (and vice versa).
        let bank = expanded(Pair::Z2D4, &raw(Pair::Z2D4, 2, 1, 3, 5));
        let e = raw_weight_from_bank(Pair::Z2D4, &bank, BankOrder::Escnn, 1e-3).unwrap_err();
        assert!(e.to_string().contains("escnn plane order"), "{e}");
        // C4: the two orders agree.
        let bank = expanded(Pair::C4C4, &raw(Pair::C4C4, 2, 1, 3, 5));
        assert!(raw_weight_from_bank(Pair::C4C4, &bank, BankOrder::Escnn, 0.0).is_ok());
    }

    #[test]
    fn a_perturbed_bank_is_refused_with_the_plane_and_tap() {
        let pair = Pair::D4D4;
        let w = raw(pair, 2, 2, 3, 1);
        let mut bank = expanded(pair, &w);
        // Output channel 1, plane 5, input channel 0, plane 3, tap (2, 1).
        let (row, col) = (8 + 5, 3);
        let index = (row * 16 + col) * 9 + 2 * 3 + 1;
        bank.data_mut()[index] += 0.01;
        let e = raw_weight_from_bank(pair, &bank, BankOrder::GrouPy, 1e-4)
            .unwrap_err()
            .to_string();
        for part in [
            "not D4-structured",
            "output channel 1 plane 5",
            "input channel 0 plane 3",
            "tap (2, 1)",
            "bank row 13, column 3",
        ] {
            assert!(e.contains(part), "{part:?} not in {e}");
        }
        // Within a loose enough tolerance it is accepted, and the raw weight is row 0's.
        let back = raw_weight_from_bank(pair, &bank, BankOrder::GrouPy, 0.02).unwrap();
        assert_eq!(back, w);
        // The same bank in escnn order names the escnn plane: GrouPy 5 is escnn 5, but
        // GrouPy 6 is escnn 4.
        let mut bank = expanded(pair, &w);
        let index = ((8 + 6) * 16 + 3) * 9;
        bank.data_mut()[index] = f32::NAN;
        let escnn = reorder_bank(pair, &bank, BankOrder::GrouPy, BankOrder::Escnn).unwrap();
        let e = raw_weight_from_bank(pair, &escnn, BankOrder::Escnn, 0.5)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("output channel 1 plane 4 (GrouPy element 6)"),
            "{e}"
        );
        assert!(e.contains("NaN"), "{e}");
    }

    #[test]
    fn wrong_shapes_and_tolerances_are_refused() {
        let ok = expanded(Pair::Z2C4, &raw(Pair::Z2C4, 2, 3, 3, 0));
        assert!(raw_weight_from_bank(Pair::Z2C4, &ok, BankOrder::GrouPy, 0.0).is_ok());
        for (pair, shape) in [
            (Pair::Z2C4, vec![8, 3, 3]),
            (Pair::Z2C4, vec![6, 3, 3, 3]),
            (Pair::Z2D4, vec![12, 3, 3, 3]),
            (Pair::C4C4, vec![8, 6, 3, 3]),
            (Pair::C4C4, vec![8, 8, 3, 2]),
            (Pair::C4C4, vec![0, 8, 3, 3]),
            (Pair::D4D4, vec![8, 8, 0, 0]),
        ] {
            let bank = Tensor::zeros(shape.clone());
            let e = raw_weight_from_bank(pair, &bank, BankOrder::GrouPy, 0.0).unwrap_err();
            match e {
                Error::Shape { tensor, found, .. } => {
                    assert_eq!((tensor, found), ("bank", shape));
                }
                other => panic!("{other}"),
            }
        }
        for tol in [-1.0, f32::NAN, f32::INFINITY] {
            let e = raw_weight_from_bank(Pair::Z2C4, &ok, BankOrder::GrouPy, tol).unwrap_err();
            assert!(e.to_string().contains("invalid tolerance"), "{e}");
        }
        let e = groupy_map_to_escnn(Space::C4, &Tensor::zeros(vec![1, 2, 8, 3, 3])).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
        let e = escnn_map_to_groupy(Space::D4, &Tensor::zeros(vec![1, 12, 3, 3])).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
    }

    #[test]
    fn bias_is_collapsed_per_channel_or_refused() {
        let b = [0.5, 0.5, 0.5, 0.5, -1.0, -1.0, -1.0, -1.0];
        assert_eq!(
            bias_from_bank(Pair::C4C4, &b, 0.0).unwrap(),
            vec![0.5, -1.0]
        );
        let e = bias_from_bank(Pair::Z2D4, &b[..4], 0.0).unwrap_err();
        assert!(matches!(e, Error::Shape { tensor: "bias", .. }), "{e}");
        let mut bad = b;
        bad[6] = -0.9;
        let e = bias_from_bank(Pair::C4C4, &bad, 1e-3)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("output channel 1") && e.contains("plane 2"),
            "{e}"
        );
        assert!(bias_from_bank(Pair::C4C4, &bad, 0.2).is_ok());
        assert!(bias_from_bank(Pair::C4C4, &[], 0.0).is_err());
    }

    #[test]
    fn empty_feature_maps_convert_without_panicking() {
        // Found by fuzzing: a D4 map (8, 8, 1, 0) panicked in chunks_exact(0).
        for space in [Space::C4, Space::D4] {
            let p = space.planes();
            let x = Tensor::zeros(vec![8, 8, 1, 0]);
            let g = escnn_map_to_groupy(space, &x).unwrap();
            assert_eq!(g.shape(), &[8, 8 / p, p, 1, 0]);
            assert_eq!(groupy_map_to_escnn(space, &g).unwrap(), x);
        }
    }

    #[test]
    fn feature_maps_round_trip_and_d4_swaps_planes() {
        for space in [Space::C4, Space::D4] {
            let p = space.planes();
            let y = Tensor::new(vec![2, 3, p, 2, 2], values(2 * 3 * p * 4, 3)).unwrap();
            let e = groupy_map_to_escnn(space, &y).unwrap();
            assert_eq!(e.shape(), &[2, 3 * p, 2, 2]);
            assert_eq!(escnn_map_to_groupy(space, &e).unwrap(), y);
        }
        // escnn channel 4 of a D4 field is (-, 0) = fliplr = GrouPy plane 6.
        let x = Tensor::from_fn(vec![1, 8, 1, 1], |i| i as f32);
        let g = escnn_map_to_groupy(Space::D4, &x).unwrap();
        assert_eq!(g.data(), &[0.0, 1.0, 2.0, 3.0, 6.0, 5.0, 4.0, 7.0]);
        let z = Tensor::from_fn(vec![1, 3, 2, 2], |i| i as f32);
        assert_eq!(escnn_map_to_groupy(Space::Z2, &z).unwrap(), z);
        assert_eq!(groupy_map_to_escnn(Space::Z2, &z).unwrap(), z);
    }

    #[test]
    fn conv_from_bank_matches_the_original_layer() {
        for pair in PAIRS {
            let layer = AnyConv::new(pair, 2, 3, 3, 1, Padding::Same, 11).unwrap();
            let w = layer.weight().clone();
            let bank = expanded(pair, &w);
            let bias: Vec<f32> = [0.25, -0.5, 1.0]
                .iter()
                .flat_map(|&b| std::iter::repeat_n(b, pair.to().planes()))
                .collect();
            let escnn = reorder_bank(pair, &bank, BankOrder::GrouPy, BankOrder::Escnn).unwrap();
            let imported = conv_from_bank(
                pair,
                &escnn,
                Some(&bias),
                BankOrder::Escnn,
                0.0,
                1,
                Padding::Same,
            )
            .unwrap();
            assert_eq!(imported.weight(), &w);
            assert_eq!(imported.bias(), Some(&[0.25, -0.5, 1.0][..]));
            // A bias for another channel count is refused.
            assert!(
                conv_from_bank(
                    pair,
                    &escnn,
                    Some(&bias[..pair.to().planes()]),
                    BankOrder::Escnn,
                    0.0,
                    1,
                    Padding::Same
                )
                .is_err()
            );
        }
    }
}
