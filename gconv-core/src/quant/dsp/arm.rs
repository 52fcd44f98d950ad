//! The DSP path's `K = 3` block kernels for Arm cores with the DSP extension
//! (Cortex-M4, M7, M33): `asm!` loops of `SMLAD`, two multiply-adds per instruction.
//!
//! One loop iteration runs 3 chunks (the band walk of `kernel.rs`: chunk `c` at
//! `x + c * pitch` words, its 3 weight words at `w + 3 * c`). Per chunk, for a block
//! of `NP` pixels:
//!
//! ```text
//! ldm   x, {NP + 2 input words}      the words the 3 taps of NP pixels read
//! ldm   w!, {3 weight words}         (NP = 4: one ldr per tap, registers are short)
//! uxtah x, x, s                      x += pitch bytes (low half of s)
//! 3 * NP smlad                       acc[j] += x[j + q] . w[q]
//! ```
//!
//! that is 12 instructions per 18 multiply-adds for `NP = 3`, plus `subs`/`bhs` per
//! 3 chunks on the count in the high half of `s`. `NP = 3` and `4` need 14 registers,
//! so the loop saves and restores `r6` and `r7` (which `asm!` operands may not name)
//! on the stack around it.
//!
//! The portable kernel sums the same products into the same wrapping int32
//! accumulators, so both give the same integers; the firmware
//! (`examples/cortex-m4`) checks this kernel's outputs against the host's bit for
//! bit.
#![allow(unsafe_code)]

/// One chunk of the `NP = 3` block: inputs r3-r7, weights r8-r10, accumulators r0-r2.
macro_rules! chunk3 {
    () => {
        concat!(
            "ldm r11, {{r3, r4, r5, r6, r7}}\n",
            "ldm r12!, {{r8, r9, r10}}\n",
            "uxtah r11, r11, lr\n",
            "smlad r0, r3, r8, r0\n",
            "smlad r1, r4, r8, r1\n",
            "smlad r2, r5, r8, r2\n",
            "smlad r0, r4, r9, r0\n",
            "smlad r1, r5, r9, r1\n",
            "smlad r2, r6, r9, r2\n",
            "smlad r0, r5, r10, r0\n",
            "smlad r1, r6, r10, r1\n",
            "smlad r2, r7, r10, r2\n",
        )
    };
}

/// One chunk of the `NP = 4` block: inputs r4-r9, one weight r10, accumulators r0-r3.
macro_rules! chunk4 {
    () => {
        concat!(
            "ldm r11, {{r4, r5, r6, r7, r8, r9}}\n",
            "uxtah r11, r11, lr\n",
            "ldr r10, [r12], #4\n",
            "smlad r0, r4, r10, r0\n",
            "smlad r1, r5, r10, r1\n",
            "smlad r2, r6, r10, r2\n",
            "smlad r3, r7, r10, r3\n",
            "ldr r10, [r12], #4\n",
            "smlad r0, r5, r10, r0\n",
            "smlad r1, r6, r10, r1\n",
            "smlad r2, r7, r10, r2\n",
            "smlad r3, r8, r10, r3\n",
            "ldr r10, [r12], #4\n",
            "smlad r0, r6, r10, r0\n",
            "smlad r1, r7, r10, r1\n",
            "smlad r2, r8, r10, r2\n",
            "smlad r3, r9, r10, r3\n",
        )
    };
}

/// One chunk of the `NP = 2` block: inputs r2-r5, weights r8-r10, accumulators r0-r1.
macro_rules! chunk2 {
    () => {
        concat!(
            "ldm r11, {{r2, r3, r4, r5}}\n",
            "ldm r12!, {{r8, r9, r10}}\n",
            "uxtah r11, r11, lr\n",
            "smlad r0, r2, r8, r0\n",
            "smlad r1, r3, r8, r1\n",
            "smlad r0, r3, r9, r0\n",
            "smlad r1, r4, r9, r1\n",
            "smlad r0, r4, r10, r0\n",
            "smlad r1, r5, r10, r1\n",
        )
    };
}

/// Runs the blocks of one output row as `kernel::row` does, with the `K = 3` `asm!`
/// blocks, when they apply (`k == 3`, a positive chunk count below `2^16` iterations
/// of 3 chunks, or of 1 when the count is not a multiple of 3, a pitch below `2^14`
/// words, and slices long enough for every word the blocks read and write, checked
/// here once per row); returns false, having done nothing, otherwise.
#[inline]
#[allow(clippy::too_many_arguments)]
pub(super) fn row(
    x_row: &[i32],
    pitch: usize,
    w: &[i32],
    k: usize,
    chunks: usize,
    (threes, last): (usize, usize),
    bias: i32,
    out: &mut [i32],
) -> bool {
    let by3 = chunks % 3 == 0;
    let iterations = if by3 { chunks / 3 } else { chunks };
    let cover = 3 * threes + last;
    let fits = k == 3
        && (1..=1 << 16).contains(&iterations)
        && pitch < 1 << 14
        && w.len() >= 3 * chunks
        && (last == 0 || last == 2 || last == 4)
        && out.len() >= cover
        && x_row.len() >= (chunks - 1) * pitch + cover + 2;
    if !fits {
        return false;
    }
    // Low half: the pitch in bytes; high half: iterations left after the first.
    let s = (((iterations - 1) << 16) | (pitch * 4)) as u32;
    let (x, w, y) = (x_row.as_ptr(), w.as_ptr(), out.as_mut_ptr());
    // SAFETY (all calls): block `j` reads words `j + c * pitch .. j + c * pitch + NP
    // + 2` of `x_row` for `c < chunks`, all below `(chunks - 1) * pitch + cover + 2
    // <= x_row.len()` (`j + NP <= cover`), `3 * chunks <= w.len()` weight words,
    // and writes `out[j..j + NP]`, `j + NP <= cover <= out.len()`.
    unsafe {
        if threes > 0 {
            if by3 {
                blocks3::<3>(x, w, s, bias, y, threes);
            } else {
                blocks3::<1>(x, w, s, bias, y, threes);
            }
        }
        let j = 3 * threes;
        let (x, y) = (x.add(j), y.add(j));
        match (last, by3) {
            (2, true) => block2::<3>(x, w, s, bias, y),
            (2, false) => block2::<1>(x, w, s, bias, y),
            (4, true) => block4::<3>(x, w, s, bias, y),
            (4, false) => block4::<1>(x, w, s, bias, y),
            _ => {}
        }
    }
    true
}

/// An `asm!` block whose loop runs `U` chunks per iteration (1 or 3), counted in
/// the high half of `lr`: `dsp_asm!(U; chunk; "prologue", ...; "epilogue", ...;
/// operands)`.
macro_rules! dsp_asm {
    ($u:expr; $chunk:ident; $($pro:literal),*; $($epi:literal),*; $($operands:tt)*) => {
        if $u == 3 {
            core::arch::asm!(
                $($pro,)*
                "2:",
                $chunk!(),
                $chunk!(),
                $chunk!(),
                "subs lr, lr, #0x10000",
                "bhs 2b",
                $($epi,)*
                $($operands)*
            )
        } else {
            core::arch::asm!(
                $($pro,)*
                "2:",
                $chunk!(),
                "subs lr, lr, #0x10000",
                "bhs 2b",
                $($epi,)*
                $($operands)*
            )
        }
    };
}

/// The 2-pixel block from `bias`, accumulators stored to `y[0..2]`.
///
/// # Safety
/// `s` as in [`row`] with `U` chunks per iteration; for every chunk `c`, words
/// `x + c * pitch .. + 4` and `w + 3 * c .. + 3` are readable; `y[0..2]` writable.
#[inline(always)]
unsafe fn block2<const U: usize>(x: *const i32, w: *const i32, s: u32, bias: i32, y: *mut i32) {
    // SAFETY: the caller's contract covers every word read and written; `y` waits
    // on the stack (4 bytes, popped) while the loop uses every free register.
    unsafe {
        dsp_asm!(U; chunk2;
            "push {{r2}}", "mov r1, r0";
            "pop {{r4}}", "stm r4, {{r0, r1}}";
            inout("r0") bias => _,
            out("r1") _,
            inout("r2") y => _,
            out("r3") _, out("r4") _, out("r5") _,
            out("r8") _, out("r9") _, out("r10") _,
            inout("r11") x => _,
            inout("r12") w => _,
            inout("lr") s => _,
        );
    }
}

/// The 4-pixel block from `bias`, accumulators stored to `y[0..4]`.
///
/// # Safety
/// As [`block2`], with 6 input words per chunk and `y[0..4]`.
#[inline(always)]
unsafe fn block4<const U: usize>(x: *const i32, w: *const i32, s: u32, bias: i32, y: *mut i32) {
    // SAFETY: as in `block2`; r6 and r7, which operands may not name, are pushed
    // before the loop and popped after it (8 bytes below the stack pointer).
    unsafe {
        dsp_asm!(U; chunk4;
            "push {{r6, r7}}", "push {{r2}}", "mov r1, r0", "mov r2, r0", "mov r3, r0";
            "pop {{r4}}", "stm r4, {{r0, r1, r2, r3}}", "pop {{r6, r7}}";
            inout("r0") bias => _,
            out("r1") _,
            inout("r2") y => _,
            out("r3") _, out("r4") _, out("r5") _,
            out("r8") _, out("r9") _, out("r10") _,
            inout("r11") x => _,
            inout("r12") w => _,
            inout("lr") s => _,
        );
    }
}

/// `count >= 1` adjacent 3-pixel blocks from `bias` (block `b` at `x + 3 * b`),
/// accumulators stored to `y[3 * b..3 * b + 3]`. The loop keeps its state (bias,
/// block pointer, weights, `s`, output pointer, blocks left) in a 24-byte frame on
/// the stack, reloaded with one `ldm` per block.
///
/// # Safety
/// As [`block2`] for every block, with 5 input words per chunk; `y` is writable for
/// `3 * count` words.
#[inline(always)]
unsafe fn blocks3<const U: usize>(
    x: *const i32,
    w: *const i32,
    s: u32,
    bias: i32,
    y: *mut i32,
    count: usize,
) {
    // SAFETY: the caller's contract covers every word read and written; r6 and r7
    // are pushed and popped, and the frame is popped (`add sp, #24`) before the end.
    unsafe {
        dsp_asm!(U; chunk3;
            "push {{r6, r7}}", "push {{r3, r4}}", "push {{r0, r11, r12, lr}}",
            "3:", "ldm sp, {{r0, r11, r12, lr}}", "mov r1, r0", "mov r2, r0";
            "ldr r3, [sp, #16]", "stm r3!, {{r0, r1, r2}}", "str r3, [sp, #16]",
            "ldr r3, [sp, #4]", "adds r3, #12", "str r3, [sp, #4]",
            "ldr r3, [sp, #20]", "subs r3, #1", "str r3, [sp, #20]", "bne 3b",
            "add sp, #24", "pop {{r6, r7}}";
            inout("r0") bias => _,
            out("r1") _, out("r2") _,
            inout("r3") y => _,
            inout("r4") count => _,
            out("r5") _,
            out("r8") _, out("r9") _, out("r10") _,
            inout("r11") x => _,
            inout("r12") w => _,
            inout("lr") s => _,
        );
    }
}

/// `count >= 1` rows of `n` words: row `j` packs bytes `x[lo + j * plane..][..n]`
/// and `x[hi + j * plane..][..n]` into `dst[j * pitch..][..n]` (`lo | hi << 16`, the
/// halves sign-extended; per 4 columns: 2 `ldr`, `pkhbt`/`pkhtb` to pair the bytes of
/// columns (0, 1) and (2, 3) of both rows, 4 `sxtb16`, 1 `stm`; the last 0-3 columns
/// one at a time),
/// in one loop whose state (pointers, strides, counts) sits in a 28-byte stack
/// frame. The caller has checked that every row fits in `x` and `dst`.
#[inline]
pub(super) fn pack_planes(
    x: &[i8],
    (lo, hi): (usize, usize),
    plane: usize,
    count: usize,
    n: usize,
    dst: &mut [i32],
    pitch: usize,
) {
    let last = count.saturating_sub(1);
    if count == 0
        || n == 0
        || lo.max(hi) + last * plane + n > x.len()
        || last * pitch + n > dst.len()
    {
        return;
    }
    let base = x.as_ptr();
    // SAFETY: row `j < count` reads bytes `lo + j * plane .. + n` and `hi + j * plane
    // .. + n` of `x` and writes words `j * pitch .. + n` of `dst` (aligned), all in
    // range by the check above (`j <= last`); the loop writes only the named
    // registers, the flags and its stack frame, which it pops.
    unsafe {
        core::arch::asm!(
            "push {{r0, r1, r2, r3, r4, r5, r8}}",
            "3:",
            "ldm sp, {{r0, r1, r2}}",
            "ldr r3, [sp, #24]",
            "lsrs r3, r3, #2",
            "beq 4f",
            "2:",
            "ldr r4, [r0], #4",
            "ldr r5, [r1], #4",
            "pkhbt r8, r4, r5, lsl #16",
            "pkhtb r9, r5, r4, asr #16",
            "sxtb16 r4, r8",
            "sxtb16 r11, r8, ror #8",
            "sxtb16 r12, r9",
            "sxtb16 lr, r9, ror #8",
            "stm r2!, {{r4, r11, r12, lr}}",
            "subs r3, #1",
            "bne 2b",
            "4:",
            "ldr r3, [sp, #24]",
            "ands r3, r3, #3",
            "beq 5f",
            "6:",
            "ldrsb r4, [r0], #1",
            "ldrsb r5, [r1], #1",
            "pkhbt r4, r4, r5, lsl #16",
            "str r4, [r2], #4",
            "subs r3, #1",
            "bne 6b",
            "5:",
            "ldm sp, {{r0, r1, r2, r3, r4, r5}}",
            "add r0, r4",
            "add r1, r4",
            "add r2, r5",
            "subs r3, #1",
            "stm sp, {{r0, r1, r2, r3}}",
            "bne 3b",
            "add sp, #28",
            inout("r0") base.wrapping_add(lo) => _,
            inout("r1") base.wrapping_add(hi) => _,
            inout("r2") dst.as_mut_ptr() => _,
            inout("r3") count => _,
            inout("r4") plane => _,
            inout("r5") pitch * 4 => _,
            inout("r8") n => _,
            out("r9") _, out("r11") _, out("r12") _, out("lr") _,
        );
    }
}

/// The requantization of a row for a right shift `e >= 1` (`PlaneRequant` in
/// `mod.rs` gives the formula): per output, `lo:hi = nudge - [a < 0] * 2^31` (3
/// instructions), `smlal`, `asr` by `e - 1`, `qadd` of the zero point, `ssat` to 8
/// bits and, with a fused ReLU, the maximum with the zero point (the ReLU's lower
/// clamp), then `strb`. Writes `min(acc.len(), y.len())` outputs.
#[inline]
pub(super) fn requant_row(
    acc: &[i32],
    y: &mut [i8],
    multiplier: i32,
    (nudge_lo, nudge_hi): (u32, u32),
    shift: u32,
    zero_point: i32,
    relu: bool,
) {
    let n = acc.len().min(y.len());
    if n == 0 {
        return;
    }
    // SAFETY: the loop reads `n <= acc.len()` words of `acc` and writes `n <=
    // y.len()` bytes of `y`; it writes only the named registers and the flags.
    unsafe {
        if relu {
            core::arch::asm!(
                "2:",
                "ldr r4, [r0], #4",
                "asr r5, r4, #31",
                "adds r8, r10, r5, lsl #31",
                "adc r9, r11, r5",
                "smlal r8, r9, r4, r3",
                "asr r9, r9, r12",
                "qadd r9, r9, lr",
                "ssat r9, #8, r9",
                "cmp r9, lr",
                "it lt",
                "movlt r9, lr",
                "strb r9, [r1], #1",
                "subs r2, #1",
                "bne 2b",
                inout("r0") acc.as_ptr() => _,
                inout("r1") y.as_mut_ptr() => _,
                inout("r2") n => _,
                in("r3") multiplier,
                out("r4") _, out("r5") _, out("r8") _, out("r9") _,
                in("r10") nudge_lo,
                in("r11") nudge_hi,
                in("r12") shift,
                in("lr") zero_point,
                options(nostack),
            );
        } else {
            core::arch::asm!(
                "2:",
                "ldr r4, [r0], #4",
                "asr r5, r4, #31",
                "adds r8, r10, r5, lsl #31",
                "adc r9, r11, r5",
                "smlal r8, r9, r4, r3",
                "asr r9, r9, r12",
                "qadd r9, r9, lr",
                "ssat r9, #8, r9",
                "strb r9, [r1], #1",
                "subs r2, #1",
                "bne 2b",
                inout("r0") acc.as_ptr() => _,
                inout("r1") y.as_mut_ptr() => _,
                inout("r2") n => _,
                in("r3") multiplier,
                out("r4") _, out("r5") _, out("r8") _, out("r9") _,
                in("r10") nudge_lo,
                in("r11") nudge_hi,
                in("r12") shift,
                in("lr") zero_point,
                options(nostack),
            );
        }
    }
}
