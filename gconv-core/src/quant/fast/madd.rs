//! The AVX2 int8 micro-kernel: int16 pairs ([`Layout::Pairs`]), `vpmaddwd`
//! (`_mm256_madd_epi16`: two int16 products summed into an int32, which cannot
//! overflow for int8-range values) then `vpaddd` into int32 accumulators. Tile
//! `MR x 16`: eight 8-lane accumulators, two input vectors, one broadcast weight unit
//! and one product, 12 of the 16 ymm registers (a `MR x 24` tile needs 17, and LLVM
//! spilt two accumulators to the stack on every step and ran slower). Also the AVX2
//! requantization, which the AVX-VNNI kernel shares.
//!
//! Per 16 multiply-adds this kernel issues two vector instructions (`vpmaddwd`,
//! `vpaddd`), as many per multiply-add as the f32 kernel's one FMA per 8: its edge over
//! f32 is that `vpaddd` also runs on a third port and that the operands are half as
//! wide, not the instruction count.
//!
//! `vpmaddubsw` (unsigned by signed bytes into int16) would halve the widening but
//! saturates int16, so it is not used.
//!
//! [`Layout::Pairs`]: super::Layout::Pairs

/// Flat outputs per tile.
pub(super) const NR: usize = 16;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{
        __m256i, _mm256_add_epi32, _mm256_add_epi64, _mm256_and_si256, _mm256_blend_epi32,
        _mm256_castsi256_si128, _mm256_cmpgt_epi32, _mm256_madd_epi16, _mm256_max_epi32,
        _mm256_min_epi32, _mm256_mul_epi32, _mm256_packs_epi16, _mm256_packs_epi32,
        _mm256_permutevar8x32_epi32, _mm256_set1_epi32, _mm256_set1_epi64x, _mm256_setr_epi32,
        _mm256_setzero_si256, _mm256_slli_epi64, _mm256_sllv_epi32, _mm256_srai_epi32,
        _mm256_srav_epi32, _mm256_srli_epi64, _mm256_sub_epi32,
    };
    use core::ops::Range;

    use super::super::{MR, QFastPlan, Run, TileQuant, drive};
    use super::NR;
    use crate::quant::Multiplier;

    /// The AVX2 tile: same contract as the portable tile (`acc[m][j] +=` the dot
    /// products of the int16 pairs), 8 outputs per vector, except that the weights
    /// are `(groups, K*K, MR)` (see `pack::prepare_weights`) and the taps are walked
    /// inside each group. For a 3x3 kernel at stride 1 (`pw3 = Some(phase_w)`, taps
    /// `u*phase_w + v`) each group reads three rows of `NR + 2` units, one bounds check
    /// each, and the nine steps slice them at constant offsets.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn tile(
        weights: &[i32],
        input: &[i32],
        (start, group_len, pw3): (usize, usize, Option<usize>),
        groups: (usize, usize),
        taps: &[usize],
        acc: &mut [[i32; NR]; MR],
        accumulate: bool,
    ) {
        let mut c: [[__m256i; NR / 8]; MR] = if accumulate {
            bytemuck::cast(*acc)
        } else {
            [[_mm256_setzero_si256(); NR / 8]; MR]
        };
        let (w_units, _) = weights.as_chunks::<MR>();
        let n_taps = taps.len();
        let (g0, g1) = groups;
        let w_groups = w_units.get(g0 * n_taps..g1 * n_taps).unwrap_or(&[]);
        let xs = input.get(start..).unwrap_or(&[]);
        match pw3 {
            Some(pw) if n_taps == 9 => {
                let (w9, _) = w_groups.as_chunks::<9>();
                for (i, w) in w9.iter().enumerate() {
                    let row = |r: usize| {
                        xs.get(i * group_len + r * pw..)
                            .and_then(|x| x.first_chunk::<{ NR + 2 }>())
                    };
                    let (Some(r0), Some(r1), Some(r2)) = (row(0), row(1), row(2)) else {
                        debug_assert!(false, "int8 madd tile: `r0` outside its buffer");
                        break;
                    };
                    // Constant offsets into arrays: no checks are left once unrolled.
                    for (w_r, x_r) in w.chunks_exact(3).zip([r0, r1, r2]) {
                        for (v, w_v) in w_r.iter().enumerate() {
                            if let Some(x) = x_r.get(v..).and_then(|x| x.first_chunk::<NR>()) {
                                step(&mut c, w_v, x);
                            }
                        }
                    }
                }
            }
            _ => {
                // `max(1)`: no panic path (`K*K >= 1` for a valid plan).
                'groups: for (i, w_g) in w_groups.chunks_exact(n_taps.max(1)).enumerate() {
                    let Some(x_g) = xs.get(i * group_len..) else {
                        debug_assert!(false, "int8 madd tile: `x_g` outside its buffer");
                        break;
                    };
                    for (w, &tap) in w_g.iter().zip(taps) {
                        let Some(x) = x_g.get(tap..).and_then(|x| x.first_chunk::<NR>()) else {
                            debug_assert!(false, "int8 madd tile: `x` outside its buffer");
                            break 'groups;
                        };
                        step(&mut c, w, x);
                    }
                }
            }
        }
        *acc = bytemuck::cast(c);
    }

    /// One step of [`tile`]: `c[m][j] += madd(x[j], broadcast(w[m]))`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn step(c: &mut [[__m256i; NR / 8]; MR], w: &[i32; MR], x: &[i32; NR]) {
        let (x, _) = x.as_chunks::<8>();
        let x: [__m256i; NR / 8] = core::array::from_fn(|i| bytemuck::cast(x[i]));
        for (c_m, &w_m) in c.iter_mut().zip(w) {
            let w_m = _mm256_set1_epi32(w_m);
            for (c_mj, &x_j) in c_m.iter_mut().zip(&x) {
                *c_mj = _mm256_add_epi32(*c_mj, _mm256_madd_epi16(x_j, w_m));
            }
        }
    }

    /// [`TileQuant`] as 8-lane vectors.
    pub(in crate::quant::fast) struct Quant8 {
        offset: __m256i,
        multiplier: __m256i,
        nudge: __m256i,
        left: __m256i,
        right: __m256i,
        mask: __m256i,
        half_mask: __m256i,
        lo: __m256i,
        hi: __m256i,
        zero_point: __m256i,
    }

    impl Quant8 {
        #[target_feature(enable = "avx2")]
        #[inline]
        pub(in crate::quant::fast) fn new(q: &TileQuant) -> Self {
            let mask = ((1i64 << q.right) - 1) as i32;
            Quant8 {
                offset: _mm256_set1_epi32(q.offset),
                multiplier: _mm256_set1_epi32(q.multiplier),
                nudge: _mm256_set1_epi64x(1 << 30),
                left: _mm256_set1_epi32(q.left as i32),
                right: _mm256_set1_epi32(q.right as i32),
                mask: _mm256_set1_epi32(mask),
                half_mask: _mm256_set1_epi32(mask >> 1),
                lo: _mm256_set1_epi32(q.range.0 - q.zero_point),
                hi: _mm256_set1_epi32(q.range.1 - q.zero_point),
                zero_point: _mm256_set1_epi32(q.zero_point),
            }
        }

        /// `clamp(M.apply(acc + offset) + zp, lo, hi)` on 8 lanes, exactly
        /// [`TileQuant::output`]:
        ///
        /// * `x = (acc + offset) << left` (wrapping);
        /// * `h = (x * m + 2^30) >> 31` from the 64-bit products of the even and of
        ///   the odd lanes (`m >= 0`, so `|x * m| < 2^62` and nothing saturates);
        /// * `r = (h >> right) + ((h & mask) > (mask >> 1) + (h < 0))`, the rounding
        ///   division by `2^right` (`mask = 2^right - 1`);
        /// * `min(max(r, lo - zp), hi - zp) + zp`, which is the saturating `r + zp`
        ///   clamped to `[lo, hi]` without the overflow.
        #[target_feature(enable = "avx2")]
        #[inline]
        pub(in crate::quant::fast) fn apply(&self, acc: __m256i) -> __m256i {
            let x = _mm256_sllv_epi32(_mm256_add_epi32(acc, self.offset), self.left);
            let even = _mm256_mul_epi32(x, self.multiplier);
            let odd = _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), self.multiplier);
            // Bits 31..62 of `p + 2^30`: in the low half for the even lanes, moved to
            // the high half for the odd ones.
            let even = _mm256_srli_epi64::<31>(_mm256_add_epi64(even, self.nudge));
            let odd = _mm256_slli_epi64::<1>(_mm256_add_epi64(odd, self.nudge));
            let h = _mm256_blend_epi32::<0b1010_1010>(even, odd);
            let remainder = _mm256_and_si256(h, self.mask);
            let threshold = _mm256_sub_epi32(self.half_mask, _mm256_srai_epi32::<31>(h));
            let r = _mm256_srav_epi32(h, self.right);
            let r = _mm256_sub_epi32(r, _mm256_cmpgt_epi32(remainder, threshold));
            let r = _mm256_min_epi32(_mm256_max_epi32(r, self.lo), self.hi);
            _mm256_add_epi32(r, self.zero_point)
        }
    }

    /// The vector epilogue of a tile of 8-lane accumulators (AVX2 and AVX-VNNI): 16
    /// outputs at a time are requantized, then narrowed to bytes by two saturating
    /// packs (exact: the values are in `[lo, hi]`, inside the int8 range) and one
    /// permutation that puts the 128-bit lanes' results back in order.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(in crate::quant::fast) fn finish<const NR: usize>(
        acc: &[[i32; NR]; MR],
        quant: &TileQuant,
        y: &mut [[i8; NR]; MR],
    ) {
        let q = Quant8::new(quant);
        // After the packs, 32-bit lane `i` holds outputs `4*order[i] ..` (see below).
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (y_m, acc_m) in y.iter_mut().zip(acc) {
            let (acc_v, acc_rest) = acc_m.as_chunks::<16>();
            let (y_v, y_rest) = y_m.as_chunks_mut::<16>();
            for (y16, a16) in y_v.iter_mut().zip(acc_v) {
                let [a, b]: [__m256i; 2] = bytemuck::cast(*a16);
                let (a, b) = (q.apply(a), q.apply(b));
                // int16: [a0..a3 b0..b3 | a4..a7 b4..b7] (the 128-bit lanes).
                let p = _mm256_packs_epi32(a, b);
                // int8, 32-bit lanes: [a0..3, b0..3, a0..3, b0..3 | a4..7, b4..7, ..].
                let p = _mm256_packs_epi16(p, p);
                let p = _mm256_permutevar8x32_epi32(p, order);
                *y16 = bytemuck::cast(_mm256_castsi256_si128(p));
            }
            // A last half vector (`NR` an odd multiple of 8; not the kernels' tiles).
            let (acc_v, _) = acc_rest.as_chunks::<8>();
            let (y_v, _) = y_rest.as_chunks_mut::<8>();
            for (y8, a8) in y_v.iter_mut().zip(acc_v) {
                let r: [i32; 8] = bytemuck::cast(q.apply(bytemuck::cast(*a8)));
                // In `[lo, hi]`, a subset of the int8 range: the cast is exact.
                *y8 = r.map(|v| v as i8);
            }
        }
    }

    /// Drives the AVX2 kernel over `tiles` (lengths checked by the caller).
    #[target_feature(enable = "avx2")]
    pub(in crate::quant::fast) fn drive(
        plan: &QFastPlan,
        run: &Run<'_>,
        packed: &[i32],
        out: &mut [i8],
        tiles: Range<usize>,
    ) {
        let taps = plan.tap_offsets();
        let pw = plan.phase_w.get();
        let pw3 =
            (taps == [0, 1, 2, pw, pw + 1, pw + 2, 2 * pw, 2 * pw + 1, 2 * pw + 2]).then_some(pw);
        drive::drive::<NR, 1>(
            plan,
            run,
            out,
            tiles,
            |w, groups, start, acc, add| {
                if let Some(acc) = acc.first_mut() {
                    tile(
                        w,
                        packed,
                        (start, plan.group_len, pw3),
                        groups,
                        taps,
                        acc,
                        add,
                    )
                }
            },
            |acc, _: Multiplier, q, y| finish(acc, q, y),
        );
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{drive, finish};
