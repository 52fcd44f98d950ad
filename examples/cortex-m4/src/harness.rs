//! What both firmware binaries share: instruction counts from SysTick under QEMU's
//! `-icount` and the painted-stack high-water mark.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;

/// QEMU `-icount shift=N` the script uses: each instruction is 2^N ns; SysTick (core
/// clock) runs at 25 MHz in mps2-an386, i.e. 40 ns per tick.
pub const ICOUNT_SHIFT: u32 = 6;

// ---------------------------------------------------------------- timing (SysTick)

static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// Ticks since the counter started, extended past 24 bits by the wrap count.
pub fn now() -> u64 {
    loop {
        let w = WRAPS.load(Ordering::Relaxed);
        let c = SYST::get_current();
        if WRAPS.load(Ordering::Relaxed) == w {
            return ((w as u64) << 24) + (0x00FF_FFFF - c as u64);
        }
    }
}

pub fn instructions(ticks: u64) -> u64 {
    ticks * 40 / (1 << ICOUNT_SHIFT)
}

/// Starts SysTick as a free-running 24-bit counter of core clock ticks, extended by
/// the wrap interrupt.
pub fn start_timer(syst: &mut SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(0x00FF_FFFF);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

// ---------------------------------------------------------------- stack high-water mark

const PAINT: u32 = 0xDEAD_BEEF;
/// How far below the current stack pointer the stack is painted.
pub const PAINT_BYTES: usize = 64 * 1024;

unsafe extern "C" {
    static _stack_start: u32;
    static __sheap: u32;
}

fn paint_bounds() -> (usize, usize) {
    let top = &raw const _stack_start as usize;
    let heap = &raw const __sheap as usize;
    (heap.max(top - PAINT_BYTES), top)
}

/// Paints the stack from `PAINT_BYTES` below its top up to 64 bytes below the current SP.
#[inline(never)]
pub fn paint_stack() {
    let (lo, _) = paint_bounds();
    let sp = cortex_m::register::msp::read() as usize - 64;
    let mut p = lo;
    while p < sp {
        // SAFETY: [lo, sp) is RAM between the end of the statics and the live stack,
        // unused by anything; word aligned.
        unsafe { (p as *mut u32).write_volatile(PAINT) };
        p += 4;
    }
}

/// Bytes of stack ever used since `paint_stack` (the lowest overwritten word).
pub fn stack_high_water() -> usize {
    let (lo, top) = paint_bounds();
    let mut p = lo;
    // SAFETY: reads of RAM words in [lo, top), word aligned.
    while p < top && unsafe { (p as *const u32).read_volatile() } == PAINT {
        p += 4;
    }
    top - p
}
