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

/// Runs the `K = 3` block kernel when it applies (`k == 3`, 2 to 4 pixels, a chunk
/// count that is a positive multiple of 3 below `3 * 2^16`, a pitch below
/// `2^14` words, and slices long enough for every word the loop reads) and returns
/// true; false leaves `acc` untouched for the portable kernel.
#[inline]
pub(super) fn block(
    x: &[i32],
    pitch: usize,
    w: &[i32],
    k: usize,
    chunks: usize,
    acc: &mut [i32],
) -> bool {
    let np = acc.len();
    let iterations = chunks / 3;
    let fits = k == 3
        && (2..=4).contains(&np)
        && chunks % 3 == 0
        && (1..=1 << 16).contains(&iterations)
        && pitch < 1 << 14
        && w.len() >= 3 * chunks
        && x.len() >= (chunks - 1) * pitch + np + 2;
    if !fits {
        return false;
    }
    // Low half: the pitch in bytes; high half: iterations left after the first.
    let s = (((iterations - 1) << 16) | (pitch * 4)) as u32;
    let xp = x.as_ptr();
    let wp = w.as_ptr();
    match acc {
        [a0, a1] => {
            // SAFETY: the loop reads `chunks` chunks of 4 words at `xp + c * pitch`,
            // the last ending at word `(chunks - 1) * pitch + 4 <= x.len()`, and
            // `3 * chunks <= w.len()` weight words; it writes only the named
            // registers (r8-r12 and lr clobbered) and the flags, and no memory.
            unsafe {
                core::arch::asm!(
                    "2:",
                    chunk2!(),
                    chunk2!(),
                    chunk2!(),
                    "subs lr, lr, #0x10000",
                    "bhs 2b",
                    inout("r0") *a0,
                    inout("r1") *a1,
                    out("r2") _, out("r3") _, out("r4") _, out("r5") _,
                    out("r8") _, out("r9") _, out("r10") _,
                    inout("r11") xp => _,
                    inout("r12") wp => _,
                    inout("lr") s => _,
                    options(nostack, readonly),
                );
            }
        }
        [a0, a1, a2] => {
            // SAFETY: as above with 5-word chunks (the last ends at word
            // `(chunks - 1) * pitch + 5 <= x.len()`); r6 and r7, which operands may
            // not name, are pushed before the loop and popped after it, so the only
            // memory written is the 8 bytes below the stack pointer, restored.
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
                    inout("r0") *a0,
                    inout("r1") *a1,
                    inout("r2") *a2,
                    out("r3") _, out("r4") _, out("r5") _,
                    out("r8") _, out("r9") _, out("r10") _,
                    inout("r11") xp => _,
                    inout("r12") wp => _,
                    inout("lr") s => _,
                );
            }
        }
        [a0, a1, a2, a3] => {
            // SAFETY: as for 3 pixels, with 6-word chunks (the last ends at word
            // `(chunks - 1) * pitch + 6 <= x.len()`).
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
                    inout("r0") *a0,
                    inout("r1") *a1,
                    inout("r2") *a2,
                    inout("r3") *a3,
                    out("r4") _, out("r5") _,
                    out("r8") _, out("r9") _, out("r10") _,
                    inout("r11") xp => _,
                    inout("r12") wp => _,
                    inout("lr") s => _,
                );
            }
        }
        _ => return false,
    }
    true
}
