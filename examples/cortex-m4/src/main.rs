//! gconv-core on a Cortex-M4F (QEMU `mps2-an386`): a small C4 and a small D4 G-CNN
//!
//! ```text
//! 8x8 image -> lift Z2->G 3x3 (1 -> 4) -> ReLU -> G->G 3x3 (4 -> 4) -> ReLU
//!           -> group max pool -> global average pool -> dense 4 -> 10
//! ```
//!
//! * Raw weights and the input are `static` arrays in flash, generated on the host by
//!   `build.rs` with gconv-std, together with the host's expected output.
//! * No heap: every buffer is a `static mut` of `main` (cortex-m-rt turns them into
//!   `&'static mut`), sized at compile time from gconv-core's `const fn` geometry.
//! * Bank choice: **expanded per call**. Each convolution gets the raw weights and one
//!   shared scratch buffer sized for the largest bank (the D4->D4 bank); gconv-core
//!   expands into it on every call. RAM cost: max over layers of the bank, instead of
//!   the sum over layers of the banks when expanding once at boot. Flash holds only the
//!   raw weights (|G| times smaller than the bank). Both figures are printed.
//! * Per-layer instruction counts from SysTick under `qemu -icount shift=6`
//!   (instructions = ticks * 40 / 2^6, see `/work/shared/MCU.md`).
//! * Exits with status 0 only when both models agree with the host within
//!   `REL_TOL * max|y_host|`.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use gconv_core::conv::{expand, group, lifting};
use gconv_core::layers::{self, Reduce};
use gconv_core::{C4, ConvShape, D4, Domain, Group, Padding};
use panic_semihosting as _;

#[allow(clippy::all, missing_docs)]
mod data {
    include!(concat!(env!("OUT_DIR"), "/data.rs"));
}

const H: usize = 8;
const W: usize = 8;
const C: usize = 4;
const CLASSES: usize = 10;
const PLANE: usize = H * W;

/// Relative tolerance: |y_target - y_host| <= REL_TOL * max|y_host|. Every output is a
/// sum of at most 4*8*9 = 288 products (D4->D4), then a mean of 64 values and a
/// 4-term dot product; f32 rounding of such sums stays below ~400 * 2^-24 ~ 2.4e-5
/// relative, so 1e-4 leaves room for a target that legitimately sums in another order
/// while any indexing or layout error (an O(1) relative change) fails.
const REL_TOL: f32 = 1e-4;

/// QEMU `-icount shift=N` the script uses: each instruction is 2^N ns; SysTick (core
/// clock) runs at 25 MHz in mps2-an386, i.e. 40 ns per tick.
const ICOUNT_SHIFT: u32 = 6;

const LIFT: ConvShape = ConvShape {
    batch: 1,
    in_channels: 1,
    out_channels: C,
    height: H,
    width: W,
    kernel: 3,
    stride: 1,
    padding: Padding::Same,
};
const GCONV: ConvShape = ConvShape {
    in_channels: C,
    ..LIFT
};

/// `Result::unwrap` for `const` contexts (a bad shape is a compile error).
const fn ok(r: Result<usize, gconv_core::Error>) -> usize {
    match r {
        Ok(v) => v,
        Err(_) => panic!("invalid layer shape"),
    }
}
const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// Activation buffer: the largest conv output, `C * |G| * H * W` for D4.
const ACT_LEN: usize = max(
    ok(match lifting::lifting_conv_geometry::<D4>(&LIFT) {
        Ok(g) => Ok(g.output_len()),
        Err(e) => Err(e),
    }),
    ok(match lifting::lifting_conv_geometry::<C4>(&LIFT) {
        Ok(g) => Ok(g.output_len()),
        Err(e) => Err(e),
    }),
);
/// Shared scratch: the largest expanded bank of all four convolutions.
const SCRATCH_LEN: usize = max(
    max(
        ok(lifting::lifting_conv_scratch_len::<C4>(&LIFT)),
        ok(group::group_conv_scratch_len::<C4>(&GCONV)),
    ),
    max(
        ok(lifting::lifting_conv_scratch_len::<D4>(&LIFT)),
        ok(group::group_conv_scratch_len::<D4>(&GCONV)),
    ),
);

// ---------------------------------------------------------------- timing (SysTick)

static WRAPS: AtomicU32 = AtomicU32::new(0);

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::Relaxed);
}

/// Ticks since the counter started, extended past 24 bits by the wrap count.
fn now() -> u64 {
    loop {
        let w = WRAPS.load(Ordering::Relaxed);
        let c = SYST::get_current();
        if WRAPS.load(Ordering::Relaxed) == w {
            return ((w as u64) << 24) + (0x00FF_FFFF - c as u64);
        }
    }
}

fn instructions(ticks: u64) -> u64 {
    ticks * 40 / (1 << ICOUNT_SHIFT)
}

/// One timed step.
#[derive(Clone, Copy)]
struct Cost {
    name: &'static str,
    ticks: u64,
    macs: usize,
}

struct Timer {
    costs: [Cost; 12],
    len: usize,
    overhead: u64,
}

impl Timer {
    fn time<R>(&mut self, name: &'static str, macs: usize, f: impl FnOnce() -> R) -> R {
        let t0 = now();
        let r = f();
        let t1 = now();
        if self.len < self.costs.len() {
            self.costs[self.len] = Cost {
                name,
                ticks: (t1 - t0).saturating_sub(self.overhead),
                macs,
            };
            self.len += 1;
        }
        r
    }

    fn print(&self, model: &str) {
        hprintln!(
            "cost {}: instructions per layer (qemu -icount shift={}; timer overhead {} ticks subtracted)",
            model,
            ICOUNT_SHIFT,
            self.overhead
        );
        hprintln!(
            "  {:<34} {:>10} {:>8} {:>10}",
            "layer",
            "instr",
            "MACs",
            "instr/MAC"
        );
        let mut total = 0;
        for c in &self.costs[..self.len] {
            let n = instructions(c.ticks);
            if !c.name.starts_with("  ") {
                total += n;
            }
            if c.macs > 0 {
                let per100 = n * 100 / c.macs as u64;
                hprintln!(
                    "  {:<34} {:>10} {:>8} {:>7}.{:02}",
                    c.name,
                    n,
                    c.macs,
                    per100 / 100,
                    per100 % 100
                );
            } else {
                hprintln!("  {:<34} {:>10} {:>8} {:>10}", c.name, n, "-", "-");
            }
        }
        hprintln!("  {:<34} {:>10}", "total forward", total);
    }
}

// ---------------------------------------------------------------- the model

struct Weights {
    lift_w: &'static [f32],
    lift_b: &'static [f32],
    gconv_w: &'static [f32],
    gconv_b: &'static [f32],
    dense_w: &'static [f32],
    dense_b: &'static [f32],
    expected: &'static [f32],
}

struct Buffers<'a> {
    a: &'a mut [f32],
    b: &'a mut [f32],
    scratch: &'a mut [f32],
}

/// Runs one model on `data::INPUT` and returns its output.
fn forward<G: Group>(
    wt: &Weights,
    buf: &mut Buffers,
    timer: &mut Timer,
) -> Result<[f32; CLASSES], gconv_core::Error> {
    let lift_geo = lifting::lifting_conv_geometry::<G>(&LIFT)?;
    let gconv_geo = group::group_conv_geometry::<G>(&GCONV)?;
    let n = lift_geo.output_len();
    let (a, b) = (&mut buf.a[..n], &mut buf.b[..n]);
    let scratch = &mut *buf.scratch;
    let pooled_len = C * PLANE;
    let mut gap = [0.0f32; C];
    let mut y = [0.0f32; CLASSES];

    timer.time(
        "lift Z2->G 3x3 1->4 (incl. expand)",
        lift_geo.macs(),
        || lifting::lifting_conv::<G>(&LIFT, &data::INPUT, wt.lift_w, Some(wt.lift_b), a, scratch),
    )?;
    timer.time("relu", 0, || layers::relu(a));
    timer.time("G->G 3x3 4->4 (incl. expand)", gconv_geo.macs(), || {
        group::group_conv::<G>(&GCONV, a, wt.gconv_w, Some(wt.gconv_b), b, scratch)
    })?;
    timer.time("relu", 0, || layers::relu(b));
    timer.time("group max pool", 0, || {
        layers::group_pool(Reduce::Max, C, G::ORDER, PLANE, b, &mut a[..pooled_len])
    })?;
    timer.time("global avg pool", 0, || {
        layers::global_avg_pool(C, PLANE, &a[..pooled_len], &mut gap)
    })?;
    timer.time("dense 4->10", C * CLASSES, || {
        layers::dense(1, C, CLASSES, &gap, wt.dense_w, Some(wt.dense_b), &mut y)
    })?;
    // The expansion alone (not part of the forward total: indented names).
    timer.time("  of which: expand lift bank", 0, || {
        expand::expand_filter_bank::<G>(
            Domain::Z2,
            C,
            1,
            3,
            wt.lift_w,
            &mut scratch[..lift_geo.bank_len()],
        )
    })?;
    timer.time("  of which: expand G->G bank", 0, || {
        expand::expand_filter_bank::<G>(
            Domain::Group,
            C,
            C,
            3,
            wt.gconv_w,
            &mut scratch[..gconv_geo.bank_len()],
        )
    })?;
    Ok(y)
}

/// Runs, prints and checks one model; true when it agrees with the host.
fn check<G: Group>(name: &str, wt: &Weights, buf: &mut Buffers) -> bool {
    let t0 = now();
    let overhead = now() - t0;
    let mut timer = Timer {
        costs: [Cost {
            name: "",
            ticks: 0,
            macs: 0,
        }; 12],
        len: 0,
        overhead,
    };
    let y = match forward::<G>(wt, buf, &mut timer) {
        Ok(y) => y,
        Err(e) => {
            hprintln!("{}: gconv-core error {:?}", name, e);
            return false;
        }
    };
    let scale = wt.expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let mut max_diff = 0.0f32;
    let mut bitwise = 0;
    for (&t, &h) in y.iter().zip(wt.expected) {
        let d = (t - h).abs();
        if !(d <= max_diff) {
            max_diff = d; // NaN sticks
        }
        if t.to_bits() == h.to_bits() {
            bitwise += 1;
        }
    }
    let ok = y.len() == wt.expected.len() && max_diff <= REL_TOL * scale;
    hprintln!("{} target: {:?}", name, y);
    hprintln!("{} host:   {:?}", name, wt.expected);
    hprintln!(
        "{}: max |target - host| = {:e}, tolerance {:e} (= {:e} * max|y| {:e}), {}/{} bitwise equal -> {}",
        name,
        max_diff,
        REL_TOL * scale,
        REL_TOL,
        scale,
        bitwise,
        y.len(),
        if ok { "OK" } else { "FAIL" }
    );
    timer.print(name);
    ok
}

// ---------------------------------------------------------------- stack high-water mark

const PAINT: u32 = 0xDEAD_BEEF;
/// How far below the current stack pointer the stack is painted.
const PAINT_BYTES: usize = 64 * 1024;

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
fn paint_stack() {
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
fn stack_high_water() -> usize {
    let (lo, top) = paint_bounds();
    let mut p = lo;
    // SAFETY: reads of RAM words in [lo, top), word aligned.
    while p < top && unsafe { (p as *const u32).read_volatile() } == PAINT {
        p += 4;
    }
    top - p
}

// ---------------------------------------------------------------- entry

#[entry]
fn main() -> ! {
    static mut ACT_A: [f32; ACT_LEN] = [0.0; ACT_LEN];
    static mut ACT_B: [f32; ACT_LEN] = [0.0; ACT_LEN];
    static mut SCRATCH: [f32; SCRATCH_LEN] = [0.0; SCRATCH_LEN];

    paint_stack();
    let mut cp = cortex_m::Peripherals::take().unwrap();
    cp.SYST.set_clock_source(SystClkSource::Core);
    cp.SYST.set_reload(0x00FF_FFFF);
    cp.SYST.clear_current();
    cp.SYST.enable_interrupt();
    cp.SYST.enable_counter();

    let mut buf = Buffers {
        a: ACT_A,
        b: ACT_B,
        scratch: SCRATCH,
    };
    let c4 = Weights {
        lift_w: &data::c4::LIFT_W,
        lift_b: &data::c4::LIFT_B,
        gconv_w: &data::c4::GCONV_W,
        gconv_b: &data::c4::GCONV_B,
        dense_w: &data::c4::DENSE_W,
        dense_b: &data::c4::DENSE_B,
        expected: &data::c4::EXPECTED,
    };
    let d4 = Weights {
        lift_w: &data::d4::LIFT_W,
        lift_b: &data::d4::LIFT_B,
        gconv_w: &data::d4::GCONV_W,
        gconv_b: &data::d4::GCONV_B,
        dense_w: &data::d4::DENSE_W,
        dense_b: &data::d4::DENSE_B,
        expected: &data::d4::EXPECTED,
    };
    let ok_c4 = check::<C4>("C4", &c4, &mut buf);
    let ok_d4 = check::<D4>("D4", &d4, &mut buf);
    let stack = stack_high_water();

    footprint(stack);
    if ok_c4 && ok_d4 {
        hprintln!("RESULT: OK (C4 and D4 agree with the host)");
        debug::exit(debug::EXIT_SUCCESS);
    } else {
        hprintln!("RESULT: FAIL (C4 {}, D4 {})", ok_c4, ok_d4);
        debug::exit(debug::EXIT_FAILURE);
    }
    loop {
        cortex_m::asm::nop();
    }
}

/// RAM and flash the model needs, in bytes, from the geometry and the buffers.
fn footprint(stack: usize) {
    const F: usize = core::mem::size_of::<f32>();
    hprintln!("footprint (bytes; f32 = 4 B):");
    hprintln!(
        "  {:<6} {:<8} {:>10} {:>14} {:>14}",
        "model",
        "layer",
        "raw (flash)",
        "bank (scratch)",
        "bank/raw"
    );
    let rows = |model: &str, layer: &str, raw: usize, bank: usize| {
        hprintln!(
            "  {:<6} {:<8} {:>10} {:>14} {:>14}",
            model,
            layer,
            raw * F,
            bank * F,
            bank / raw
        );
    };
    let lc4 = ok(lifting::lifting_conv_scratch_len::<C4>(&LIFT));
    let gc4 = ok(group::group_conv_scratch_len::<C4>(&GCONV));
    let ld4 = ok(lifting::lifting_conv_scratch_len::<D4>(&LIFT));
    let gd4 = ok(group::group_conv_scratch_len::<D4>(&GCONV));
    rows("C4", "lift", data::c4::LIFT_W.len(), lc4);
    rows("C4", "G->G", data::c4::GCONV_W.len(), gc4);
    rows("D4", "lift", data::d4::LIFT_W.len(), ld4);
    rows("D4", "G->G", data::d4::GCONV_W.len(), gd4);
    let c4_params = (data::c4::LIFT_W.len()
        + data::c4::LIFT_B.len()
        + data::c4::GCONV_W.len()
        + data::c4::GCONV_B.len()
        + data::c4::DENSE_W.len()
        + data::c4::DENSE_B.len())
        * F;
    let d4_params = (data::d4::LIFT_W.len()
        + data::d4::LIFT_B.len()
        + data::d4::GCONV_W.len()
        + data::d4::GCONV_B.len()
        + data::d4::DENSE_W.len()
        + data::d4::DENSE_B.len())
        * F;
    hprintln!(
        "  all parameters in flash: C4 {} B, D4 {} B; input {} B",
        c4_params,
        d4_params,
        data::INPUT.len() * F
    );
    hprintln!(
        "  scratch, expanded per call (this firmware): max bank = {} B",
        SCRATCH_LEN * F
    );
    hprintln!(
        "  scratch, expanded once at boot (alternative): C4 {} B + D4 {} B",
        (lc4 + gc4) * F,
        (ld4 + gd4) * F
    );
    hprintln!(
        "  activations: 2 x {} B (ping-pong, sized for D4)",
        ACT_LEN * F
    );
    hprintln!(
        "  stack high-water mark: {} B (painted {} B)",
        stack,
        PAINT_BYTES
    );
}
