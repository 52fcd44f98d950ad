//! The Fourier path's lifting kernel: analysis, products and synthesis fused per
//! vector of output pixels, for layers `Z2 -> G`.
//!
//! A lifting layer has one input plane per channel and usually few channels (1 or 3
//! for images). The general path's GEMMs then have only `C_in*Q*d` terms per
//! coefficient (27 for C4 3->16 3x3), so their tiles spend as long storing the
//! coefficients as multiplying, and the coefficient buffer `C_rho` is as large as the
//! output. This kernel keeps the coefficients in registers instead:
//!
//! 1. **Analysis** (per block of rows, into a buffer that stays in cache): for every
//!    vector of `L` output pixels, input channel `i` and orbit `q`, the `|G|` taps of
//!    the orbit are read from the padded input and transformed (the group's add-only
//!    butterfly). Only the *live* coefficients are kept: an orbit with a nontrivial
//!    stabilizer (the centre tap, and for D4 the taps on the axes and diagonals) has
//!    coefficients that vanish for every input, and those are skipped. A channel has
//!    at least one live coefficient per tap (exactly one for C4, 11 for D4's 9 taps).
//! 2. **Products**: the `|G|` output coefficients of `CH` output channels on one
//!    vector, `y_j = sum_{i, live (q, c)} A_rho[(o, b)][(i, q, c)] z_{i,q}(rho)[a][c]`
//!    for `j = (rho, a, b)`, accumulate in `CH * |G|` vector registers: each live
//!    coefficient is loaded once and feeds `CH * d` multiply-adds (`d` = 1, or 2 for
//!    the 2-dimensional irrep).
//! 3. **Synthesis**: each channel's coefficients are turned into its `|G|`
//!    orientation planes (the bias is the trivial coefficient's starting value) and
//!    stored. One pass of `CH` channels writes `CH * |G|` planes front to back.
//!
//! Multiply-adds per output G-channel, input channel and pixel: C4 3x3 13 (the direct
//! path 36, the general Fourier path 18), C4 5x5 37 (against 100), D4 3x3 17
//! (against 72). The transformed weights are the general path's numbers, packed in
//! the order this loop reads them.

use core::marker::PhantomData;
use core::ops::Range;
use core::ptr::NonNull;

use super::orbits::Orbits;
use super::spectrum::{Coeff, Spectrum};
use super::{CHANNEL_GROUP, ImagePart};

/// Most live coefficients per input channel, indexed by `u8` (31 orbits x 4 for C4
/// 11x11, 21 x 8 for D4).
const MAX_SLOTS: usize = 255;

/// Most orbits of a lifting layer's taps (C4 11x11: 31).
const MAX_LIFTING_ORBITS: usize = 32;

/// [`LiftingPlan::slot_of`] of a coefficient that vanishes.
const DEAD: u8 = u8::MAX;

/// Pixels per vector of the widest kernel (AVX-512); the scratch is sized for it.
pub(super) const MAX_LANES: usize = 16;

/// Bytes of live coefficients per block of rows, meant to stay in L1/L2 while every
/// pass of channels reads them (measured on Zen 4: 8-96 KiB within noise of each
/// other, 384 KiB 5-10% slower on the 224x224 layers).
const BLOCK_BYTES: usize = 32 * 1024;

/// The row groups `(first output coefficient j, d)` of each group, in coefficient
/// order: output coefficients `j .. j + d` share the live input coefficients of one
/// row `(rho, a)` of one irrep. Checked against the spectrum's layout in the tests.
const C4_GROUPS: [(usize, usize); 3] = [(0, 1), (1, 1), (2, 2)];
const D4_GROUPS: [(usize, usize); 6] = [(0, 1), (1, 1), (2, 1), (3, 1), (4, 2), (6, 2)];

/// Most row groups (D4).
const MAX_GROUPS: usize = 6;

/// What the lifting kernel derives from the orbits and the group's spectrum: which
/// coefficients are live, where each is kept, and which each output coefficient sums.
/// No allocation; under 1 KiB.
#[derive(Clone, Debug)]
pub(super) struct LiftingPlan {
    /// Live coefficient `s`: `(orbit q, coefficient j)`, ordered by row group, then
    /// `q`, then `j`.
    slots: [(u8, u8); MAX_SLOTS],
    n_slots: usize,
    /// Slot of coefficient `j` of orbit `q`, [`DEAD`] when it vanishes.
    slot_of: [[u8; 8]; MAX_LIFTING_ORBITS],
    /// Slots of each row group (in [`C4_GROUPS`] / [`D4_GROUPS`] order): contiguous.
    group_slots: [Range<usize>; MAX_GROUPS],
}

impl LiftingPlan {
    /// The plan for `orbits` of a lifting layer of group `S` (`N = |G|`), or `None`
    /// when they do not fit the fixed arrays (never for kernels up to 11x11).
    pub(super) fn new<const N: usize, S: Spectrum<N>>(orbits: &Orbits) -> Option<Self> {
        let mut plan = LiftingPlan {
            slots: [(0, 0); MAX_SLOTS],
            n_slots: 0,
            slot_of: [[DEAD; 8]; MAX_LIFTING_ORBITS],
            group_slots: [const { 0..0 }; MAX_GROUPS],
        };
        if orbits.count() > MAX_LIFTING_ORBITS {
            return None;
        }
        for (g, &(first, _)) in groups::<N>().iter().enumerate() {
            let Coeff { block, row, .. } = *S::COEFFS.get(first)?;
            let start = plan.n_slots;
            for q in 0..orbits.count() {
                for j in 0..N {
                    let c = S::COEFFS[j];
                    if c.block != block || c.row != row || !live::<N, S>(orbits, q, j) {
                        continue;
                    }
                    let s = plan.n_slots;
                    *plan.slots.get_mut(s)? = (u8::try_from(q).ok()?, u8::try_from(j).ok()?);
                    *plan.slot_of.get_mut(q)?.get_mut(j)? = u8::try_from(s).ok()?;
                    plan.n_slots += 1;
                }
            }
            *plan.group_slots.get_mut(g)? = start..plan.n_slots;
        }
        Some(plan)
    }

    /// Multiply-adds per output G-channel, input channel and pixel: every live
    /// coefficient times the `d` output coefficients of its row group.
    pub(super) fn terms_per_channel<const N: usize>(&self) -> usize {
        groups::<N>()
            .iter()
            .zip(&self.group_slots)
            .map(|(&(_, d), r)| r.len() * d)
            .sum()
    }

    /// Packed weights per channel group of 4: `4 * C_in * terms_per_channel()`.
    pub(super) fn group_weights<const N: usize>(&self, c_in: usize) -> Option<usize> {
        CHANNEL_GROUP
            .checked_mul(c_in)?
            .checked_mul(self.terms_per_channel::<N>())
    }

    /// Output rows per block: as many as keep the block's live coefficients (`C_in *
    /// slots` per pixel, rows rounded up to whole vectors of 16) within
    /// [`BLOCK_BYTES`], at least one.
    pub(super) fn block_rows(&self, c_in: usize, out_width: usize) -> usize {
        let row = out_width.div_ceil(MAX_LANES) * MAX_LANES;
        let per_row = row.saturating_mul(c_in).saturating_mul(self.n_slots) * 4;
        (BLOCK_BYTES / per_row.max(1)).max(1)
    }

    /// Scratch f32 of one block's live coefficients, for an output `oh x ow`
    /// (rows rounded up to whole vectors of the widest kernel, so every kernel fits).
    pub(super) fn scratch_len(&self, c_in: usize, (oh, ow): (usize, usize)) -> Option<usize> {
        let rows = self.block_rows(c_in, ow).min(oh.max(1));
        ow.div_ceil(MAX_LANES)
            .checked_mul(MAX_LANES)?
            .checked_mul(rows)?
            .checked_mul(c_in)?
            .checked_mul(self.n_slots)
    }

    /// Packs the weights in the order [`run`] reads them: per channel group of 4
    /// output channels (the last padded with zeros), per row group, per live slot
    /// `(q, (rho, a, c))` of it, per input channel `i`, per output coefficient `b <
    /// d`, the 4 channels' `a(rho, (o, b), (i, q, c))`: the transformed weight
    /// `A_rho[(o, b)][(i, q, c)]`. Every element of `packed` (`groups *
    /// group_weights` long) is written.
    pub(super) fn pack_weights<const N: usize, S: Spectrum<N>>(
        &self,
        c_out: usize,
        c_in: usize,
        packed: &mut [f32],
        a: impl Fn(usize, (usize, usize), (usize, usize, usize)) -> f32,
    ) {
        let mut next = packed.iter_mut();
        for group in 0..c_out.div_ceil(CHANNEL_GROUP) {
            for (&(first, d), range) in groups::<N>().iter().zip(&self.group_slots) {
                debug_assert!(
                    first < N && range.end <= self.n_slots,
                    "lifting plan: row group"
                );
                let block = S::COEFFS.get(first).map_or(0, |c| c.block);
                for &(q, jz) in self.slots.get(range.clone()).unwrap_or(&[]) {
                    debug_assert!(usize::from(jz) < N, "lifting plan: coefficient {jz}");
                    let c = S::COEFFS.get(usize::from(jz)).map_or(0, |c| c.col);
                    for i in 0..c_in {
                        for b in 0..d {
                            for o in group * CHANNEL_GROUP..(group + 1) * CHANNEL_GROUP {
                                let Some(slot) = next.next() else {
                                    debug_assert!(false, "lifting weights: packed too short");
                                    return;
                                };
                                *slot = if o < c_out {
                                    a(block, (o, b), (i, usize::from(q), c))
                                } else {
                                    0.0
                                };
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The row groups of the group of order `N`.
const fn groups<const N: usize>() -> &'static [(usize, usize)] {
    if N == 4 { &C4_GROUPS } else { &D4_GROUPS }
}

/// Whether coefficient `j` of orbit `q`'s analysis can be nonzero:
/// `z_j = sum_k rho(k)[a][c] x[tap(k . q)]`, and the taps repeat `|S_q|` times, so
/// it vanishes for every input when the signs of each tap's repeats cancel.
fn live<const N: usize, S: Spectrum<N>>(orbits: &Orbits, q: usize, j: usize) -> bool {
    let Some(&Coeff { block, row, col }) = S::COEFFS.get(j) else {
        return false;
    };
    let Some(irrep) = S::BLOCKS.get(block) else {
        return false;
    };
    debug_assert!(
        row < 2 && col < 2,
        "irrep entry ({row}, {col}) of a 2x2 matrix"
    );
    let matrix = |k: usize| i32::from(irrep.matrix(k)[row % 2][col % 2]);
    (0..N).any(|k| {
        let tap = orbits.member(q, k).1;
        (0..N)
            .filter(|&m| orbits.member(q, m).1 == tap)
            .map(matrix)
            .sum::<i32>()
            != 0
    })
}

/// The layer's numbers the kernel needs, all checked by the caller.
pub(super) struct Layer<'a> {
    pub(super) orbits: &'a Orbits,
    pub(super) c_in: usize,
    pub(super) out_width: usize,
    /// `H' * W'`.
    pub(super) out_plane: usize,
    /// Distance between packed input planes, and between rows of a packed plane.
    pub(super) plane_len: usize,
    pub(super) phase_w: usize,
    /// `tap_offset(p)` of tap `p` in a packed plane.
    pub(super) taps: &'a [usize],
}

/// Output channels `channels` (starting at a multiple of 4) of output rows `rows`,
/// from the padded input `padded`, into `out`, with vectors of `L` pixels and `CH`
/// channels per pass (`CH` divides 4); `zbuf` holds one block of rows' live
/// coefficients ([`LiftingPlan::block_rows`]) and `fma(acc, w, z) = acc + w * z`
/// (fused where the kernel has it).
///
/// A row that is not a multiple of `L` ends with a vector overlapping the one
/// before (every pixel is computed by the same operations whichever vector holds
/// it, so overlaps are rewritten identically); a row narrower than `L` is computed
/// on a wider window and only its pixels are stored. The reads stay inside the
/// packed input, whose tail has room for the fast path's wider tiles.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn run<const N: usize, S: Spectrum<N>, const L: usize, const CH: usize>(
    plan: &LiftingPlan,
    layer: &Layer<'_>,
    padded: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    (channels, rows): (Range<usize>, Range<usize>),
    out: &mut ImagePart<'_, '_>,
    zbuf: &mut [f32],
    fma: impl Fn([f32; L], f32, [f32; L]) -> [f32; L] + Copy,
) {
    let (ow, plane) = (layer.out_width, layer.out_plane);
    let (zbuf, _) = zbuf.as_chunks_mut::<L>();
    let group_len = plan.group_weights::<N>(layer.c_in);
    debug_assert!(
        group_len.is_some(),
        "lifting kernel: weights per group overflow"
    );
    let group_len = group_len.unwrap_or(0);
    let run_len = layer.c_in * plan.n_slots; // zbuf vectors per run
    let runs = ow.div_ceil(L); // vectors per row
    // The first pixel of vector `r` of a row: the last one ends at the row's end.
    let x_of = |r: usize| (r * L).min(ow.saturating_sub(L));
    let block = plan.block_rows(layer.c_in, ow);
    // Offset of every orbit member's tap in a packed plane.
    let mut taps = [[0usize; N]; MAX_LIFTING_ORBITS];
    // `LiftingPlan::new` refused more orbits than the array holds.
    debug_assert!(
        layer.orbits.count() <= MAX_LIFTING_ORBITS,
        "lifting kernel: more orbits than the plan holds"
    );
    let orbits = layer.orbits.count().min(MAX_LIFTING_ORBITS);
    for (q, taps_q) in taps.iter_mut().enumerate().take(orbits) {
        for (k, tap) in taps_q.iter_mut().enumerate() {
            let offset = layer.taps.get(layer.orbits.member(q, k).1).copied();
            debug_assert!(
                offset.is_some(),
                "lifting kernel: orbit member outside the taps"
            );
            *tap = offset.unwrap_or(0);
        }
    }
    let orbit_taps = &taps[..orbits];
    let mut r0 = rows.start;
    while r0 < rows.end {
        let r1 = (r0 + block).min(rows.end);
        for y in r0..r1 {
            for r in 0..runs {
                let n = (y - r0) * runs + r;
                let Some(z) = zbuf.get_mut(n * run_len..(n + 1) * run_len) else {
                    debug_assert!(false, "lifting kernel: scratch shorter than a block");
                    return; // ruled out by the scratch length
                };
                let at = y * layer.phase_w + x_of(r);
                analyze::<N, S, L>(
                    plan,
                    (layer.c_in, layer.plane_len),
                    orbit_taps,
                    padded,
                    at,
                    z,
                );
            }
        }
        let mut first = channels.start;
        while first < channels.end {
            let group = first / CHANNEL_GROUP;
            let Some(w) = weights.get(group * group_len..(group + 1) * group_len) else {
                debug_assert!(
                    false,
                    "lifting kernel: packed weights shorter than the groups"
                );
                return; // ruled out by the caller's length checks
            };
            let (w, _) = w.as_chunks::<CHANNEL_GROUP>();
            let lane = first % CHANNEL_GROUP; // this pass's channels in the group
            let count = (channels.end - first).min(CH);
            let mut b = [0.0f32; CH];
            for (o, b) in b.iter_mut().enumerate().take(count) {
                let v = bias.map(|v| v.get(first + o).copied());
                debug_assert!(v != Some(None), "lifting kernel: bias shorter than C_out");
                *b = v.flatten().unwrap_or(0.0);
            }
            for y in r0..r1 {
                let Some(dst) =
                    group_rows::<N, CH>(out, (&channels, &rows), (first, count, y), (ow, plane))
                else {
                    debug_assert!(false, "lifting kernel: output row {y} not in the part");
                    return; // ruled out by `check_part`
                };
                for r in 0..runs {
                    let n = (y - r0) * runs + r;
                    let Some(z) = zbuf.get(n * run_len..(n + 1) * run_len) else {
                        debug_assert!(false, "lifting kernel: scratch shorter than a block");
                        return;
                    };
                    let acc = products::<N, L, CH>(plan, layer.c_in, (w, lane), z, &b, fma);
                    let x0 = x_of(r);
                    // Spelled out with constant indices so that `acc` stays in
                    // registers (a loop over `o` was kept, with `acc` in memory);
                    // `store` skips the channels past `count`.
                    let store = |o: usize, acc_o: &[[f32; L]; N]| {
                        dst.store(o, x0, &S::synthesize(acc_o));
                    };
                    store(0, &acc[0]);
                    if CH > 1 {
                        store(1, &acc[1 % CH]);
                    }
                    if CH > 2 {
                        store(2, &acc[2 % CH]);
                        store(3, &acc[3 % CH]);
                    }
                }
            }
            first += CH;
        }
        r0 = r1;
    }
}

/// Writes the live coefficients of the vector at flat input index `at` into `zbuf`
/// (one vector's part): slot `s` of channel `i` at `zbuf[s * C_in + i]`. Plain loops
/// over fixed arrays throughout: `core::array::from_fn` here compiled to an
/// out-of-line call without the caller's target features.
#[inline(always)]
fn analyze<const N: usize, S: Spectrum<N>, const L: usize>(
    plan: &LiftingPlan,
    (c_in, plane_len): (usize, usize),
    orbit_taps: &[[usize; N]],
    padded: &[f32],
    at: usize,
    zbuf: &mut [[f32; L]],
) {
    for i in 0..c_in {
        let base = i * plane_len + at;
        for (taps, slot_of) in orbit_taps.iter().zip(&plan.slot_of) {
            let mut z = [[0.0; L]; N];
            for (z_k, &tap) in z.iter_mut().zip(taps) {
                match padded.get(base + tap..).and_then(|v| v.first_chunk::<L>()) {
                    Some(v) => *z_k = *v,
                    // Ruled out by the packed input's tail room (tests run with debug
                    // assertions over every geometry of the grid).
                    None => debug_assert!(false, "lifting kernel read past the packed input"),
                }
            }
            let coeffs = S::analyze(&z);
            // `j` runs over constants (the loop is unrolled), so `coeffs` stays in
            // registers; an index read from the plan kept it in memory.
            for j in 0..N {
                debug_assert!(N <= 8, "lifting analysis: group order {N}");
                let slot = slot_of[j % 8];
                if slot == DEAD {
                    continue;
                }
                match zbuf.get_mut(usize::from(slot) * c_in + i) {
                    Some(dst) => *dst = coeffs[j],
                    None => debug_assert!(false, "lifting analysis: slot outside the vector's run"),
                }
            }
        }
    }
}

/// The coefficients `acc[o][j]` (the bias plus the products) of `CH` output
/// channels on one vector: channels `lane ..` of the channel group whose weights are
/// `w`, the vector's live coefficients being `zbuf`. Each row group is its own
/// inlined call with its output coefficients as constants, so `acc` stays in
/// registers.
#[inline(always)]
fn products<const N: usize, const L: usize, const CH: usize>(
    plan: &LiftingPlan,
    c_in: usize,
    (w, lane): (&[[f32; CHANNEL_GROUP]], usize),
    zbuf: &[[f32; L]],
    bias: &[f32; CH],
    fma: impl Fn([f32; L], f32, [f32; L]) -> [f32; L] + Copy,
) -> [[[f32; L]; N]; CH] {
    let mut acc = [[[0.0f32; L]; N]; CH];
    for o in 0..CH {
        acc[o][0] = [bias[o]; L];
    }
    let acc = &mut acc;
    let zs = |g: usize| {
        let r = plan.group_slots.get(g).cloned().unwrap_or(0..0);
        let z = zbuf.get(r.start * c_in..r.end * c_in);
        debug_assert!(
            z.is_some(),
            "lifting products: row group {g} outside the run"
        );
        z.unwrap_or(&[])
    };
    let w = (w, lane);
    if N == 4 {
        let w = row_group::<N, L, CH, 1>(zs(0), w, 0, acc, fma);
        let w = row_group::<N, L, CH, 1>(zs(1), w, 1, acc, fma);
        row_group::<N, L, CH, 2>(zs(2), w, 2, acc, fma);
    } else {
        let w = row_group::<N, L, CH, 1>(zs(0), w, 0, acc, fma);
        let w = row_group::<N, L, CH, 1>(zs(1), w, 1, acc, fma);
        let w = row_group::<N, L, CH, 1>(zs(2), w, 2, acc, fma);
        let w = row_group::<N, L, CH, 1>(zs(3), w, 3, acc, fma);
        let w = row_group::<N, L, CH, 2>(zs(4), w, 4, acc, fma);
        row_group::<N, L, CH, 2>(zs(5), w, 6, acc, fma);
    }
    *acc
}

/// One row group's part of [`products`]: output coefficients `j0 .. j0 + D` from
/// its live coefficients `zs`, reading `D` weight vectors per coefficient from the
/// front of `w`; returns the rest of `w`.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // constant indices keep `acc` in registers
fn row_group<'w, const N: usize, const L: usize, const CH: usize, const D: usize>(
    zs: &[[f32; L]],
    (w, lane): (&'w [[f32; CHANNEL_GROUP]], usize),
    j0: usize,
    acc: &mut [[[f32; L]; N]; CH],
    fma: impl Fn([f32; L], f32, [f32; L]) -> [f32; L] + Copy,
) -> (&'w [[f32; CHANNEL_GROUP]], usize) {
    debug_assert!(
        w.len() >= zs.len() * D,
        "lifting products: weights end early"
    );
    let (now, rest) = w.split_at(w.len().min(zs.len() * D));
    let (now, _) = now.as_chunks::<D>();
    for (z, w) in zs.iter().zip(now) {
        for o in 0..CH {
            // A pass starts at a multiple of `CH`, which divides the group's 4.
            debug_assert!(
                lane + o < CHANNEL_GROUP,
                "lifting products: lane {lane} + {o}"
            );
            let c = (lane + o) % CHANNEL_GROUP;
            for b in 0..D {
                debug_assert!(j0 + b < N, "lifting products: coefficient {j0} + {b}");
                acc[o][(j0 + b) % N] = fma(acc[o][(j0 + b) % N], w[b][c], *z);
            }
        }
    }
    (rest, lane)
}

/// Row `y` of the `CH * |G|` output planes of one pass: where the stores of [`run`]
/// go. Each row pointer comes from a slice of exactly `W'` values that
/// [`group_rows`] cut from the output with a checked `get_mut` (a row that is not
/// there is `None` before the kernel runs), so none is null or stray; the stores
/// write through them with one check per vector (`x + L <= W'`).
///
/// The stores stay `unsafe`: the same stores through the checked slices themselves
/// (`&mut [f32]` or `&[Cell<f32>]`, with a bounds check per row and vector) ran the
/// lifting layers at half speed (Z2->C4 1->8 3x3 224x224: 0.55 -> 1.1 ms; see the
/// commit message for the measurements).
struct GroupRows<'o, const N: usize, const CH: usize> {
    /// `rows[o][g]`: the first of the `W'` values of row `y` of plane `(first + o,
    /// g)`, from a checked slice, for `o < count`; dangling (never written) for `o >=
    /// count`.
    rows: [[NonNull<f32>; N]; CH],
    count: usize,
    out_width: usize,
    /// The rows are borrowed mutably from the output for `'o`.
    _out: PhantomData<&'o mut [f32]>,
}

impl<const N: usize, const CH: usize> GroupRows<'_, N, CH> {
    /// Writes `planes[g]` to row `y` of plane `(first + o, g)` from column `x`, for
    /// every `g`: the values that fall inside the row (all `L` when `x + L <= W'`).
    #[inline(always)]
    fn store<const L: usize>(&self, o: usize, x: usize, planes: &[[f32; L]; N]) {
        if o >= self.count || x >= self.out_width {
            return;
        }
        let keep = (self.out_width - x).min(L);
        let Some(rows) = self.rows.get(o) else {
            debug_assert!(false, "lifting store: channel {o} of a pass of {CH}");
            return;
        };
        if keep == L {
            // Whole vectors: a branch-free loop, unrolled, so that `planes` stays in
            // registers (a loop with the partial case inside kept it in memory,
            // written and read back at different widths).
            for g in 0..N {
                // SAFETY: `rows[g]` (`o < count`) points at the first of `W'` values
                // of one output row, a slice that `group_rows` cut from `out` with a
                // checked `get_mut`; `out` stays mutably borrowed by `run` for the
                // whole call (`'o`) and is read nowhere else; the rows are disjoint;
                // and `x + L <= W'`. An unaligned write of `[f32; L]` needs only
                // `f32` alignment.
                #[allow(unsafe_code)]
                unsafe {
                    rows[g]
                        .as_ptr()
                        .add(x)
                        .cast::<[f32; L]>()
                        .write_unaligned(planes[g]);
                }
            }
        } else {
            for (row, v) in rows.iter().zip(planes) {
                for (l, &v) in v.iter().enumerate().take(keep) {
                    // SAFETY: as above, with `x + l < x + keep <= W'`.
                    #[allow(unsafe_code)]
                    unsafe {
                        row.as_ptr().add(x + l).write(v);
                    }
                }
            }
        }
    }
}

/// The rows `y` of planes `(first + o, g)`, `o < count`, in `out`, each cut to its
/// `W'` values by a checked `get_mut`; `None` when a plane or a row is missing
/// (ruled out by the caller's checks: `check_part`), so that every row the stores
/// use is there.
#[inline(always)]
fn group_rows<'o, const N: usize, const CH: usize>(
    out: &'o mut ImagePart<'_, '_>,
    (channels, rows): (&Range<usize>, &Range<usize>),
    (first, count, y): (usize, usize, usize),
    (ow, plane): (usize, usize),
) -> Option<GroupRows<'o, N, CH>> {
    let mut dst = GroupRows {
        rows: [[NonNull::dangling(); N]; CH],
        count,
        out_width: ow,
        _out: PhantomData,
    };
    if count > CH {
        return None;
    }
    // The `count * N` slots to fill, channel by channel, orientation by orientation.
    let slots = dst.rows.iter_mut().take(count).flatten();
    let start_of = |row: &mut [f32]| NonNull::from(row).cast::<f32>();
    match out {
        ImagePart::Channels { out, .. } => {
            // Plane `(first + o - channels.start, g)` is the next one after the plane
            // before: walk the planes of the pass from the first one.
            let start = first.checked_sub(channels.start)?.checked_mul(N)?;
            let mut rest = out.get_mut(start.checked_mul(plane)?..)?;
            let at = y.checked_mul(ow)?..y.checked_mul(ow)?.checked_add(ow)?;
            for slot in slots {
                let (this, tail) = rest.split_at_mut_checked(plane)?;
                rest = tail;
                *slot = start_of(this.get_mut(at.clone())?);
            }
        }
        ImagePart::Rows { planes, .. } => {
            let start = y.checked_sub(rows.start)?.checked_mul(ow)?;
            let at = start..start.checked_add(ow)?;
            let mut pass = planes.iter_mut().skip(first.checked_mul(N)?);
            for slot in slots {
                *slot = start_of(pass.next()?.get_mut(at.clone())?);
            }
        }
    }
    // Every slot `o < count` was filled (the loops above return `None` on a missing
    // plane or row).
    Some(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hard-coded row groups are the spectrum's: coefficients `j0 .. j0 + d`
    /// share block and row, are that row's columns `0 .. d`, and the groups cover
    /// every coefficient once, in order.
    fn check<const N: usize, S: Spectrum<N>>() {
        let mut next = 0;
        for &(j0, d) in groups::<N>() {
            assert_eq!(j0, next);
            let Coeff { block, row, .. } = S::COEFFS[j0];
            assert_eq!(d, S::BLOCKS[block].dim);
            for b in 0..d {
                assert_eq!(S::COEFFS[j0 + b], Coeff { block, row, col: b });
            }
            next = j0 + d;
        }
        assert_eq!(next, N);
    }

    #[test]
    fn row_groups_match_the_spectrum() {
        check::<4, crate::C4>();
        check::<8, crate::D4>();
    }

    /// Live coefficients per channel: at least one per tap (the transform of a
    /// function on an orbit loses nothing), exactly one per tap for C4 (where only
    /// the centre has a stabilizer); and the multiply-adds the module docs quote.
    #[test]
    #[cfg_attr(miri, ignore)] // no unsafe code; slow in the interpreter
    fn live_coefficients_and_terms() {
        for k in 1..=11 {
            let c4 = LiftingPlan::new::<4, crate::C4>(&Orbits::new(4, 1, k)).unwrap();
            let d4 = LiftingPlan::new::<8, crate::D4>(&Orbits::new(8, 1, k)).unwrap();
            assert_eq!(c4.n_slots, k * k, "C4, K = {k}");
            assert!(d4.n_slots >= k * k, "D4, K = {k}");
        }
        let terms = |k: usize| {
            let c4 = LiftingPlan::new::<4, crate::C4>(&Orbits::new(4, 1, k)).unwrap();
            let d4 = LiftingPlan::new::<8, crate::D4>(&Orbits::new(8, 1, k)).unwrap();
            (c4.terms_per_channel::<4>(), d4.terms_per_channel::<8>())
        };
        assert_eq!(terms(3), (13, 17));
        assert_eq!(terms(5), (37, 45));
        assert_eq!(terms(7), (73, 85));
    }
}
