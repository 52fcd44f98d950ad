//! The VNNI int8 micro-kernels: byte quads ([`Layout::Quads`]), `vpdpbusd`
//! (four unsigned-by-signed byte products summed into each int32 lane, wrapping; its
//! saturating twin `vpdpbusds` is not used). The input bytes are `x + 128` (unsigned),
//! the weights signed; the driver's correction takes the `128 * S[o]` back.
//!
//! * AVX-512 VNNI (`_mm512_dpbusd_epi32`): tile `MR x 48`, run two plane tiles at a
//!   time: twenty-four 16-lane accumulators (8 planes x 3 vectors), three input
//!   vectors and one broadcast weight unit (28 of the 32 zmm registers), so that each
//!   64-byte input load feeds eight `vpdpbusd` (the `MR x 64` tile fed four: about 3%
//!   slower on the 56x56 and 32x32 layers); the epilogue requantizes 16 lanes at a
//!   time and narrows with `vpmovdb`.
//! * AVX-VNNI (`_mm256_dpbusd_avx_epi32`, the VEX encoding on 256 bits): tile
//!   `MR x 16`, eight 8-lane accumulators (with twelve, LLVM spilt and shuffled
//!   registers on every step); the epilogue is the AVX2 kernel's.
//!
//! [`Layout::Quads`]: super::Layout::Quads

/// Flat outputs per AVX-512 tile.
pub(super) const NR_512: usize = 48;
/// Flat outputs per AVX-VNNI tile.
pub(super) const NR_256: usize = 16;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{
        __m256i, __m512i, _mm256_dpbusd_avx_epi32, _mm256_set1_epi32, _mm256_setzero_si256,
        _mm512_add_epi32, _mm512_add_epi64, _mm512_and_si512, _mm512_cmpgt_epi32_mask,
        _mm512_cvtepi32_epi8, _mm512_dpbusd_epi32, _mm512_mask_add_epi32, _mm512_mask_blend_epi32,
        _mm512_max_epi32, _mm512_min_epi32, _mm512_mul_epi32, _mm512_set1_epi32, _mm512_set1_epi64,
        _mm512_setzero_si512, _mm512_slli_epi64, _mm512_sllv_epi32, _mm512_srai_epi32,
        _mm512_srav_epi32, _mm512_srli_epi64, _mm512_sub_epi32,
    };
    use core::ops::Range;

    use super::super::{MR, QFastPlan, Run, TileQuant, drive, madd};
    use super::{NR_256, NR_512};
    use crate::quant::Multiplier;

    /// Input vectors of 16 outputs per AVX-512 tile row.
    const V512: usize = NR_512 / 16;

    /// The AVX-512 VNNI tile, `P` plane tiles at once (`P * MR` output planes, so that
    /// each input vector loaded feeds `P * MR` `vpdpbusd`): `acc[p][m][j] +=` the dot
    /// products of the byte quads of the weights of plane tile `p` and the input;
    /// otherwise the portable tile's contract (groups `g0..g1` of each plane tile's
    /// units `(taps, n_groups, MR)`, the `P` tiles' units one after the other in
    /// `weights`, group `g0 + i` read at `input[start + i*group_len + tap ..][..NR_512]`).
    #[target_feature(enable = "avx512f,avx512vnni")]
    #[inline]
    fn tile_512<const P: usize>(
        weights: &[i32],
        input: &[i32],
        (start, group_len, n_groups): (usize, usize, usize),
        groups: (usize, usize),
        taps: &[usize],
        acc: &mut [[[i32; NR_512]; MR]; P],
        accumulate: bool,
    ) {
        let mut c: [[[__m512i; V512]; MR]; P] = if accumulate {
            acc.map(bytemuck::cast)
        } else {
            [[[_mm512_setzero_si512(); V512]; MR]; P]
        };
        let filter = taps.len() * n_groups;
        let (w_units, _) = weights.as_chunks::<MR>();
        let (g0, g1) = groups;
        let n = g1.saturating_sub(g0);
        'taps: for (k, &tap) in taps.iter().enumerate() {
            // Tap `k`, groups `g0..g1` of each plane tile (each exactly `n` units).
            let mut w_tap: [&[[i32; MR]]; P] = [&[]; P];
            for (p, w_p) in w_tap.iter_mut().enumerate() {
                let first = p * filter + k * n_groups + g0;
                let Some(w) = w_units.get(first..first + n) else {
                    debug_assert!(false, "int8 vnni tile: `w` outside its buffer");
                    break 'taps;
                };
                *w_p = w;
            }
            let mut at = start + tap;
            for i in 0..n {
                let Some(x) = input
                    .get(at..at + NR_512)
                    .and_then(|x| x.first_chunk::<NR_512>())
                else {
                    debug_assert!(false, "int8 vnni tile: `x` outside its buffer");
                    break 'taps;
                };
                at += group_len;
                let (x, _) = x.as_chunks::<16>();
                let x: [__m512i; V512] = core::array::from_fn(|i| bytemuck::cast(x[i]));
                for (c_p, w_p) in c.iter_mut().zip(&w_tap) {
                    let Some(w) = w_p.get(i) else {
                        debug_assert!(false, "int8 vnni tile: `w` outside its buffer");
                        break 'taps;
                    };
                    for (c_m, &w_m) in c_p.iter_mut().zip(w) {
                        let w_m = _mm512_set1_epi32(w_m);
                        for (c_mj, &x_j) in c_m.iter_mut().zip(&x) {
                            *c_mj = _mm512_dpbusd_epi32(*c_mj, x_j, w_m);
                        }
                    }
                }
            }
        }
        *acc = c.map(bytemuck::cast);
    }

    /// The AVX-VNNI tile: as [`tile_512`] on 8-lane vectors.
    #[target_feature(enable = "avx2,avxvnni")]
    #[inline]
    fn tile_256(
        weights: &[i32],
        input: &[i32],
        (start, group_len, n_groups): (usize, usize, usize),
        groups: (usize, usize),
        taps: &[usize],
        acc: &mut [[i32; NR_256]; MR],
        accumulate: bool,
    ) {
        let mut c: [[__m256i; NR_256 / 8]; MR] = if accumulate {
            bytemuck::cast(*acc)
        } else {
            [[_mm256_setzero_si256(); NR_256 / 8]; MR]
        };
        let (w_units, _) = weights.as_chunks::<MR>();
        let (g0, g1) = groups;
        'taps: for (k, &tap) in taps.iter().enumerate() {
            let Some(w_tap) = w_units.get(k * n_groups + g0..k * n_groups + g1) else {
                debug_assert!(false, "int8 vnni tile: `w_tap` outside its buffer");
                break;
            };
            let mut at = start + tap;
            for w in w_tap {
                let Some(x) = input
                    .get(at..at + NR_256)
                    .and_then(|x| x.first_chunk::<NR_256>())
                else {
                    debug_assert!(false, "int8 vnni tile: `x` outside its buffer");
                    break 'taps;
                };
                at += group_len;
                let (x, _) = x.as_chunks::<8>();
                let x: [__m256i; NR_256 / 8] = core::array::from_fn(|i| bytemuck::cast(x[i]));
                for (c_m, &w_m) in c.iter_mut().zip(w) {
                    let w_m = _mm256_set1_epi32(w_m);
                    for (c_mj, &x_j) in c_m.iter_mut().zip(&x) {
                        *c_mj = _mm256_dpbusd_avx_epi32(*c_mj, x_j, w_m);
                    }
                }
            }
        }
        *acc = bytemuck::cast(c);
    }

    /// [`TileQuant`] as 16-lane vectors; `apply` is the AVX2 kernel's
    /// (`madd::Quant8::apply`) on 16 lanes, with a mask for the rounding increment.
    struct Quant16 {
        offset: __m512i,
        multiplier: __m512i,
        nudge: __m512i,
        left: __m512i,
        right: __m512i,
        mask: __m512i,
        half_mask: __m512i,
        one: __m512i,
        lo: __m512i,
        hi: __m512i,
        zero_point: __m512i,
    }

    impl Quant16 {
        #[target_feature(enable = "avx512f")]
        #[inline]
        fn new(q: &TileQuant) -> Self {
            let mask = ((1i64 << q.right) - 1) as i32;
            Quant16 {
                offset: _mm512_set1_epi32(q.offset),
                multiplier: _mm512_set1_epi32(q.multiplier),
                nudge: _mm512_set1_epi64(1 << 30),
                left: _mm512_set1_epi32(q.left as i32),
                right: _mm512_set1_epi32(q.right as i32),
                mask: _mm512_set1_epi32(mask),
                half_mask: _mm512_set1_epi32(mask >> 1),
                one: _mm512_set1_epi32(1),
                lo: _mm512_set1_epi32(q.range.0 - q.zero_point),
                hi: _mm512_set1_epi32(q.range.1 - q.zero_point),
                zero_point: _mm512_set1_epi32(q.zero_point),
            }
        }

        /// `clamp(M.apply(acc + offset) + zp, lo, hi)` on 16 lanes, exactly
        /// [`TileQuant::output`] (the steps are those of the AVX2 epilogue).
        #[target_feature(enable = "avx512f")]
        #[inline]
        fn apply(&self, acc: __m512i) -> __m512i {
            let x = _mm512_sllv_epi32(_mm512_add_epi32(acc, self.offset), self.left);
            let even = _mm512_mul_epi32(x, self.multiplier);
            let odd = _mm512_mul_epi32(_mm512_srli_epi64::<32>(x), self.multiplier);
            let even = _mm512_srli_epi64::<31>(_mm512_add_epi64(even, self.nudge));
            let odd = _mm512_slli_epi64::<1>(_mm512_add_epi64(odd, self.nudge));
            let h = _mm512_mask_blend_epi32(0xaaaa, even, odd);
            let remainder = _mm512_and_si512(h, self.mask);
            let threshold = _mm512_sub_epi32(self.half_mask, _mm512_srai_epi32::<31>(h));
            let r = _mm512_srav_epi32(h, self.right);
            let up = _mm512_cmpgt_epi32_mask(remainder, threshold);
            let r = _mm512_mask_add_epi32(r, up, r, self.one);
            let r = _mm512_min_epi32(_mm512_max_epi32(r, self.lo), self.hi);
            _mm512_add_epi32(r, self.zero_point)
        }
    }

    /// The AVX-512 epilogue: requantize 16 lanes at a time, narrow with `vpmovdb`
    /// (exact: the values are in the int8 range).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn finish_512(acc: &[[i32; NR_512]; MR], quant: &TileQuant, y: &mut [[i8; NR_512]; MR]) {
        let q = Quant16::new(quant);
        for (y_m, acc_m) in y.iter_mut().zip(acc) {
            let (acc_v, _) = acc_m.as_chunks::<16>();
            let (y_v, _) = y_m.as_chunks_mut::<16>();
            for (y16, a16) in y_v.iter_mut().zip(acc_v) {
                *y16 = bytemuck::cast(_mm512_cvtepi32_epi8(q.apply(bytemuck::cast(*a16))));
            }
        }
    }

    /// Drives the AVX-512 VNNI kernel over `tiles` (lengths checked by the caller).
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(in crate::quant::fast) fn drive_512(
        plan: &QFastPlan,
        run: &Run<'_>,
        packed: &[i32],
        out: &mut [i8],
        tiles: Range<usize>,
    ) {
        let taps = plan.tap_offsets();
        let dims = (plan.group_len, plan.groups);
        drive::drive::<NR_512, 2>(
            plan,
            run,
            out,
            tiles,
            |w, groups, start, acc, add| {
                let dims = (start, dims.0, dims.1);
                if let Ok(acc) = <&mut [_; 2]>::try_from(&mut *acc) {
                    tile_512::<2>(w, packed, dims, groups, taps, acc, add);
                } else if let Ok(acc) = <&mut [_; 1]>::try_from(acc) {
                    tile_512::<1>(w, packed, dims, groups, taps, acc, add);
                }
            },
            |acc, _: Multiplier, q, y| finish_512(acc, q, y),
        );
    }

    /// Drives the AVX-VNNI kernel over `tiles` (lengths checked by the caller).
    #[target_feature(enable = "avx2,avxvnni")]
    pub(in crate::quant::fast) fn drive_256(
        plan: &QFastPlan,
        run: &Run<'_>,
        packed: &[i32],
        out: &mut [i8],
        tiles: Range<usize>,
    ) {
        let taps = plan.tap_offsets();
        drive::drive::<NR_256, 1>(
            plan,
            run,
            out,
            tiles,
            |w, groups, start, acc, add| {
                if let Some(acc) = acc.first_mut() {
                    tile_256(
                        w,
                        packed,
                        (start, plan.group_len, plan.groups),
                        groups,
                        taps,
                        acc,
                        add,
                    )
                }
            },
            |acc, _: Multiplier, q, y| madd::finish(acc, q, y),
        );
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{drive_256, drive_512};
