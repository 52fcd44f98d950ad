//! The int8 fast path: register-tiled int8 convolutions on packed operands, bit for bit
//! equal to the direct int8 kernel ([`quant::conv`](crate::quant::conv)), for the four
//! group pairs (Z2 -> C4, C4 -> C4, Z2 -> D4, D4 -> D4), kernels up to [`MAX_KERNEL`],
//! any stride and padding.
//!
//! # What it computes
//!
//! Exactly what [`quant::conv::forward`](crate::quant::conv::forward) computes:
//!
//! ```text
//! acc[n][o][t][a][b] = bias[o] + sum over in-map taps of tw[o*nto+t][c][p][q] * (x[n][c][a*s+p-top][b*s+q-left] - zp_in)
//! y[n][o][t][a][b]   = clamp(M[o].apply(acc) + zp_out, lo, 127)
//! ```
//!
//! with `tw` the expanded bank (`CONVENTIONS.md`), the sum in wrapping int32. Integer
//! sums do not depend on the order of their terms, so every kernel here agrees with the
//! direct kernel bit for bit (wrapping int32 addition is exact modulo `2^32` and so is
//! the direct kernel's); the tests check that on every pair, for every kernel.
//!
//! # How it works
//!
//! The f32 fast path's method ([`crate::fast`]), with the reduction over input planes
//! done by integer dot-product instructions:
//!
//! 1. **Units.** The instructions multiply and add adjacent narrow values within each
//!    32-bit lane, so the input planes are taken `R` at a time: one 32-bit *unit*
//!    holds the values of `R` consecutive input planes at one pixel. Two layouts
//!    ([`Layout`]):
//!    * [`Layout::Pairs`] (`R = 2`, AVX2 and portable): two int16, the input values
//!      sign-extended (`vpmaddwd` multiplies int16 pairs and adds the two products
//!      into an int32);
//!    * [`Layout::Quads`] (`R = 4`, AVX-512 VNNI and AVX-VNNI): four bytes, the input
//!      values as unsigned bytes `x + 128` (`x ^ 0x80`), because `vpdpbusd` multiplies
//!      unsigned by signed bytes.
//!
//!    The weights are packed in the same units (int16 pairs or signed bytes). The last
//!    group of a lifting layer whose `C_in` is not a multiple of `R` is completed with
//!    zero weights.
//! 2. **Zero points.** The packed input materialises the padding as the input zero
//!    point, so every tap of every output is a term and no tap is skipped. With the
//!    input stored as `x + d` (`d = 0` for pairs, `128` for quads), every output is
//!
//!    ```text
//!    acc = bias[o] - (zp_in + d) * S[o] + sum over all taps of w * (x + d)
//!    ```
//!
//!    where `S[o]` is the sum of the raw weights of output G-channel `o` (the expanded
//!    filter of every plane `t` of channel `o` is a permutation of them): padding taps
//!    add `w * (zp_in + d)`, which the correction takes back, and in-map taps add
//!    `w * (x - zp_in)` net. `S[o]` is computed once by
//!    [`prepare_weights`](QFastPlan::prepare_weights); the correction once per tile.
//!    Every step is wrapping int32 arithmetic, exact modulo `2^32`, and nothing
//!    saturates: `vpmaddwd` of two int8-range values cannot overflow, `vpdpbusd`
//!    wraps (its saturating twin `vpdpbusds` and `vpmaddubsw` are not used).
//! 3. **Packed input** ([`QFastPlan::pack_input`], once per image): as the f32 fast
//!    path, each group of `R` planes is padded and split into its `s x s` stride
//!    phases of `phase_h x phase_w` units, so that every tap reads a phase at stride 1
//!    at a constant offset, and output pixel `(y, x)` is computed at the flat index
//!    `y*phase_w + x` (the columns `x >= W'` are computed and dropped).
//! 4. **Micro-kernel** ([`QKernel`]): a tile of [`MR`] output planes (orientations of
//!    one G-channel) by `NR` flat outputs accumulated in int32 registers over every
//!    (unit group, tap) step: one broadcast weight unit per plane times `NR / lanes`
//!    input vectors (the AVX-512 kernel takes two plane tiles at once, so that each
//!    input vector feeds `2 * MR` planes). The tile is then requantized in registers
//!    ([`Multiplier::apply`](crate::quant::Multiplier::apply) in vector form: a 64-bit
//!    product, two roundings), clamped and narrowed to int8, and its pixels stored.
//! 5. **Packed weights** ([`QFastPlan::prepare_weights`], once per weight change): the
//!    expanded bank, built straight from the raw weights with the index tables,
//!    reordered to `(C_out*nto / MR, K*K, groups, MR)` units (`(C_out*nto / MR,
//!    groups, K*K, MR)` for the AVX2 kernel, which walks the taps inside each group),
//!    then the `C_out` sums `S[o]`.
//! 6. **Blocking** as the f32 driver: layers whose packed input fits in L1 sweep each
//!    plane tile over the image; others keep 16 plane tiles by 4 flat tiles of
//!    accumulators and walk the unit groups in L1-sized blocks.
//!
//! # Kernels and speed
//!
//! `avx512_vnni` (16 int32 lanes, 64 multiply-adds per `vpdpbusd`), `avx_vnni` (the
//! same on 256 bits), `avx2_madd` (sign-extended int16, `vpmaddwd` + `vpaddd`, 16
//! multiply-adds per pair of instructions) and `portable` (plain Rust). The caller
//! picks one when it makes the plan; gconv-std detects the best the CPU has.
//!
//! Measured on one core of an Intel Xeon with AVX-512 VNNI (`cargo bench -p
//! gconv-bench --bench int8`, f32 and int8 interleaved): `avx512_vnni` runs the C4 and
//! D4 group layers of the speed issues 3.2-4.2x faster than the f32 fast path's
//! AVX-512 kernel (250-380 GMAC/s, the 56x56 layer at about 90% of the `vpdpbusd`
//! peak); `avx2_madd` 2.05-2.25x faster than its AVX2+FMA kernel. The AVX2 kernel issues as many vector instructions per multiply-add as the
//! f32 one (see `madd.rs`), so its gain comes from the third port and the narrower
//! operands alone.
//!
//! # Limits
//!
//! Kernels up to `K = 11` ([`MAX_KERNEL`], the tap offsets live in a fixed array);
//! larger ones are [`Error::KernelTooLargeForFastPath`]: run the direct path
//! ([`quant::conv`](crate::quant::conv)). Group orders 4 and 8. An output is exact
//! while its true accumulator fits in int32 (as for the direct kernel, whose result
//! this path reproduces even when it wraps).

mod drive;
mod madd;
mod pack;
mod portable;
mod vnni;

use core::num::NonZeroUsize;
use core::ops::Range;

use crate::error::{Buffer, Dim, Error, check_len};
use crate::group::Group;
use crate::quant::{Multiplier, Requant, activation_range};
use crate::shape::{ConvGeometry, ConvShape, Domain};

/// Output planes per tile: the orientations of one G-channel (every `nto` is a multiple
/// of it), so a tile has one multiplier, one bias and one weight sum.
pub const MR: usize = crate::fast::MR;

/// Largest kernel size the int8 fast path takes.
pub const MAX_KERNEL: usize = crate::fast::MAX_KERNEL;

/// How the input planes are grouped into the 32-bit units the kernels multiply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Two input planes per unit, as int16 (low half: the even plane): the unit of
    /// `vpmaddwd`. The input is stored as it is (`d = 0` in the module docs).
    Pairs,
    /// Four input planes per unit, as bytes (lowest byte: the first plane): the unit
    /// of `vpdpbusd`. The input is stored as the unsigned byte `x + 128` (`d = 128`),
    /// the weights as signed bytes.
    Quads,
}

impl Layout {
    /// Input planes per unit, `R`: 2 or 4.
    pub const fn planes_per_unit(self) -> usize {
        match self {
            Layout::Pairs => 2,
            Layout::Quads => 4,
        }
    }

    /// The offset `d` added to every stored input value (0 or 128).
    pub const fn input_offset(self) -> i32 {
        match self {
            Layout::Pairs => 0,
            Layout::Quads => 128,
        }
    }
}

/// The int8 micro-kernels, each with its unit layout and tile size `MR x NR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QKernel {
    /// Plain Rust on int16 pairs widened to int32, for any target. Tile 4 x 8.
    Portable,
    /// x86_64 AVX2: int16 pairs, `vpmaddwd` then `vpaddd` into int32 accumulators.
    /// Tile 4 x 16 (eight 8-lane accumulators).
    Avx2Madd,
    /// x86_64 AVX-VNNI (the VEX-encoded 256-bit `vpdpbusd`, e.g. Alder Lake, Zen 5):
    /// byte quads. Tile 4 x 16 (eight 8-lane accumulators).
    AvxVnni,
    /// x86_64 AVX-512 VNNI (`vpdpbusd` on 512 bits): byte quads. Tile 4 x 48, run two
    /// plane tiles at a time (8 planes x 48 outputs: twenty-four 16-lane accumulators,
    /// each input vector loaded feeds eight `vpdpbusd`).
    Avx512Vnni,
}

impl QKernel {
    /// Every kernel, in order of preference.
    pub const ALL: [QKernel; 4] = [
        QKernel::Avx512Vnni,
        QKernel::AvxVnni,
        QKernel::Avx2Madd,
        QKernel::Portable,
    ];

    /// Short name, as printed by benchmarks: `avx512_vnni`, `avx_vnni`, `avx2_madd`,
    /// `portable`.
    pub const fn name(self) -> &'static str {
        match self {
            QKernel::Portable => "portable",
            QKernel::Avx2Madd => "avx2_madd",
            QKernel::AvxVnni => "avx_vnni",
            QKernel::Avx512Vnni => "avx512_vnni",
        }
    }

    /// The unit layout of the packed input and weights this kernel reads.
    pub const fn layout(self) -> Layout {
        match self {
            QKernel::Portable | QKernel::Avx2Madd => Layout::Pairs,
            QKernel::AvxVnni | QKernel::Avx512Vnni => Layout::Quads,
        }
    }

    /// Tile size `(MR, NR)`: output planes times flat outputs per tile.
    pub const fn tile(self) -> (usize, usize) {
        match self {
            QKernel::Portable => (MR, portable::NR),
            QKernel::Avx2Madd => (MR, madd::NR),
            QKernel::AvxVnni => (MR, vnni::NR_256),
            QKernel::Avx512Vnni => (MR, vnni::NR_512),
        }
    }

    /// Whether [`QFastPlan::compute`] can run this kernel in this build without
    /// run-time detection: `Portable` always, the others when the build enables their
    /// CPU features (`-C target-feature` / `target-cpu`).
    pub const fn is_compiled(self) -> bool {
        match self {
            QKernel::Portable => true,
            QKernel::Avx2Madd => cfg!(all(target_arch = "x86_64", target_feature = "avx2")),
            QKernel::AvxVnni => cfg!(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "avxvnni"
            )),
            QKernel::Avx512Vnni => cfg!(all(
                target_arch = "x86_64",
                target_feature = "avx512f",
                target_feature = "avx512vnni"
            )),
        }
    }

    /// The best kernel this build can run without run-time detection.
    pub const fn compiled() -> QKernel {
        let mut i = 0;
        while i < QKernel::ALL.len() {
            if QKernel::ALL[i].is_compiled() {
                return QKernel::ALL[i];
            }
            i += 1;
        }
        QKernel::Portable
    }
}

/// The requantization of one tile (the `MR` planes of one G-channel): the correction
/// `bias[o] - (zp_in + d) * S[o]` added to every accumulator, then
/// `clamp(M[o].apply(acc) + zp_out, lo, hi)`.
#[derive(Clone, Copy, Debug)]
// The vector kernels (x86_64 only) read the multiplier's parts directly.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct TileQuant {
    /// `bias[o] - (zp_in + d) * S[o]`, wrapping.
    pub offset: i32,
    /// The multiplier's significand, in `[2^30, 2^31)` or 0 (never negative).
    pub multiplier: i32,
    /// `max(shift, 0)`.
    pub left: u32,
    /// `max(-shift, 0)`, at most 31.
    pub right: u32,
    /// The output zero point.
    pub zero_point: i32,
    /// The output range `[lo, hi]`.
    pub range: (i32, i32),
}

impl TileQuant {
    /// The scalar form of the epilogue: [`Requant::output`] of `acc + offset`.
    #[inline]
    pub fn output(&self, m: Multiplier, acc: i32) -> i8 {
        Requant::output(
            m,
            acc.wrapping_add(self.offset),
            self.zero_point,
            self.range,
        )
    }
}

/// Everything the int8 fast path derives from a layer's geometry and kernel: unit
/// groups, phase sizes, the flat output run, tap offsets and buffer lengths. Cheap to
/// build (no allocation).
#[derive(Clone, Debug)]
pub struct QFastPlan {
    geo: ConvGeometry,
    kernel: QKernel,
    stride: NonZeroUsize,
    planes_in: usize,
    planes_out: usize,
    /// Input planes per unit (`R`).
    per_unit: NonZeroUsize,
    /// `ceil(planes_in / R)`: unit groups per image.
    groups: usize,
    phase_h: usize,
    phase_w: NonZeroUsize,
    /// `H' * W'`.
    out_plane: NonZeroUsize,
    /// `s*s*phase_h*phase_w`: units per group of the packed input.
    group_len: usize,
    /// `H' * phase_w`: flat outputs per plane (dropped columns included).
    n_flat: usize,
    /// Units of one packed image, room for the last tile's reads included.
    packed_len: usize,
    taps: [usize; MAX_KERNEL * MAX_KERNEL],
    n_taps: usize,
}

impl QFastPlan {
    /// The plan of a convolution from `domain` to `G` with `kernel`'s layout.
    ///
    /// # Errors
    /// As [`ConvShape::geometry`]; as [`QFastPlan::from_geometry`].
    pub fn new<G: Group>(
        domain: Domain,
        shape: &ConvShape,
        kernel: QKernel,
    ) -> Result<Self, Error> {
        Self::from_geometry(&shape.geometry::<G>(domain)?, kernel)
    }

    /// The plan of a validated geometry.
    ///
    /// # Errors
    /// [`Error::KernelTooLargeForFastPath`] for `K > MAX_KERNEL` (use the direct path,
    /// [`quant::conv`](crate::quant::conv)); [`Error::GroupOrderNotTileable`] for a
    /// group whose order is not `MR` or `2*MR` (C4 and D4 are); [`Error::SizeOverflow`] when the
    /// packed input's length overflows `usize`.
    pub fn from_geometry(geo: &ConvGeometry, kernel: QKernel) -> Result<Self, Error> {
        let k = geo.kernel();
        let stride = NonZeroUsize::new(geo.stride()).ok_or(Error::ZeroDimension(Dim::Stride))?;
        let s = stride.get();
        if k > MAX_KERNEL {
            return Err(Error::KernelTooLargeForFastPath {
                kernel: k,
                max: MAX_KERNEL,
            });
        }
        if geo.nto() == 0 || !geo.nto().is_multiple_of(MR) || !(geo.nto() / MR).is_power_of_two() {
            return Err(Error::GroupOrderNotTileable {
                order: geo.nto(),
                tile: MR,
            });
        }
        let overflow = || Error::SizeOverflow;
        let (oh, ow) = (geo.out_height(), geo.out_width());
        // Only the padded rows and columns some output reads: `(out-1)*s + K`.
        let read_h = (oh - 1) * s + k;
        let read_w = (ow - 1) * s + k;
        let phase_h = read_h.div_ceil(s);
        let phase_w =
            NonZeroUsize::new(read_w.div_ceil(s)).ok_or(Error::ZeroDimension(Dim::Kernel))?;
        let out_plane = NonZeroUsize::new(oh * ow).ok_or(Error::ZeroDimension(Dim::Height))?;
        let layout = kernel.layout();
        let per_unit = NonZeroUsize::new(layout.planes_per_unit()).ok_or(Error::SizeOverflow)?;
        let planes_in = geo.in_channels() * geo.nti();
        let groups = planes_in.div_ceil(per_unit.get());
        let phase_len = phase_h.checked_mul(phase_w.get()).ok_or_else(overflow)?;
        let group_len = phase_len.checked_mul(s * s).ok_or_else(overflow)?;
        let n_flat = oh.checked_mul(phase_w.get()).ok_or_else(overflow)?;
        let mut taps = [0usize; MAX_KERNEL * MAX_KERNEL];
        for p in 0..k {
            for q in 0..k {
                let phase = (p % s) * s + q % s;
                taps[p * k + q] = phase * phase_len + (p / s) * phase_w.get() + q / s;
            }
        }
        let max_tap = taps[..k * k].iter().copied().max().unwrap_or(0);
        // The last tile of the last group reads up to
        // `(groups-1)*group_len + max_tap + round_up(n_flat, NR)`.
        let nr = kernel.tile().1;
        let n_round = n_flat.div_ceil(nr).checked_mul(nr).ok_or_else(overflow)?;
        let body = groups.checked_mul(group_len).ok_or_else(overflow)?;
        let reach = (groups - 1)
            .checked_mul(group_len)
            .and_then(|v| v.checked_add(max_tap))
            .and_then(|v| v.checked_add(n_round))
            .ok_or_else(overflow)?;
        Ok(QFastPlan {
            geo: *geo,
            kernel,
            stride,
            planes_in,
            planes_out: geo.out_channels() * geo.nto(),
            per_unit,
            groups,
            phase_h,
            phase_w,
            out_plane,
            group_len,
            n_flat,
            packed_len: body.max(reach),
            taps,
            n_taps: k * k,
        })
    }

    /// The geometry this plan was made for.
    pub const fn geometry(&self) -> &ConvGeometry {
        &self.geo
    }

    /// The micro-kernel this plan was made for (its layout decides the packing).
    pub const fn kernel(&self) -> QKernel {
        self.kernel
    }

    /// int32 units of the prepared weights: `C_out*nto * groups * K*K` packed units
    /// (`groups = ceil(C_in*nti / R)`) followed by the `C_out` weight sums.
    pub const fn prepared_weights_len(&self) -> usize {
        self.packed_weights_len() + self.geo.out_channels()
    }

    /// The packed units alone (before the sums).
    const fn packed_weights_len(&self) -> usize {
        self.planes_out * self.groups * self.n_taps
    }

    /// Offsets of the taps `p = u*K + v` in a packed unit group, `K*K` of them.
    pub(crate) fn tap_offsets(&self) -> &[usize] {
        // `n_taps = K*K <= MAX_KERNEL^2` (checked in `from_geometry`).
        let taps = self.taps.get(..self.n_taps);
        debug_assert!(taps.is_some(), "int8 plan: more taps than MAX_KERNEL^2");
        taps.unwrap_or(&[])
    }

    /// int32 units of scratch [`forward`](Self::forward) needs: one packed input
    /// image (see [`pack_input`](Self::pack_input)).
    pub const fn scratch_len(&self) -> usize {
        self.packed_len
    }

    /// Number of `MR`-plane output tiles per image, `C_out*nto / MR`;
    /// [`compute`](Self::compute) takes a range of them.
    pub const fn plane_tiles(&self) -> usize {
        self.planes_out / MR
    }

    /// Input values of one image: `C_in*nti*H*W`.
    pub const fn image_input_len(&self) -> usize {
        self.planes_in * self.geo.height() * self.geo.width()
    }

    /// Output values of one image: `C_out*nto*H'*W'`.
    pub const fn image_output_len(&self) -> usize {
        self.planes_out * self.geo.out_height() * self.geo.out_width()
    }

    /// Multiply-adds the kernel runs per image, the dropped columns and the zero
    /// lanes of an incomplete last unit group included (compare with
    /// [`ConvGeometry::macs`] for the useful ones).
    pub const fn macs_run_per_image(&self) -> usize {
        self.planes_out * self.groups * self.per_unit.get() * self.n_taps * self.n_flat
    }

    /// Expands the raw int8 weights `(C_out, C_in, nti, K, K)` with the group's index
    /// table and packs them for the plan's kernel into `prepared`
    /// ([`prepared_weights_len`](Self::prepared_weights_len) units):
    ///
    /// ```text
    /// prepared[((tile*K*K + k)*groups + g)*MR + m] = unit(tw[tile*MR + m][g*R .. g*R + R][k])
    /// prepared[C_out*nto*groups*K*K + o]         = S[o] = sum of raw[o]
    /// ```
    ///
    /// (for [`QKernel::Avx2Madd`] the taps are inside the groups:
    /// `prepared[((tile*groups + g)*K*K + k)*MR + m]`)
    ///
    /// with `unit` the [`Layout`]'s packing of `R` weights (zero past the last input
    /// plane). Run once per weight change. Any int8 is accepted (the arithmetic is
    /// exact for -128 too; see [`check_weights`](crate::quant::check_weights)).
    ///
    /// # Errors
    /// [`Error::BufferLength`] when `raw` is not the weight length of the geometry
    /// ([`Buffer::Weight`]) or `prepared` ([`Buffer::Bank`]) not [`prepared_weights_len`](Self::prepared_weights_len); nothing
    /// is written then.
    pub fn prepare_weights(&self, raw: &[i8], prepared: &mut [i32]) -> Result<(), Error> {
        check_len(Buffer::Weight, raw.len(), self.geo.weight_len())?;
        check_len(Buffer::Bank, prepared.len(), self.prepared_weights_len())?;
        pack::prepare_weights(self, raw, prepared);
        Ok(())
    }

    /// Packs one input image `(C_in*nti, H, W)` into `packed` (its first
    /// [`scratch_len`](Self::scratch_len) units; every one of them is written): per
    /// group of `R` planes, the `s*s` stride phases of the plane group padded with
    /// `input_zero_point`, each `phase_h x phase_w` units, then padding units up to
    /// the end (the room the last tile reads).
    ///
    /// # Errors
    /// [`Error::ZeroPointOutOfRange`] for a zero point outside `[-128, 127]`;
    /// [`Error::BufferLength`] when `image` is not
    /// [`image_input_len`](Self::image_input_len) long or `packed` is shorter than
    /// [`scratch_len`](Self::scratch_len). Nothing is written on error.
    pub fn pack_input(
        &self,
        input_zero_point: i32,
        image: &[i8],
        packed: &mut [i32],
    ) -> Result<(), Error> {
        crate::quant::check_zero_point(crate::QuantTensor::Input, input_zero_point)?;
        check_len(Buffer::Input, image.len(), self.image_input_len())?;
        let packed = self.scratch(packed)?;
        pack::pack_input(self, input_zero_point, image, packed);
        Ok(())
    }

    /// Computes output planes `tiles.start*MR .. tiles.end*MR` of one image from its
    /// packed input ([`pack_input`](Self::pack_input), with the same input zero point
    /// as `requant`) and the prepared weights, with the plan's kernel, into `out`
    /// (exactly those planes, `(tiles.len()*MR, H', W')`). Every element of `out` is
    /// written.
    ///
    /// The plan's kernel must be [`QKernel::Portable`] or compiled into this build
    /// ([`QKernel::is_compiled`]); the others are reached after run-time detection
    /// through their own entry points ([`compute_avx2_madd`](Self::compute_avx2_madd),
    /// [`compute_avx_vnni`](Self::compute_avx_vnni),
    /// [`compute_avx512_vnni`](Self::compute_avx512_vnni)).
    ///
    /// # Errors
    /// [`Error::ZeroPointOutOfRange`]; [`Error::BufferLength`] for a wrong length
    /// (`packed` shorter than [`scratch_len`](Self::scratch_len), `prepared` not
    /// [`prepared_weights_len`](Self::prepared_weights_len), `bias` or the
    /// multipliers not `C_out`, `out` not the tiles' planes); [`Error::TileRange`]
    /// for tiles past [`plane_tiles`](Self::plane_tiles);
    /// [`Error::KernelNotCompiled`] when the plan's kernel is not compiled in. Nothing
    /// is written on error.
    pub fn compute(
        &self,
        requant: &Requant<'_>,
        packed: &[i32],
        prepared: &[i32],
        bias: Option<&[i32]>,
        out: &mut [i8],
        tiles: Range<usize>,
    ) -> Result<(), Error> {
        let run = self.check_compute(requant, packed, prepared, bias, out, &tiles)?;
        if !self.kernel.is_compiled() {
            return Err(Error::KernelNotCompiled {
                kernel: self.kernel.name(),
            });
        }
        self.drive(&run, packed, out, tiles);
        Ok(())
    }

    /// The body of [`compute`](Self::compute) after its checks (`check_compute`,
    /// the kernel compiled in): cannot fail. A kernel that is not compiled in (ruled
    /// out by the caller) writes nothing, with a debug assertion.
    fn drive(&self, run: &Run<'_>, packed: &[i32], out: &mut [i8], tiles: Range<usize>) {
        match self.kernel {
            QKernel::Portable => {
                portable::drive(self, run, packed, out, tiles);
            }
            QKernel::Avx2Madd => {
                #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
                {
                    // SAFETY: compiled only when the build enables `avx2` for every
                    // function, so the CPU running this code has it; that is the one
                    // requirement of the `#[target_feature]` function (safe Rust).
                    #[allow(unsafe_code)]
                    unsafe {
                        madd::drive(self, run, packed, out, tiles);
                    }
                }
                #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
                debug_assert!(
                    false,
                    "{} driven but not compiled in",
                    QKernel::Avx2Madd.name()
                )
            }
            QKernel::AvxVnni => {
                #[cfg(all(
                    target_arch = "x86_64",
                    target_feature = "avx2",
                    target_feature = "avxvnni"
                ))]
                {
                    // SAFETY: compiled only when the build enables `avx2` and
                    // `avxvnni` for every function, so the CPU has them; that is the
                    // one requirement of the `#[target_feature]` function (safe Rust).
                    #[allow(unsafe_code)]
                    unsafe {
                        vnni::drive_256(self, run, packed, out, tiles);
                    }
                }
                #[cfg(not(all(
                    target_arch = "x86_64",
                    target_feature = "avx2",
                    target_feature = "avxvnni"
                )))]
                debug_assert!(
                    false,
                    "{} driven but not compiled in",
                    QKernel::AvxVnni.name()
                )
            }
            QKernel::Avx512Vnni => {
                #[cfg(all(
                    target_arch = "x86_64",
                    target_feature = "avx512f",
                    target_feature = "avx512vnni"
                ))]
                {
                    // SAFETY: compiled only when the build enables `avx512f` and
                    // `avx512vnni` for every function, so the CPU has them; that is
                    // the one requirement of the `#[target_feature]` function (safe
                    // Rust).
                    #[allow(unsafe_code)]
                    unsafe {
                        vnni::drive_512(self, run, packed, out, tiles);
                    }
                }
                #[cfg(not(all(
                    target_arch = "x86_64",
                    target_feature = "avx512f",
                    target_feature = "avx512vnni"
                )))]
                debug_assert!(
                    false,
                    "{} driven but not compiled in",
                    QKernel::Avx512Vnni.name()
                )
            }
        }
    }

    /// [`compute`](Self::compute) with the AVX2 kernel, for callers that detected the
    /// CPU feature at run time. Same arguments, errors and result.
    ///
    /// # Safety
    /// Safe to call from code compiled with `avx2`; anywhere else the caller must make
    /// sure the CPU has AVX2 (`is_x86_feature_detected!("avx2")`): the function is
    /// safe Rust, the only obligation is the CPU feature.
    ///
    /// # Errors
    /// As [`compute`](Self::compute); [`Error::KernelNotCompiled`] (naming
    /// `avx2_madd`) when the plan was made for another kernel.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub fn compute_avx2_madd(
        &self,
        requant: &Requant<'_>,
        packed: &[i32],
        prepared: &[i32],
        bias: Option<&[i32]>,
        out: &mut [i8],
        tiles: Range<usize>,
    ) -> Result<(), Error> {
        self.check_kernel(QKernel::Avx2Madd)?;
        let run = self.check_compute(requant, packed, prepared, bias, out, &tiles)?;
        madd::drive(self, &run, packed, out, tiles);
        Ok(())
    }

    /// [`compute`](Self::compute) with the AVX-VNNI kernel, for callers that detected
    /// the CPU features at run time. Same arguments, errors and result.
    ///
    /// # Safety
    /// Safe to call from code compiled with `avx2` and `avxvnni`; anywhere else the
    /// caller must make sure the CPU has both: the function is safe Rust, the only
    /// obligation is the CPU features.
    ///
    /// # Errors
    /// As [`compute`](Self::compute); [`Error::KernelNotCompiled`] (naming
    /// `avx_vnni`) when the plan was made for another kernel.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,avxvnni")]
    pub fn compute_avx_vnni(
        &self,
        requant: &Requant<'_>,
        packed: &[i32],
        prepared: &[i32],
        bias: Option<&[i32]>,
        out: &mut [i8],
        tiles: Range<usize>,
    ) -> Result<(), Error> {
        self.check_kernel(QKernel::AvxVnni)?;
        let run = self.check_compute(requant, packed, prepared, bias, out, &tiles)?;
        vnni::drive_256(self, &run, packed, out, tiles);
        Ok(())
    }

    /// [`compute`](Self::compute) with the AVX-512 VNNI kernel, for callers that
    /// detected the CPU features at run time. Same arguments, errors and result.
    ///
    /// # Safety
    /// Safe to call from code compiled with `avx512f` and `avx512vnni`; anywhere else
    /// the caller must make sure the CPU has both: the function is safe Rust, the only
    /// obligation is the CPU features.
    ///
    /// # Errors
    /// As [`compute`](Self::compute); [`Error::KernelNotCompiled`] (naming
    /// `avx512_vnni`) when the plan was made for another kernel.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub fn compute_avx512_vnni(
        &self,
        requant: &Requant<'_>,
        packed: &[i32],
        prepared: &[i32],
        bias: Option<&[i32]>,
        out: &mut [i8],
        tiles: Range<usize>,
    ) -> Result<(), Error> {
        self.check_kernel(QKernel::Avx512Vnni)?;
        let run = self.check_compute(requant, packed, prepared, bias, out, &tiles)?;
        vnni::drive_512(self, &run, packed, out, tiles);
        Ok(())
    }

    /// Whole forward pass with the plan's kernel (which must be compiled into this
    /// build, see [`compute`](Self::compute)): for each image, pack the input into
    /// `scratch`, then compute every tile. `input` is `(N, C_in, nti, H, W)` int8,
    /// `prepared` from [`prepare_weights`](Self::prepare_weights), `bias` `(C_out,)`
    /// int32, `output` `(N, C_out, nto, H', W')` int8; `scratch` holds at least
    /// [`scratch_len`](Self::scratch_len) units (contents ignored on entry, garbage
    /// on exit).
    ///
    /// # Errors
    /// [`Error::ZeroPointOutOfRange`]; [`Error::BufferLength`] when `input`,
    /// `prepared`, `bias`, the multipliers or `output` do not have exactly their
    /// length or `scratch` is too short; [`Error::KernelNotCompiled`]. Nothing is
    /// written to `output` on error.
    pub fn forward(
        &self,
        requant: &Requant<'_>,
        input: &[i8],
        prepared: &[i32],
        bias: Option<&[i32]>,
        output: &mut [i8],
        scratch: &mut [i32],
    ) -> Result<(), Error> {
        self.check_batch(input, output)?;
        self.check_operands(requant, prepared, bias)?;
        if !self.kernel.is_compiled() {
            return Err(Error::KernelNotCompiled {
                kernel: self.kernel.name(),
            });
        }
        let packed = self.scratch(scratch)?;
        let (in_len, out_len) = (self.image_input_len(), self.image_output_len());
        let (Some(in_len), Some(out_len)) = (NonZeroUsize::new(in_len), NonZeroUsize::new(out_len))
        else {
            return Ok(());
        };
        // Every image has the first one's lengths: the tiles' operands are checked
        // once, before the first write, so the loop below cannot fail halfway.
        let tiles = 0..self.plane_tiles();
        let out_first = output.get(..out_len.get()).unwrap_or_default();
        let run = self.check_compute(requant, packed, prepared, bias, out_first, &tiles)?;
        for (image, out) in input
            .chunks_exact(in_len.get())
            .zip(output.chunks_exact_mut(out_len.get()))
        {
            pack::pack_input(self, requant.input_zero_point, image, packed);
            self.drive(&run, packed, out, tiles.clone());
        }
        Ok(())
    }

    /// Checks the operands every tile shares: the zero points, `C_out` multipliers,
    /// `prepared` exactly [`prepared_weights_len`](Self::prepared_weights_len) long,
    /// `bias` (if any) `C_out` long. Lets a caller that splits the work report these
    /// errors before starting.
    ///
    /// # Errors
    /// [`Error::ZeroPointOutOfRange`]; [`Error::BufferLength`] naming the buffer.
    pub fn check_operands(
        &self,
        requant: &Requant<'_>,
        prepared: &[i32],
        bias: Option<&[i32]>,
    ) -> Result<(), Error> {
        requant.validate(self.geo.out_channels())?;
        check_len(Buffer::Bank, prepared.len(), self.prepared_weights_len())?;
        if let Some(b) = bias {
            check_len(Buffer::Bias, b.len(), self.geo.bias_len())?;
        }
        Ok(())
    }

    /// Checks a whole batch's buffers: `input` exactly
    /// [`input_len`](ConvGeometry::input_len) and `output` exactly
    /// [`output_len`](ConvGeometry::output_len) long.
    ///
    /// # Errors
    /// [`Error::BufferLength`] naming the buffer.
    pub fn check_batch(&self, input: &[i8], output: &[i8]) -> Result<(), Error> {
        check_len(Buffer::Input, input.len(), self.geo.input_len())?;
        check_len(Buffer::Output, output.len(), self.geo.output_len())
    }

    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn check_kernel(&self, kernel: QKernel) -> Result<(), Error> {
        if self.kernel == kernel {
            Ok(())
        } else {
            Err(Error::KernelNotCompiled {
                kernel: kernel.name(),
            })
        }
    }

    fn scratch<'a>(&self, scratch: &'a mut [i32]) -> Result<&'a mut [i32], Error> {
        let found = scratch.len();
        scratch
            .get_mut(..self.packed_len)
            .ok_or(Error::BufferLength {
                buffer: Buffer::Scratch,
                expected: self.packed_len,
                found,
            })
    }

    /// Validates a `compute` call and gathers what its tiles need.
    fn check_compute<'a>(
        &self,
        requant: &Requant<'a>,
        packed: &[i32],
        prepared: &'a [i32],
        bias: Option<&'a [i32]>,
        out: &[i8],
        tiles: &Range<usize>,
    ) -> Result<Run<'a>, Error> {
        if tiles.start > tiles.end || tiles.end > self.plane_tiles() {
            return Err(Error::TileRange {
                start: tiles.start,
                end: tiles.end,
                tiles: self.plane_tiles(),
            });
        }
        if packed.len() < self.packed_len {
            return Err(Error::BufferLength {
                buffer: Buffer::Scratch,
                expected: self.packed_len,
                found: packed.len(),
            });
        }
        self.check_operands(requant, prepared, bias)?;
        check_len(
            Buffer::Output,
            out.len(),
            tiles.len() * MR * self.out_plane.get(),
        )?;
        let (weights, sums) = prepared.split_at(self.packed_weights_len());
        Ok(Run {
            weights,
            sums,
            bias,
            multipliers: requant.multipliers,
            correction: requant.input_zero_point + self.kernel.layout().input_offset(),
            zero_point: requant.output_zero_point,
            range: activation_range(requant.output_zero_point, requant.relu),
        })
    }
}

/// The validated operands of one `compute` call.
pub(crate) struct Run<'a> {
    /// The packed weight units `(tiles, K*K, groups, MR)`.
    weights: &'a [i32],
    /// `S[o]`, `C_out` of them.
    sums: &'a [i32],
    bias: Option<&'a [i32]>,
    multipliers: &'a [Multiplier],
    /// `zp_in + d`.
    correction: i32,
    zero_point: i32,
    range: (i32, i32),
}

impl Run<'_> {
    /// The epilogue of the tiles of output G-channel `o`.
    #[inline]
    pub(crate) fn tile_quant(&self, o: usize) -> (Multiplier, TileQuant) {
        let (m, b, s) = (
            self.multipliers.get(o).copied(),
            self.bias.map(|b| b.get(o).copied()),
            self.sums.get(o).copied(),
        );
        debug_assert!(
            m.is_some() && b != Some(None) && s.is_some(),
            "int8 epilogue: channel {o} past the multipliers, bias or sums"
        );
        let (m, b, s) = (
            m.unwrap_or(Multiplier::ONE),
            b.flatten().unwrap_or(0),
            s.unwrap_or(0),
        );
        let shift = m.shift();
        (
            m,
            TileQuant {
                offset: b.wrapping_sub(self.correction.wrapping_mul(s)),
                multiplier: m.multiplier(),
                left: shift.max(0).unsigned_abs(),
                right: shift.min(0).unsigned_abs().min(31),
                zero_point: self.zero_point,
                range: self.range,
            },
        )
    }
}

#[cfg(test)]
mod tests;
