//! The fast forward path: a register-tiled direct convolution on a packed copy of the
//! input and a packed copy of the expanded filter bank. Same result as
//! [`conv`](crate::conv) up to rounding, for all four group pairs.
//!
//! # How it works
//!
//! A G-convolution is the planar cross-correlation of the expanded bank
//! `(C_out*nto, C_in*nti, K, K)` with the input viewed as `C_in*nti` planes. The fast
//! path turns that into a sequence of small dense products that stay in registers:
//!
//! 1. **Packed input** ([`FastPlan::pack_input`], once per image): each input plane is
//!    zero-padded and split into its `s x s` stride phases (phase `(a, b)` holds the
//!    padded samples at rows `a, a+s, ..` and columns `b, b+s, ..`), each phase a
//!    `phase_h x phase_w` row-major block. With stride 1 there is one phase: the padded
//!    plane itself. Every tap `(p, q)` of a strided convolution then reads one phase at
//!    stride 1, at the constant offset
//!    `tap_offset(p, q) = ((p % s)*s + q % s)*phase_h*phase_w + (p / s)*phase_w + q / s`.
//! 2. **Flat output index**: output pixel `(y, x)` is computed at the flat index
//!    `i = y*phase_w + x`, so that
//!    `Y[c][i] = sum_{c', tap} bank[c][c'][tap] * packed[c'][tap_offset(tap) + i]`
//!    is one contiguous run of `out_h * phase_w` outputs per plane. The columns
//!    `x >= out_w` of that run are computed and dropped (about `(K-1)/s` per row).
//! 3. **Micro-kernel** ([`Kernel`]): a tile of `MR = 4` output planes by `NR`
//!    outputs is accumulated in registers over all `C_in*nti*K*K` terms; each term is
//!    `MR` broadcasts of a weight times a few vector loads of the packed input,
//!    `MR * NR` multiply-adds. Flat tiles take `NR` consecutive flat outputs
//!    (`NR` = 8 portable, 24 AVX2+FMA, 48 AVX-512). The AVX-512 kernel uses row tiles
//!    when the output width allows it (a multiple of 16, or 24, 40, 56): `R` output
//!    rows by `W` columns that never cross a row end, so no outputs are dropped.
//!    The tile is then written to the output, bias added.
//! 4. **Packed bank** ([`FastPlan::pack_bank`], once per weight change): the expanded
//!    bank reordered to `(C_out*nto / MR, C_in*nti, K*K, MR)`, so that a tile reads its
//!    weights as one sequential stream.
//! 5. **Blocking** (the driver in `tile.rs`): layers with few input planes (lifting)
//!    sweep each plane tile over the image; others take 4 tiles of outputs and 16
//!    plane tiles at a time and walk the input planes in blocks that stay in L1,
//!    accumulating across blocks.
//!
//! # Rounding
//!
//! Each output is the bias plus a sum of `T = C_in*nti*K*K` products accumulated in
//! f32, in a fixed order (input plane, then tap in row-major order; plane blocks in
//! order), with fused multiply-adds in the AVX2 and AVX-512 kernels and separate ones
//! in the portable kernel. Its error against the exact sum is at most
//! `(T + 2) * eps_f32 * (sum |x w| + |b|)` (the recursive-summation bound, which holds
//! for fused and unfused accumulation alike): the tolerance the tests check against
//! the f64 reference, for every kernel. It differs from the direct path's result only
//! within that bound. The order does not depend on how tiles are shared between
//! threads, so a split run is bitwise identical to a single-threaded one.
//!
//! # Limits
//!
//! Kernels up to `K = 11` ([`MAX_KERNEL`]); the tap offsets live in a fixed array so
//! that no allocation is needed. Group orders 4 and 8 (C4, D4).
//!
//! # Speed
//!
//! On one core of an AMD Zen 4 the AVX-512 kernel runs the large layers at 95-97% of
//! the measured FMA peak ([`peak`]), about 10x the direct path; see the README.

mod pack;
pub mod peak;
mod tile;

use core::num::NonZeroUsize;
use core::ops::Range;

use crate::error::{Buffer, Dim, Error, check_len};
use crate::group::Group;
use crate::shape::ConvGeometry;

pub use tile::{CO_GROUP, Kernel};

/// Output planes per micro-kernel tile. Every `C_out*nto` is a multiple of it, since
/// `nto = |G|` is 4 (C4) or 8 (D4).
pub const MR: usize = 4;

/// [`MR`] as a `NonZeroUsize`, for chunk sizes without a panic path.
const MR_NZ: NonZeroUsize = NonZeroUsize::new(MR).expect("MR is not zero");

// A tile's `MR` planes are orientations of one G-channel, found with a shift.
static_assertions::const_assert!(
    crate::C4::ORDER.is_multiple_of(MR) && (crate::C4::ORDER / MR).is_power_of_two()
);
static_assertions::const_assert!(
    crate::D4::ORDER.is_multiple_of(MR) && (crate::D4::ORDER / MR).is_power_of_two()
);

/// Largest kernel size the fast path takes (`K*K` tap offsets in a fixed array).
pub const MAX_KERNEL: usize = 11;

/// Flat outputs per tile of the widest kernel; the packed input has room for it.
const NR_MAX: usize = 48;

/// Most output rows one row tile spans.
const ROW_BAND: usize = 4;

/// Reorders an expanded OIHW bank of shape `bank_shape = [C_out*nto, C_in*nti, K, K]`
/// into the fast path's layout `(C_out*nto/MR, C_in*nti, K*K, MR)`:
///
/// `packed[((t*P + c)*K*K + k)*MR + m] = bank[((t*MR + m)*P + c)*K*K + k]`, `P = C_in*nti`.
///
/// The packed bank depends on the weights only, not on the input size: pack once per
/// weight change and use it with every [`FastPlan`] of the layer.
///
/// # Errors
/// [`Error::GroupOrderNotTileable`] when `C_out*nto` is not a multiple of `MR`;
/// [`Error::SizeOverflow`]; [`Error::BufferLength`] when `bank` or `packed` does not
/// hold exactly the product of `bank_shape`. Nothing is written on error.
pub fn pack_bank(bank_shape: [usize; 4], bank: &[f32], packed: &mut [f32]) -> Result<(), Error> {
    let [planes_out, planes_in, k, k2] = bank_shape;
    if !planes_out.is_multiple_of(MR) {
        return Err(Error::GroupOrderNotTileable {
            order: planes_out,
            tile: MR,
        });
    }
    let len = crate::shape::checked_product(&bank_shape).ok_or(Error::SizeOverflow)?;
    check_len(Buffer::Bank, bank.len(), len)?;
    check_len(Buffer::Scratch, packed.len(), len)?;
    pack::pack_bank(bank, packed, planes_in, k * k2);
    Ok(())
}

/// `n.div_ceil(d)` by a divisor that is nonzero as a type (no panic path).
fn div_ceil(n: usize, d: NonZeroUsize) -> usize {
    n / d + usize::from(n % d != 0)
}

/// Everything the fast path derives from a layer's geometry: phase sizes, the flat
/// output run, tap offsets and buffer lengths. Cheap to build (no allocation).
#[derive(Clone, Debug)]
pub struct FastPlan {
    geo: ConvGeometry,
    /// The geometry's stride, nonzero as a type: the packing divides by it.
    stride: NonZeroUsize,
    planes_in: usize,
    planes_out: usize,
    /// Rows and columns of each stride phase (at least `K` columns: the tiles divide
    /// flat output indices by it).
    phase_h: usize,
    phase_w: NonZeroUsize,
    /// `H' * W'`: values per output plane (the tiles' output chunks).
    out_plane: NonZeroUsize,
    /// `s*s*phase_h*phase_w`: the distance between packed planes.
    plane_len: usize,
    /// `out_h * phase_w`: flat outputs per plane (dropped columns included).
    n_flat: usize,
    /// f32 of one packed image, room for the last tile's reads included.
    packed_input_len: usize,
    taps: [usize; MAX_KERNEL * MAX_KERNEL],
    n_taps: usize,
    /// Row tiles for the AVX-512 kernel when the output width is a multiple of 16
    /// (`(vectors of 16 per row, rows)`) or 56, 40, 24 (`(vectors of 16, 0)`, plus
    /// one vector of 8 per row).
    // Read by the AVX-512 kernel only.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    row_tiles: Option<(usize, usize)>,
}

impl FastPlan {
    /// Derives the plan of a validated geometry.
    ///
    /// # Errors
    /// [`Error::KernelTooLargeForFastPath`] for `K > MAX_KERNEL`;
    /// [`Error::GroupOrderNotTileable`] for a group (implemented outside this crate)
    /// whose order is not `MR` or `2*MR`; [`Error::SizeOverflow`]
    /// if the packed input length overflows `usize`.
    pub fn new(geo: &ConvGeometry) -> Result<Self, Error> {
        let k = geo.kernel();
        // A validated geometry has a stride of at least 1; as a `NonZeroUsize` the
        // divisions by it below have no division-by-zero path.
        let stride = NonZeroUsize::new(geo.stride()).ok_or(Error::ZeroDimension(Dim::Stride))?;
        let s = stride.get();
        if k > MAX_KERNEL {
            return Err(Error::KernelTooLargeForFastPath {
                kernel: k,
                max: MAX_KERNEL,
            });
        }
        let nto = geo.nto();
        if !nto.is_multiple_of(MR) || !(nto / MR).is_power_of_two() {
            // Groups other than C4 and D4 (the trait is open).
            return Err(Error::GroupOrderNotTileable {
                order: nto,
                tile: MR,
            });
        }
        let (oh, ow) = (geo.out_height(), geo.out_width());
        // Only the padded rows/columns some output reads: `(out-1)*s + K`.
        let read_h = (oh - 1) * s + k;
        let read_w = (ow - 1) * s + k;
        let (phase_h, phase_w) = (div_ceil(read_h, stride), div_ceil(read_w, stride));
        // Both at least 1 for a validated geometry (`read_w >= K >= 1`, `H', W' >= 1`).
        let phase_w_nz = NonZeroUsize::new(phase_w).ok_or(Error::ZeroDimension(Dim::Kernel))?;
        let out_plane = NonZeroUsize::new(oh * ow).ok_or(Error::ZeroDimension(Dim::Height))?;
        let planes_in = geo.in_channels() * geo.nti();
        let planes_out = geo.out_channels() * geo.nto();
        let overflow = || Error::SizeOverflow;
        let phase_len = phase_h.checked_mul(phase_w).ok_or_else(overflow)?;
        let plane_len = phase_len.checked_mul(s * s).ok_or_else(overflow)?;
        let n_flat = oh.checked_mul(phase_w).ok_or_else(overflow)?;

        let mut taps = [0usize; MAX_KERNEL * MAX_KERNEL];
        for p in 0..k {
            for q in 0..k {
                let phase = (p % stride) * s + q % stride;
                taps[p * k + q] = phase * phase_len + (p / stride) * phase_w + q / stride;
            }
        }
        let max_tap = taps[..k * k].iter().copied().max().unwrap_or(0);
        // The last tile of the last plane reads up to
        // `(planes_in-1)*plane_len + max_tap + round_up(n_flat, NR_MAX)`.
        let n_round = n_flat
            .div_ceil(NR_MAX)
            .checked_mul(NR_MAX)
            .ok_or_else(overflow)?;
        // Row tiles read up to `ROW_BAND - 1` rows past the last output row.
        let n_round = n_round.max(
            (oh + ROW_BAND - 1)
                .checked_mul(phase_w)
                .ok_or_else(overflow)?,
        );
        // `(V, R)`: R rows of V 16-lane vectors; `(V, 0)`: V 16-lane vectors and one
        // 8-lane vector per row, for the widths 56, 40 and 24.
        let row_tiles = match (ow % 64, ow) {
            (0, _) => Some((4, 1)),
            (32, _) => Some((2, 2)),
            (16 | 48, _) => Some((1, 4)),
            (_, 56) => Some((3, 0)),
            (_, 40) => Some((2, 0)),
            (_, 24) => Some((1, 0)),
            _ => None,
        };
        let body = planes_in.checked_mul(plane_len).ok_or_else(overflow)?;
        let reach = (planes_in - 1)
            .checked_mul(plane_len)
            .and_then(|v| v.checked_add(max_tap))
            .and_then(|v| v.checked_add(n_round))
            .ok_or_else(overflow)?;
        Ok(FastPlan {
            geo: *geo,
            stride,
            planes_in,
            planes_out,
            phase_h,
            phase_w: phase_w_nz,
            out_plane,
            plane_len,
            n_flat,
            packed_input_len: body.max(reach),
            taps,
            n_taps: k * k,
            row_tiles,
        })
    }

    /// The geometry this plan was made for.
    pub const fn geometry(&self) -> &ConvGeometry {
        &self.geo
    }

    /// Length (f32) of the packed bank: `C_out*nto * C_in*nti * K*K`, the same as the
    /// expanded bank.
    pub const fn packed_bank_len(&self) -> usize {
        self.geo.bank_len()
    }

    /// Length (f32) of one packed input image: the scratch [`FastPlan::forward`] needs.
    pub const fn packed_input_len(&self) -> usize {
        self.packed_input_len
    }

    /// Number of `MR`-plane output tiles: `C_out*nto / MR`. [`FastPlan::compute`]
    /// takes a range of them.
    pub const fn plane_tiles(&self) -> usize {
        self.planes_out / MR
    }

    /// Input planes per block that [`compute`](Self::compute) with `kernel` walks
    /// (step 5 of the [module docs](self)): as many as keep the reads of one group of
    /// tiles in L1 (L2 for `K = 1`), at least 1, at most `C_in*nti`. The tile width
    /// it depends on is the kernel's, or for AVX-512 the row tile the output width
    /// selects. Tests ask this instead of copying the rule, to check that a case
    /// reaches the driver branch it is meant for.
    pub fn planes_per_block(&self, kernel: Kernel) -> usize {
        tile::kernel_planes_per_block(self, kernel)
    }

    /// Blocks of input planes [`compute`](Self::compute) with `kernel` walks:
    /// `C_in*nti` over [`planes_per_block`](Self::planes_per_block), rounded up. One
    /// block is the sweep path (each plane tile sweeps the image); more accumulate
    /// across blocks, [`CO_GROUP`] plane tiles at a time.
    pub fn plane_blocks(&self, kernel: Kernel) -> usize {
        self.planes_in
            .div_ceil(self.planes_per_block(kernel).max(1))
    }

    /// Columns of each stride phase of the packed input: output pixel `(y, x)` reads
    /// tap `p` at `tap_offset(p) + y*phase_width() + x` of its packed plane.
    pub(crate) const fn phase_width(&self) -> usize {
        self.phase_w.get()
    }

    /// Offsets of the taps `p = u*K + v` in a packed plane, `K*K` of them.
    pub(crate) fn tap_offsets(&self) -> &[usize] {
        // `n_taps = K*K <= MAX_KERNEL^2` (checked in `new`): never the fallback.
        let taps = self.taps.get(..self.n_taps);
        debug_assert!(taps.is_some(), "fast plan: more taps than MAX_KERNEL^2");
        taps.unwrap_or(&[])
    }

    /// Offset of tap `p = u*K + v` in a packed plane (0 for `p >= K*K`, which the
    /// callers never ask: a debug assertion).
    pub(crate) fn tap_offset(&self, p: usize) -> usize {
        let offset = self.tap_offsets().get(p).copied();
        debug_assert!(offset.is_some(), "tap {p} of a {}-tap kernel", self.n_taps);
        offset.unwrap_or(0)
    }

    /// Output values of one image: `C_out*nto*H'*W'`.
    pub const fn image_output_len(&self) -> usize {
        self.planes_out * self.geo.out_height() * self.geo.out_width()
    }

    /// Input values of one image: `C_in*nti*H*W`.
    pub const fn image_input_len(&self) -> usize {
        self.planes_in * self.geo.height() * self.geo.width()
    }

    /// Multiply-adds the fast path actually runs per image, dropped columns included
    /// (compare with [`ConvGeometry::macs`] for the useful ones).
    pub const fn macs_run_per_image(&self) -> usize {
        self.planes_out * self.planes_in * self.n_taps * self.n_flat
    }

    /// Reorders the expanded OIHW `bank` `(C_out*nto, C_in*nti, K, K)` into `packed`
    /// `(C_out*nto/MR, C_in*nti, K*K, MR)`. Run once per weight change.
    ///
    /// # Errors
    /// [`Error::BufferLength`] when `bank` or `packed` is not exactly
    /// [`packed_bank_len`](Self::packed_bank_len) long; nothing is written then.
    pub fn pack_bank(&self, bank: &[f32], packed: &mut [f32]) -> Result<(), Error> {
        pack_bank(self.geo.bank_shape(), bank, packed)
    }

    /// Pads, phase-splits and flattens one input image `(C_in*nti, H, W)` into
    /// `packed` (see the [module docs](self)). Every element of `packed` is written.
    ///
    /// # Errors
    /// [`Error::BufferLength`] when `image` is not exactly
    /// [`image_input_len`](Self::image_input_len) long or `packed` is shorter than
    /// [`packed_input_len`](Self::packed_input_len); nothing is written then.
    pub fn pack_input(&self, image: &[f32], packed: &mut [f32]) -> Result<(), Error> {
        check_len(Buffer::Input, image.len(), self.image_input_len())?;
        let packed = self.scratch(packed)?;
        pack::pack_input(self, image, packed);
        Ok(())
    }

    /// f32 per packed input plane (`s*s` phases of `phase_h x phase_w`): plane `c` of
    /// a packed image starts at `c * packed_plane_len()`; after the last plane come
    /// `packed_input_len() - C_in*nti*packed_plane_len()` zeros (room for the last
    /// tile's reads).
    pub const fn packed_plane_len(&self) -> usize {
        self.plane_len
    }

    /// Packs one input plane `(H, W)` into `packed_plane`
    /// ([`packed_plane_len`](Self::packed_plane_len) values), for callers that pack
    /// an image's planes in parallel; [`pack_input`](Self::pack_input) is this for
    /// every plane plus the zeroed tail.
    ///
    /// # Errors
    /// [`Error::BufferLength`] when `plane` is not `H*W` long or `packed_plane` not
    /// `packed_plane_len()`; nothing is written then.
    pub fn pack_plane(&self, plane: &[f32], packed_plane: &mut [f32]) -> Result<(), Error> {
        let hw = self.geo.height() * self.geo.width();
        check_len(Buffer::Input, plane.len(), hw)?;
        check_len(Buffer::Scratch, packed_plane.len(), self.plane_len)?;
        pack::pack_plane(self, plane, packed_plane);
        Ok(())
    }

    /// Computes the output planes of tiles `tiles` (planes `tiles.start*MR ..
    /// tiles.end*MR`) of one image from its packed input, with `kernel`, into
    /// `out` (exactly those planes, `(tiles.len()*MR, H', W')`). Every element of
    /// `out` is written.
    ///
    /// `kernel` must be [`Kernel::Portable`] or a kernel compiled into this build
    /// ([`Kernel::compiled`]); a kernel that needs CPU features the build does not
    /// assume is reached through its own entry point
    /// ([`compute_avx2_fma`](Self::compute_avx2_fma),
    /// [`compute_avx512`](Self::compute_avx512)) after run-time detection.
    ///
    /// # Errors
    /// [`Error::BufferLength`] for a wrong buffer length (`packed_input` shorter than
    /// [`packed_input_len`](Self::packed_input_len), `packed_bank` not
    /// [`packed_bank_len`](Self::packed_bank_len), `bias` not `C_out`, `out` not the
    /// tiles' planes), [`Error::TileRange`] for tiles past
    /// [`plane_tiles`](Self::plane_tiles), [`Error::KernelNotCompiled`] for a kernel
    /// this build cannot call safely. Nothing is written on error.
    pub fn compute(
        &self,
        kernel: Kernel,
        packed_input: &[f32],
        packed_bank: &[f32],
        bias: Option<&[f32]>,
        out: &mut [f32],
        tiles: Range<usize>,
    ) -> Result<(), Error> {
        self.check_compute(packed_input, packed_bank, bias, out, &tiles)?;
        if !kernel.is_compiled() {
            return Err(Error::KernelNotCompiled {
                kernel: kernel.name(),
            });
        }
        self.drive(kernel, packed_input, packed_bank, bias, out, tiles);
        Ok(())
    }

    /// The body of [`compute`](Self::compute), after its checks (`check_compute` and
    /// `kernel.is_compiled()`): cannot fail. A kernel that is not compiled in (ruled
    /// out by the caller) writes nothing, with a debug assertion.
    fn drive(
        &self,
        kernel: Kernel,
        packed_input: &[f32],
        packed_bank: &[f32],
        bias: Option<&[f32]>,
        out: &mut [f32],
        tiles: Range<usize>,
    ) {
        debug_assert!(
            self.check_compute(packed_input, packed_bank, bias, out, &tiles)
                .is_ok(),
            "fast path driven with unchecked operands"
        );
        match kernel {
            Kernel::Portable => {
                tile::drive_portable(self, packed_input, packed_bank, bias, out, tiles);
            }
            #[cfg(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma"
            ))]
            Kernel::Avx2Fma => {
                // SAFETY: this arm is compiled only when the build enables `avx2` and
                // `fma` for every function (`-C target-feature` / `target-cpu`), so
                // the CPU running this code has them; that is the one requirement
                // of the `#[target_feature]` function, which is otherwise safe Rust.
                #[allow(unsafe_code)]
                unsafe {
                    tile::drive_avx2_fma(self, packed_input, packed_bank, bias, out, tiles);
                }
            }
            #[cfg(all(
                target_arch = "x86_64",
                target_feature = "avx512f",
                target_feature = "avx2",
                target_feature = "fma"
            ))]
            Kernel::Avx512 => {
                // SAFETY: compiled only when the build enables `avx512f`, `avx2`
                // and `fma` for every function, so the CPU running this code has
                // them; that is the one requirement of the `#[target_feature]`
                // function (safe Rust).
                #[allow(unsafe_code)]
                unsafe {
                    tile::drive_avx512(self, packed_input, packed_bank, bias, out, tiles);
                }
            }
            #[allow(unreachable_patterns)] // every kernel is compiled in some builds
            _ => debug_assert!(false, "kernel {} driven but not compiled in", kernel.name()),
        }
    }

    /// [`compute`](Self::compute) with the AVX2+FMA kernel, for callers that detected
    /// the CPU features at run time. Same arguments, errors and result.
    ///
    /// # Safety
    /// Calling it is safe inside code compiled with `avx2` and `fma` enabled; anywhere
    /// else the caller must make sure the CPU has both (`is_x86_feature_detected!`):
    /// the function itself is safe Rust, the only obligation is the CPU feature.
    ///
    /// # Errors
    /// As [`compute`](Self::compute).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub fn compute_avx2_fma(
        &self,
        packed_input: &[f32],
        packed_bank: &[f32],
        bias: Option<&[f32]>,
        out: &mut [f32],
        tiles: Range<usize>,
    ) -> Result<(), Error> {
        self.check_compute(packed_input, packed_bank, bias, out, &tiles)?;
        tile::drive_avx2_fma(self, packed_input, packed_bank, bias, out, tiles);
        Ok(())
    }

    /// [`compute`](Self::compute) with the AVX-512 kernel, for callers that detected
    /// the CPU feature at run time. Same arguments, errors and result.
    ///
    /// # Safety
    /// Calling it is safe inside code compiled with `avx512f`, `avx2` and `fma`
    /// enabled; anywhere else the caller must make sure the CPU has them
    /// (`is_x86_feature_detected!`): the function itself is safe Rust, the only
    /// obligation is the CPU features.
    ///
    /// # Errors
    /// As [`compute`](Self::compute).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub fn compute_avx512(
        &self,
        packed_input: &[f32],
        packed_bank: &[f32],
        bias: Option<&[f32]>,
        out: &mut [f32],
        tiles: Range<usize>,
    ) -> Result<(), Error> {
        self.check_compute(packed_input, packed_bank, bias, out, &tiles)?;
        tile::drive_avx512(self, packed_input, packed_bank, bias, out, tiles);
        Ok(())
    }

    /// Whole forward pass with the best kernel compiled into this build
    /// ([`Kernel::compiled`]): for each image, pack the input into `scratch`, then
    /// compute every tile. `input` is `(N, C_in, nti, H, W)`, `output`
    /// `(N, C_out, nto, H', W')`, `packed_bank` from [`pack_bank`](Self::pack_bank).
    ///
    /// # Errors
    /// [`Error::BufferLength`] when `input`, `packed_bank`, `bias` or `output` does not
    /// have exactly its length, or `scratch` is shorter than
    /// [`packed_input_len`](Self::packed_input_len). Nothing is written to `output`
    /// on error.
    pub fn forward(
        &self,
        input: &[f32],
        packed_bank: &[f32],
        bias: Option<&[f32]>,
        output: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<(), Error> {
        self.forward_with(
            Kernel::compiled(),
            input,
            packed_bank,
            bias,
            output,
            scratch,
        )
    }

    /// [`forward`](Self::forward) with `kernel` (for [`Plan`](crate::plan::Plan),
    /// whose kernel is chosen at planning).
    ///
    /// # Errors
    /// As [`forward`](Self::forward); [`Error::KernelNotCompiled`] when `kernel` is
    /// not compiled into this build. Nothing is written on error.
    pub(crate) fn forward_with(
        &self,
        kernel: Kernel,
        input: &[f32],
        packed_bank: &[f32],
        bias: Option<&[f32]>,
        output: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<(), Error> {
        self.check_batch(input, output)?;
        self.check_operands(packed_bank, bias)?;
        let packed = self.scratch(scratch)?;
        if !kernel.is_compiled() {
            return Err(Error::KernelNotCompiled {
                kernel: kernel.name(),
            });
        }
        let (in_len, out_len) = (self.image_input_len(), self.image_output_len());
        if in_len == 0 || out_len == 0 {
            return Ok(());
        }
        // Everything is checked: the loop below cannot fail (every image's buffers
        // have the checked lengths).
        for (image, out) in input
            .chunks_exact(in_len)
            .zip(output.chunks_exact_mut(out_len))
        {
            pack::pack_input(self, image, packed);
            self.drive(
                kernel,
                packed,
                packed_bank,
                bias,
                out,
                0..self.plane_tiles(),
            );
        }
        Ok(())
    }

    /// Checks the operands every tile shares: `packed_bank` exactly
    /// [`packed_bank_len`](Self::packed_bank_len) long, `bias` (if any) `C_out` long.
    /// Lets a caller that splits the work report these errors before starting.
    ///
    /// # Errors
    /// [`Error::BufferLength`] naming the buffer.
    pub fn check_operands(&self, packed_bank: &[f32], bias: Option<&[f32]>) -> Result<(), Error> {
        check_len(Buffer::Bank, packed_bank.len(), self.packed_bank_len())?;
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
    pub fn check_batch(&self, input: &[f32], output: &[f32]) -> Result<(), Error> {
        check_len(Buffer::Input, input.len(), self.geo.input_len())?;
        check_len(Buffer::Output, output.len(), self.geo.output_len())
    }

    fn scratch<'a>(&self, scratch: &'a mut [f32]) -> Result<&'a mut [f32], Error> {
        let found = scratch.len();
        scratch
            .get_mut(..self.packed_input_len)
            .ok_or(Error::BufferLength {
                buffer: Buffer::Scratch,
                expected: self.packed_input_len,
                found,
            })
    }

    pub(crate) fn check_compute(
        &self,
        packed_input: &[f32],
        packed_bank: &[f32],
        bias: Option<&[f32]>,
        out: &[f32],
        tiles: &Range<usize>,
    ) -> Result<(), Error> {
        if tiles.start > tiles.end || tiles.end > self.plane_tiles() {
            return Err(Error::TileRange {
                start: tiles.start,
                end: tiles.end,
                tiles: self.plane_tiles(),
            });
        }
        if packed_input.len() < self.packed_input_len {
            return Err(Error::BufferLength {
                buffer: Buffer::Scratch,
                expected: self.packed_input_len,
                found: packed_input.len(),
            });
        }
        self.check_operands(packed_bank, bias)?;
        let plane = self.geo.out_height() * self.geo.out_width();
        check_len(Buffer::Output, out.len(), tiles.len() * MR * plane)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{expand::expand_filter_bank, group::group_conv_expanded};
    use crate::shape::{ConvShape, Domain, Padding};
    use crate::test_data::{data_kinds, fill, fill_ints, same_bits};
    use crate::{C4, D4, Group};

    /// The fast path with `kernel` against the direct path. With `exact` the data
    /// are small integers, on which both are exact: the outputs must be the same
    /// bits. Otherwise values in [-1, 1), and the bound is derived: each path is
    /// within `(T + 2) eps (S + |b|)` of the exact sum (`T` terms, `S = sum |x w|`,
    /// see the module docs), so they differ by at most twice that. `S` is the direct
    /// path on `|x|` and `|bank|`, within a factor `1 + (T + 1) eps` of the exact
    /// value, so the bound uses `(1 + (T + 2) eps) S`.
    fn compare<G: Group>(shape: ConvShape, kernel: Kernel, exact: bool) {
        let geo = shape.geometry::<G>(Domain::Group).unwrap();
        let plan = FastPlan::new(&geo).unwrap();
        let mut x = [0.0f32; 4096];
        let mut w = [0.0f32; 4096];
        let mut bank = [0.0f32; 8192];
        let mut packed = [0.0f32; 8192];
        let mut scratch = [f32::NAN; 8192];
        let mut direct = [0.0f32; 8192];
        let mut fast = [f32::NAN; 8192];
        let (x, w) = (&mut x[..geo.input_len()], &mut w[..geo.weight_len()]);
        if exact {
            fill_ints(x, 1);
            fill_ints(w, 2);
        } else {
            fill(x, 1);
            fill(w, 2);
        }
        let bias = [0.5f32, -0.25, 1.0];
        let bias = Some(&bias[..geo.bias_len()]);
        let bank = &mut bank[..geo.bank_len()];
        expand_filter_bank::<G>(
            Domain::Group,
            3.min(shape.out_channels),
            shape.in_channels,
            shape.kernel,
            w,
            bank,
        )
        .unwrap();
        let direct = &mut direct[..geo.output_len()];
        group_conv_expanded::<G>(&shape, x, bank, bias, direct).unwrap();
        let packed = &mut packed[..plan.packed_bank_len()];
        plan.pack_bank(bank, packed).unwrap();
        let fast = &mut fast[..geo.output_len()];
        let scratch = &mut scratch[..plan.packed_input_len()];
        let in_len = plan.image_input_len();
        let out_len = plan.image_output_len();
        for n in 0..shape.batch {
            plan.pack_input(&x[n * in_len..(n + 1) * in_len], scratch)
                .unwrap();
            plan.compute(
                kernel,
                scratch,
                packed,
                bias,
                &mut fast[n * out_len..(n + 1) * out_len],
                0..plan.plane_tiles(),
            )
            .unwrap();
        }
        if exact {
            assert!(same_bits(direct, fast), "{shape:?} {kernel:?}: not exact");
            return;
        }
        // `S + |b|` per output: the direct path on absolute values.
        for v in x.iter_mut().chain(bank.iter_mut()) {
            *v = v.abs();
        }
        let abs_bias = [0.5f32, 0.25, 1.0];
        let abs_bias = Some(&abs_bias[..geo.bias_len()]);
        let mut sums = [0.0f32; 8192];
        let sums = &mut sums[..geo.output_len()];
        group_conv_expanded::<G>(&shape, x, bank, abs_bias, sums).unwrap();
        let (terms, eps) = (geo.terms_per_output() as f32 + 2.0, f32::EPSILON);
        for (i, ((a, b), s)) in direct.iter().zip(fast.iter()).zip(sums.iter()).enumerate() {
            let tol = 2.0 * terms * eps * (1.0 + terms * eps) * s;
            assert!(
                (a - b).abs() <= tol,
                "{shape:?} output {i}: direct {a} fast {b}, tolerance {tol:e}"
            );
        }
    }

    /// One small case per kernel this build can call, on exact (integer) and random
    /// data (under Miri exact only): the one Miri runs (with `-C target-feature=+avx2,+fma` it takes the
    /// `unsafe` call of `compute`).
    #[test]
    fn compiled_kernel_matches_direct_path_small() {
        let shape = ConvShape {
            batch: 1,
            in_channels: 2,
            out_channels: 2,
            height: 5,
            width: 7,
            kernel: 3,
            stride: 2,
            padding: Padding::symmetric(1),
        };
        for kernel in Kernel::ALL {
            if kernel.is_compiled() {
                for &exact in data_kinds() {
                    compare::<C4>(shape, kernel, exact);
                    compare::<D4>(shape, kernel, exact);
                }
            }
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "the grid takes hours under Miri; see the small case")]
    fn portable_matches_direct_path() {
        for k in 1..=4 {
            for stride in 1..=3 {
                for padding in [
                    Padding::Valid,
                    Padding::symmetric(1),
                    Padding::Explicit {
                        top: 1,
                        bottom: 2,
                        left: 0,
                        right: 3,
                    },
                ] {
                    for (h, w) in [(7, 8), (9, 9), (5, 11)] {
                        let shape = ConvShape {
                            batch: 2,
                            in_channels: 2,
                            out_channels: 3,
                            height: h,
                            width: w,
                            kernel: k,
                            stride,
                            padding,
                        };
                        for exact in [true, false] {
                            compare::<C4>(shape, Kernel::Portable, exact);
                            compare::<D4>(shape, Kernel::Portable, exact);
                            for kernel in Kernel::ALL {
                                if kernel != Kernel::Portable && kernel.is_compiled() {
                                    compare::<C4>(shape, kernel, exact);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
