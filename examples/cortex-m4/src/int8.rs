//! The int8 measured layers: the five layers of the Cortex-M4 issue on gconv-core's
//! int8 DSP path (`gconv_core::quant::dsp`, `SMLAD` on pairs of input planes), one
//! line each:
//!
//! ```text
//! cm4 shape=<name> dtype=int8 path=dsp instr_per_mac=<x.xx> macs=<n> scratch_bytes=<n> weights_flash_bytes=<n>
//! ```
//!
//! `macs` are the direct convolution's; the timed call is the whole layer from raw
//! int8 weights in flash: the filters expanded and packed per pass, the input packed
//! per band, the multiply-adds, the requantization and the int8 stores.
//! `scratch_bytes` is the plan's scratch (within [`SCRATCH_WORDS`] 32-bit words);
//! `weights_flash_bytes` the raw int8 weights. Every output is compared with the
//! host's int8 output (the plain int8 kernel, bit-exact with TFLite's reference
//! kernels) **bit for bit**: the arithmetic is exact, so any difference is a bug.

use cortex_m_semihosting::hprintln;
use gconv_core::quant::dsp::{DspBlocking, DspPlan};
use gconv_core::quant::{Multiplier, Requant};
use gconv_core::{C4, ConvGeometry, ConvShape, D4, Domain, Error, Padding};

use crate::data::QShape;

/// The scratch budget of the DSP path: 8,192 bytes.
pub const SCRATCH_WORDS: usize = 2048;
/// The scratch buffer: the budget, or room for larger blockings when the feature
/// `dsp-blockings` times them.
const SCRATCH_CAP: usize = if cfg!(feature = "dsp-blockings") {
    16 * 1024
} else {
    SCRATCH_WORDS
};
/// The largest input (`a`: 10 x 4 x 28 x 28) and output (`lift-d4`: 10 x 8 x 28 x 28).
const IN_LEN: usize = 10 * 4 * 28 * 28;
const OUT_LEN: usize = 10 * 8 * 28 * 28;
/// At most this many output G-channels.
const MAX_CHANNELS: usize = 16;

fn geometry(s: &QShape) -> Result<ConvGeometry, Error> {
    let shape = ConvShape {
        batch: 1,
        in_channels: s.in_channels,
        out_channels: s.out_channels,
        height: s.size,
        width: s.size,
        kernel: s.kernel,
        stride: 1,
        padding: Padding::Same,
    };
    let domain = if s.lifting { Domain::Z2 } else { Domain::Group };
    if s.order == 8 {
        shape.geometry::<D4>(domain)
    } else {
        shape.geometry::<C4>(domain)
    }
}

/// Runs every int8 layer; true when every output equals the host's.
#[inline(never)]
pub fn run_all(time: &mut dyn FnMut(&mut dyn FnMut()) -> u64) -> bool {
    static mut INPUT: [i8; IN_LEN] = [0; IN_LEN];
    static mut OUTPUT: [i8; OUT_LEN] = [0; OUT_LEN];
    static mut SCRATCH: [i32; SCRATCH_CAP] = [0; SCRATCH_CAP];
    // SAFETY: `run_all` is called once, from `main`, with interrupts that do not
    // touch these buffers; no other reference to them exists.
    let (input, output, scratch) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(INPUT),
            &mut *core::ptr::addr_of_mut!(OUTPUT),
            &mut *core::ptr::addr_of_mut!(SCRATCH),
        )
    };
    let mut all = true;
    for s in crate::data::qshapes::ALL.iter() {
        let pass = run(s, input, output, scratch, time);
        if let Err(e) = pass {
            hprintln!("{} int8: gconv-core error {:?}", s.name, e);
        }
        all &= pass == Ok(true);
    }
    all
}

fn run(
    s: &QShape,
    input: &mut [i8],
    output: &mut [i8],
    scratch: &mut [i32],
    time: &mut dyn FnMut(&mut dyn FnMut()) -> u64,
) -> Result<bool, Error> {
    let geo = geometry(s)?;
    let (n_in, n_out) = (geo.input_len(), geo.output_len());
    if n_in > input.len() || n_out > output.len() || s.multipliers.len() > MAX_CHANNELS {
        hprintln!("{}: int8 buffers too small", s.name);
        return Ok(false);
    }
    let input = &mut input[..n_in];
    for (d, &b) in input.iter_mut().zip(s.input) {
        *d = b as i8;
    }
    let output = &mut output[..n_out];
    let mut ms = [Multiplier::ONE; MAX_CHANNELS];
    for (m, &(q, e)) in ms.iter_mut().zip(s.multipliers) {
        *m = Multiplier::from_parts(q, e)?;
    }
    let requant = Requant {
        input_zero_point: s.zp_in,
        output_zero_point: s.zp_out,
        multipliers: &ms[..s.multipliers.len()],
        relu: s.relu,
    };
    let plan = DspPlan::new(&geo, SCRATCH_WORDS)?;
    let full_scratch = &mut *scratch;
    let scratch = &mut full_scratch[..plan.scratch_len()];
    output.fill(0x55);
    let mut result = Ok(());
    let input = &*input;
    let n = time(&mut || {
        result = plan.forward(&requant, input, s.weight, Some(s.bias), output, scratch)
    });
    result?;
    let macs = geo.macs() as u64;
    let per100 = (n * 100 + macs / 2) / macs;
    hprintln!(
        "cm4 shape={} dtype=int8 path=dsp instr_per_mac={}.{:02} macs={} scratch_bytes={} weights_flash_bytes={}",
        s.name,
        per100 / 100,
        per100 % 100,
        macs,
        plan.scratch_len() * 4,
        s.weight.len()
    );
    let equal = output
        .iter()
        .zip(s.expected)
        .filter(|&(&y, &e)| y as u8 == e)
        .count();
    let mut pass = equal == n_out && s.expected.len() == n_out;
    let b = plan.blocking();
    hprintln!(
        "  check {} int8 dsp: {}/{} outputs bitwise equal to the host's -> {} ({} instructions; blocking: {} planes per pass, strips of {}, bands of {} rows)",
        s.name,
        equal,
        n_out,
        if pass { "OK" } else { "FAIL" },
        n,
        b.planes_per_pass,
        b.strip_width,
        b.band_rows
    );

    // Other blockings run the kernels the planner's choice may not: blocks of 2, 3 and
    // 4 pixels alone or together, one filter per pass, one-row bands, several strips.
    let mut same = 0;
    let mut tried = 0;
    for (per_pass, strip, rows) in OTHER_BLOCKINGS {
        let other = DspPlan::with_blocking(
            &geo,
            DspBlocking {
                planes_per_pass: per_pass,
                strip_width: strip,
                band_rows: rows,
            },
        )?;
        let Some(scratch) = full_scratch.get_mut(..other.scratch_len()) else {
            continue;
        };
        output.fill(0x55);
        other.forward(&requant, input, s.weight, Some(s.bias), output, scratch)?;
        tried += 1;
        if output.iter().zip(s.expected).all(|(&y, &e)| y as u8 == e) {
            same += 1;
        }
    }
    let others = tried > 0 && same == tried;
    hprintln!(
        "  check {} int8 dsp, other blockings: {}/{} bitwise equal to the host's -> {} (strips of 1-5 and 7 columns, bands of 1-3 rows, 1-5 filters per pass)",
        s.name,
        same,
        tried,
        if others { "OK" } else { "FAIL" }
    );
    pass &= others;

    #[cfg(feature = "dsp-blockings")]
    blockings(s, &geo, &requant, input, output, full_scratch, time)?;
    Ok(pass)
}

/// Times the layer on a grid of blockings that fit the scratch (feature
/// `dsp-blockings`), one line each:
///
/// ```text
/// dsp-blocking shape=<name> planes_per_pass=<n> strip=<n> rows=<n> words=<n> instructions=<n>
/// ```
#[cfg(feature = "dsp-blockings")]
fn blockings(
    s: &QShape,
    geo: &ConvGeometry,
    requant: &Requant<'_>,
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i32],
    time: &mut dyn FnMut(&mut dyn FnMut()) -> u64,
) -> Result<(), Error> {
    let planes = geo.out_channels() * geo.nto();
    for per_pass in [1, 2, 3, 4, 6, 8, 16, 32, 80] {
        for strip in [2, 3, 4, 5, 7, 9, 14, 16, 28] {
            for rows in [1, 2, 3, 4, 8, 28] {
                if per_pass > planes || strip > geo.out_width() || rows > geo.out_height() {
                    continue;
                }
                let blocking = DspBlocking {
                    planes_per_pass: per_pass,
                    strip_width: strip,
                    band_rows: rows,
                };
                let plan = DspPlan::with_blocking(geo, blocking)?;
                let Some(scratch) = scratch.get_mut(..plan.scratch_len()) else {
                    continue;
                };
                let mut result = Ok(());
                let n = time(&mut || {
                    result = plan.forward(requant, input, s.weight, Some(s.bias), output, scratch)
                });
                result?;
                hprintln!(
                    "dsp-blocking shape={} planes_per_pass={} strip={} rows={} words={} instructions={}",
                    s.name,
                    per_pass,
                    strip,
                    rows,
                    plan.scratch_len(),
                    n
                );
            }
        }
    }
    Ok(())
}

/// `(filters per pass, strip width, band rows)` run besides the planner's choice:
/// strips of 1, 2, 4 and 5 columns are a 2-pixel block, a 4-pixel block and 3 + 2.
const OTHER_BLOCKINGS: [(usize, usize, usize); 5] =
    [(1, 1, 1), (1, 2, 1), (3, 4, 2), (2, 5, 3), (5, 7, 1)];
