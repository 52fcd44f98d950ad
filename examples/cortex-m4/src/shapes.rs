//! The measured layers of the Cortex-M4 issue, one line each per path:
//!
//! ```text
//! cm4 shape=<name> dtype=f32 path=<name> instr_per_mac=<x.xx> macs=<n> scratch_bytes=<n> weights_flash_bytes=<n>
//! ```
//!
//! `macs` are the direct convolution's (`H'*W'*C_out*|G|*C_in*nti*K*K`), so every
//! path's figure is per direct multiply-add; the timed call includes everything the
//! path does per inference (the blocked path's per-block packing, the direct path's
//! bank expansion). `scratch_bytes` is the RAM the path needs besides input and
//! output (for the Fourier path: its scratch plus the transformed weights, made at
//! boot); `weights_flash_bytes` the raw weights in flash. Each output is checked
//! against the host's f64 reference within the f32 rounding bound of its sum.
//!
//! Paths: `blocked` is what the core plan's `Auto` picks on this target
//! ([`gconv_core::Plan`]); `direct` the expanded-bank correlation from raw weights
//! (the bank expanded on every call, as this firmware did before the blocked
//! path); `fourier` the group-Fourier path with the portable GEMM kernel.

use cortex_m_semihosting::hprintln;
use gconv_core::conv::{group, lifting};
use gconv_core::fast::Kernel;
use gconv_core::{
    Algorithm, AlgorithmChoice, C4, ConvGeometry, ConvShape, D4, Domain, Group, Padding, Plan,
};

use crate::data::Shape;

/// The buffers the measurements share (RAM).
pub struct Buffers<'a> {
    pub input: &'a mut [f32],
    pub output: &'a mut [f32],
    pub scratch: &'a mut [f32],
}

/// f32 from little-endian bytes; `out` takes `bytes.len() / 4` values.
pub(crate) fn read_f32(bytes: &[u8], out: &mut [f32]) {
    for (v, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// `(outputs within tolerance, outputs, worst |y - ref| / tol)`.
pub(crate) fn compare(out: &[f32], s: &Shape) -> (usize, usize, f32) {
    let (mut ok, mut worst) = (0, 0.0f32);
    let pairs = s.expected.chunks_exact(4).zip(s.tolerance.chunks_exact(4));
    for (&y, (e, t)) in out.iter().zip(pairs) {
        let e = f32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let t = f32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let d = (y - e).abs();
        if d <= t {
            ok += 1;
        }
        let r = d / t;
        if !(r <= worst) {
            worst = r; // NaN sticks
        }
    }
    (ok, s.expected.len() / 4, worst)
}

/// Prints the `cm4` line of one path and its check; true when every output agrees.
#[allow(clippy::too_many_arguments)]
fn report(
    s: &Shape,
    path: &str,
    instructions: u64,
    geo: &ConvGeometry,
    scratch_bytes: usize,
    flash_bytes: usize,
    out: &[f32],
) -> bool {
    let macs = geo.macs() as u64;
    let per100 = (instructions * 100 + macs / 2) / macs;
    hprintln!(
        "cm4 shape={} dtype=f32 path={} instr_per_mac={}.{:02} macs={} scratch_bytes={} weights_flash_bytes={}",
        s.name,
        path,
        per100 / 100,
        per100 % 100,
        macs,
        scratch_bytes,
        flash_bytes
    );
    let (ok, n, worst) = compare(out, s);
    let pass = ok == n && out.len() == n;
    hprintln!(
        "  check {} {}: {}/{} outputs within the f32 bound of the f64 reference (worst |err|/bound {}) -> {}",
        s.name,
        path,
        ok,
        n,
        worst,
        if pass { "OK" } else { "FAIL" }
    );
    pass
}

/// Runs every path on every shape; true when all agree with the reference. Out of
/// line, so that its plans' stack is not part of the models' (measured before).
#[inline(never)]
pub fn run_all(buf: &mut Buffers, time: &mut dyn FnMut(&mut dyn FnMut()) -> u64) -> bool {
    let mut all = true;
    for s in crate::data::shapes::ALL.iter() {
        all &= match s.order {
            4 => run::<C4>(s, buf, time),
            8 => run::<D4>(s, buf, time),
            _ => false,
        };
    }
    all
}

fn run<G: Group>(
    s: &Shape,
    buf: &mut Buffers,
    time: &mut dyn FnMut(&mut dyn FnMut()) -> u64,
) -> bool {
    const F: usize = core::mem::size_of::<f32>();
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
    let geo = match shape.geometry::<G>(domain) {
        Ok(g) => g,
        Err(e) => {
            hprintln!("{}: invalid shape {:?}", s.name, e);
            return false;
        }
    };
    let (n_in, n_out) = (geo.input_len(), geo.output_len());
    if n_in > buf.input.len() || n_out > buf.output.len() {
        hprintln!("{}: buffers too small", s.name);
        return false;
    }
    let input = &mut buf.input[..n_in];
    read_f32(s.input, input);
    let input = &*input;
    let output = &mut buf.output[..n_out];
    let weight_bytes = s.weight.len() * F;
    let mut pass = true;

    // The core plan's choice (Auto: the blocked path on this target): raw weights
    // from flash are its prepared weights, one packed block of filters its scratch.
    let plan = match Plan::<G>::new(domain, &shape, AlgorithmChoice::Auto, Kernel::Portable) {
        Ok(p) => p,
        Err(e) => {
            hprintln!("{}: no plan: {:?}", s.name, e);
            return false;
        }
    };
    if plan.algorithm() != Algorithm::Blocked || plan.prepared_weights_len() != s.weight.len() {
        hprintln!(
            "{}: Auto chose {} on the Cortex-M4",
            s.name,
            plan.algorithm().name()
        );
        return false;
    }
    let need = plan.scratch_len();
    output.fill(f32::NAN);
    let mut result = Ok(());
    let scratch = &mut buf.scratch[..need];
    let n = time(&mut || result = plan.forward(input, s.weight, Some(s.bias), output, scratch));
    pass &= result.is_ok() && report(s, "blocked", n, &geo, need * F, weight_bytes, output);

    // The direct path: the whole bank expanded into scratch on every call.
    let need = geo.bank_len();
    output.fill(f32::NAN);
    let scratch = &mut buf.scratch[..need];
    let n = time(&mut || {
        result = if s.lifting {
            lifting::lifting_conv::<G>(&shape, input, s.weight, Some(s.bias), output, scratch)
        } else {
            group::group_conv::<G>(&shape, input, s.weight, Some(s.bias), output, scratch)
        }
    });
    pass &= result.is_ok() && report(s, "direct", n, &geo, need * F, weight_bytes, output);

    // The group-Fourier path: weights transformed once (not timed; they would be
    // computed on the host and stored in flash), scratch per call.
    match Plan::<G>::new(domain, &shape, AlgorithmChoice::Fourier, Kernel::Portable) {
        Ok(plan) => {
            let (wlen, slen) = (plan.prepared_weights_len(), plan.scratch_len());
            if wlen + slen > buf.scratch.len() {
                hprintln!(
                    "{}: fourier needs {} B of weights + {} B of scratch: not measured",
                    s.name,
                    wlen * F,
                    slen * F
                );
                return false;
            }
            let (packed, rest) = buf.scratch.split_at_mut(wlen);
            if let Err(e) = plan.prepare_weights(s.weight, packed, &mut []) {
                hprintln!("{}: fourier weights {:?}", s.name, e);
                return false;
            }
            let scratch = &mut rest[..slen];
            output.fill(f32::NAN);
            let n =
                time(&mut || result = plan.forward(input, packed, Some(s.bias), output, scratch));
            // RAM: the per-call scratch and the transformed weights (made at boot
            // here); flash: the raw weights they are made from.
            let ram = (slen + wlen) * F;
            pass &= result.is_ok() && report(s, "fourier", n, &geo, ram, weight_bytes, output);
        }
        Err(e) => {
            hprintln!("{}: no fourier plan: {:?}", s.name, e);
            pass = false;
        }
    }
    pass
}
