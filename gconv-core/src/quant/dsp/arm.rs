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
/// blocks, when they apply (`k == 3`, a chunk count that is a positive multiple of 3
/// up to `3 * 2^16`, a pitch below `2^14` words, and slices long enough for every
/// word the blocks read, checked here once per row); returns false, having done
/// nothing, otherwise.
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
    mut emit: impl FnMut(usize, &[i32]),
) -> bool {
    let iterations = chunks / 3;
    let cover = 3 * threes + last;
    let fits = k == 3
        && chunks % 3 == 0
        && (1..=1 << 16).contains(&iterations)
        && pitch < 1 << 14
        && w.len() >= 3 * chunks
        && (last == 0 || last == 2 || last == 4)
        && x_row.len() >= (chunks - 1) * pitch + cover + 2;
    if !fits {
        return false;
    }
    // Low half: the pitch in bytes; high half: iterations left after the first.
    let s = (((iterations - 1) << 16) | (pitch * 4)) as u32;
    let (x, w) = (x_row.as_ptr(), w.as_ptr());
    for b in 0..threes {
        let j = 3 * b;
        // SAFETY: block `j` reads words `j + c * pitch .. j + c * pitch + 5` of `x_row`
        // for `c < chunks`, all below `(chunks - 1) * pitch + cover + 2 <= x_row.len()`
        // (`j + 3 <= cover`), and `3 * chunks <= w.len()` weight words.
        emit(j, &unsafe { block3(x.add(j), w, s, bias) });
    }
    let j = 3 * threes;
    // SAFETY: as above, with `j + last == cover`.
    match last {
        2 => emit(j, &unsafe { block2(x.add(j), w, s, bias) }),
        4 => emit(j, &unsafe { block4(x.add(j), w, s, bias) }),
        _ => {}
    }
    true
}

/// The 2-pixel block from `bias`.
///
/// # Safety
/// `s` as in [`row`]; for every chunk `c` of the `3 * (s >> 16) + 3`, words
/// `x + c * pitch .. + 4` and `w + 3 * c .. + 3` are readable.
#[inline(always)]
unsafe fn block2(x: *const i32, w: *const i32, s: u32, bias: i32) -> [i32; 2] {
    let (mut a0, mut a1) = (bias, bias);
    // SAFETY: the caller's contract covers every word the loop reads; it writes only
    // the named registers and the flags, and no memory.
    unsafe {
        core::arch::asm!(
            "2:",
            chunk2!(),
            chunk2!(),
            chunk2!(),
            "subs lr, lr, #0x10000",
            "bhs 2b",
            inout("r0") a0,
            inout("r1") a1,
            out("r2") _, out("r3") _, out("r4") _, out("r5") _,
            out("r8") _, out("r9") _, out("r10") _,
            inout("r11") x => _,
            inout("r12") w => _,
            inout("lr") s => _,
            options(nostack, readonly),
        );
    }
    [a0, a1]
}

/// The 3-pixel block from `bias`.
///
/// # Safety
/// As [`block2`], with 5 input words per chunk.
#[inline(always)]
unsafe fn block3(x: *const i32, w: *const i32, s: u32, bias: i32) -> [i32; 3] {
    let (mut a0, mut a1, mut a2) = (bias, bias, bias);
    // SAFETY: as in `block2`; r6 and r7, which operands may not name, are pushed
    // before the loop and popped after it (8 bytes below the stack pointer).
    unsafe {
        core::arch::asm!(
            "push {{r6, r7}}",
            "2:",
            chunk3!(),
            chunk3!(),
            chunk3!(),
            "subs lr, lr, #0x10000",
            "bhs 2b",
            "pop {{r6, r7}}",
            inout("r0") a0,
            inout("r1") a1,
            inout("r2") a2,
            out("r3") _, out("r4") _, out("r5") _,
            out("r8") _, out("r9") _, out("r10") _,
            inout("r11") x => _,
            inout("r12") w => _,
            inout("lr") s => _,
        );
    }
    [a0, a1, a2]
}

/// The 4-pixel block from `bias`.
///
/// # Safety
/// As [`block2`], with 6 input words per chunk.
#[inline(always)]
unsafe fn block4(x: *const i32, w: *const i32, s: u32, bias: i32) -> [i32; 4] {
    let (mut a0, mut a1, mut a2, mut a3) = (bias, bias, bias, bias);
    // SAFETY: as in `block3`.
    unsafe {
        core::arch::asm!(
            "push {{r6, r7}}",
            "2:",
            chunk4!(),
            chunk4!(),
            chunk4!(),
            "subs lr, lr, #0x10000",
            "bhs 2b",
            "pop {{r6, r7}}",
            inout("r0") a0,
            inout("r1") a1,
            inout("r2") a2,
            inout("r3") a3,
            out("r4") _, out("r5") _,
            out("r8") _, out("r9") _, out("r10") _,
            inout("r11") x => _,
            inout("r12") w => _,
            inout("lr") s => _,
        );
    }
    [a0, a1, a2, a3]
}
