//! Every entry point that writes validates everything first: given arguments that
//! make it fail, it returns the error with its output (and its scratch) untouched,
//! bit for bit. The buffers start as NaNs with a distinct payload per index (a value
//! no computation writes), and are compared bitwise after the error.
//!
//! Each case has an output of the right length and one other argument wrong (bias,
//! weights, scratch, the tile or row range, one plane of a row split), so that the
//! entry point could write the output before finding the error: these fail on a body
//! that writes and then checks (a check moved after the loop, or a `?` in the middle
//! of the images, the pixel blocks or the tiles).

use std::ops::Range;

use gconv_core::fast::{FastPlan, Kernel};
use gconv_core::fourier::{FourierPlan, ImagePart};
use gconv_core::plan::{AlgorithmChoice, Plan};
use gconv_core::quant::Multiplier;
use gconv_core::quant::Requant;
use gconv_core::quant::fast::{QFastPlan, QKernel};
use gconv_core::{C4, ConvShape, D4, Domain, Error, Group, Padding};

/// NaN with payload `i`: the sentinel at index `i`.
fn sentinel(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| f32::from_bits(0x7fc0_0000 | (i as u32 & 0x003f_ffff)))
        .collect()
}

/// Whether `buf` still holds [`sentinel`] bit for bit; names the first changed index.
fn assert_untouched(buf: &[f32], what: &str) {
    let expected = sentinel(buf.len());
    if let Some(i) = (0..buf.len()).find(|&i| buf[i].to_bits() != expected[i].to_bits()) {
        panic!("{what}: index {i} of {} written on error", buf.len());
    }
}

/// Small deterministic values in [-1, 1).
fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// Layers with two images (so that a body failing on the second would have written
/// the first), odd sizes and more than one pixel block for the Fourier GEMMs.
fn shapes() -> [(Domain, ConvShape); 3] {
    let shape = |in_channels, out_channels, size, kernel| ConvShape {
        batch: 2,
        in_channels,
        out_channels,
        height: size,
        width: size,
        kernel,
        stride: 1,
        padding: Padding::symmetric(1),
    };
    [
        (Domain::Z2, shape(3, 6, 13, 3)),
        (Domain::Group, shape(2, 5, 19, 3)),
        (Domain::Group, shape(3, 4, 9, 5)),
    ]
}

fn fast_path<G: Group>(domain: Domain, shape: &ConvShape) {
    let geo = shape.geometry::<G>(domain).unwrap();
    let plan = FastPlan::new(&geo).unwrap();
    let x = values(geo.input_len(), 1);
    let bank = values(plan.packed_bank_len(), 2);
    let bias = values(geo.bias_len(), 3);
    let scratch_len = plan.packed_input_len();
    let long_bias = values(geo.bias_len() + 1, 4);
    // (bank, bias, scratch) lengths, one of them wrong.
    let cases: [(usize, usize, usize); 4] = [
        (bank.len() - 1, bias.len(), scratch_len),
        (bank.len(), bias.len() - 1, scratch_len),
        (bank.len(), bias.len() + 1, scratch_len),
        (bank.len(), bias.len(), scratch_len - 1),
    ];
    for (bank_len, bias_len, scratch_len) in cases {
        let mut out = sentinel(geo.output_len());
        let mut scratch = sentinel(scratch_len);
        let b = Some(&long_bias[..bias_len]);
        let r = plan.forward(&x, &bank[..bank_len], b, &mut out, &mut scratch);
        assert!(matches!(r, Err(Error::BufferLength { .. })), "{r:?}");
        assert_untouched(&out, "FastPlan::forward output");
        assert_untouched(&scratch, "FastPlan::forward scratch");
    }

    // `compute`: a tile range past the planes, a bias too short, a packed input too
    // short; `out` has the length of the tiles asked.
    let mut packed = sentinel(plan.packed_input_len());
    plan.pack_input(&x[..plan.image_input_len()], &mut packed)
        .unwrap();
    let plane = geo.out_height() * geo.out_width();
    let tiles = plan.plane_tiles();
    let mr = plan.image_output_len() / plane / tiles;
    let compute_cases: [(Range<usize>, usize, usize); 3] = [
        (0..tiles + 1, bias.len(), packed.len()),
        (0..tiles, bias.len() - 1, packed.len()),
        (1..tiles, bias.len(), packed.len() - 1),
    ];
    for (t, bias_len, packed_len) in compute_cases {
        let mut out = sentinel(t.len() * mr * plane);
        let r = plan.compute(
            Kernel::compiled(),
            &packed[..packed_len],
            &bank,
            Some(&bias[..bias_len]),
            &mut out,
            t,
        );
        assert!(r.is_err(), "{r:?}");
        assert_untouched(&out, "FastPlan::compute output");
    }

    // Packing: the destination untouched when the source has the wrong length.
    let mut packed = sentinel(plan.packed_input_len());
    assert!(
        plan.pack_input(&x[1..plan.image_input_len()], &mut packed)
            .is_err()
    );
    assert_untouched(&packed, "FastPlan::pack_input");
    let mut packed_plane = sentinel(plan.packed_plane_len());
    let hw = geo.height() * geo.width();
    assert!(plan.pack_plane(&x[..hw - 1], &mut packed_plane).is_err());
    assert_untouched(&packed_plane, "FastPlan::pack_plane");
    let raw_bank = values(geo.bank_len() - 1, 5);
    let mut packed_bank = sentinel(plan.packed_bank_len());
    assert!(plan.pack_bank(&raw_bank, &mut packed_bank).is_err());
    assert_untouched(&packed_bank, "FastPlan::pack_bank");
}

fn fourier_path<G: Group>(domain: Domain, shape: &ConvShape) {
    let geo = shape.geometry::<G>(domain).unwrap();
    let plan = FourierPlan::new(&geo).unwrap();
    let x = values(geo.input_len(), 6);
    let raw = values(geo.weight_len(), 7);
    let mut w = sentinel(plan.packed_weights_len());
    plan.pack_weights(&raw[1..], &mut w).unwrap_err();
    assert_untouched(&w, "FourierPlan::pack_weights");
    plan.pack_weights(&raw, &mut w).unwrap();
    let bias = values(geo.bias_len(), 8);
    let kernel = Kernel::compiled();
    let cases: [(usize, usize, usize); 3] = [
        (w.len() - 1, bias.len(), plan.scratch_len()),
        (w.len(), bias.len() - 1, plan.scratch_len()),
        (w.len(), bias.len(), plan.scratch_len() - 1),
    ];
    for (w_len, bias_len, scratch_len) in cases {
        let mut out = sentinel(geo.output_len());
        let mut scratch = sentinel(scratch_len);
        let b = Some(&bias[..bias_len]);
        let r = plan.forward(kernel, &x, &w[..w_len], b, &mut out, &mut scratch);
        assert!(matches!(r, Err(Error::BufferLength { .. })), "{r:?}");
        assert_untouched(&out, "FourierPlan::forward output");
        assert_untouched(&scratch, "FourierPlan::forward scratch");
    }

    // One image by channel groups: a range past the groups, and a short scratch.
    let image = &x[..geo.input_len() / geo.batch()];
    let per_group = 4 * geo.nto() * geo.out_height() * geo.out_width();
    let groups = plan.channel_groups();
    for (g, scratch_len) in [(0..groups + 1, plan.scratch_len()), (0..groups, 3)] {
        let channels = (g.end * 4).min(geo.out_channels());
        let mut out = sentinel(channels * per_group / 4);
        let mut scratch = sentinel(scratch_len);
        let part = ImagePart::Channels {
            groups: g,
            out: &mut out,
        };
        let r = plan.forward_image(kernel, image, &w, Some(&bias), part, &mut scratch);
        assert!(r.is_err(), "{r:?}");
        assert_untouched(&out, "FourierPlan::forward_image (channels) output");
        assert_untouched(&scratch, "FourierPlan::forward_image (channels) scratch");
    }

    // One image by rows: the last plane one value short, so that every plane before
    // it could be written before the error.
    let (oh, ow) = (geo.out_height(), geo.out_width());
    let rows = 1..oh - 1;
    let planes_n = geo.out_channels() * geo.nto();
    let mut planes: Vec<Vec<f32>> = (0..planes_n)
        .map(|p| sentinel(rows.len() * ow - usize::from(p + 1 == planes_n)))
        .collect();
    let mut slices: Vec<&mut [f32]> = planes.iter_mut().map(|p| &mut p[..]).collect();
    let mut scratch = sentinel(plan.scratch_len());
    let part = ImagePart::Rows {
        rows: rows.clone(),
        planes: &mut slices,
    };
    let r = plan.forward_image(kernel, image, &w, Some(&bias), part, &mut scratch);
    assert!(matches!(r, Err(Error::BufferLength { .. })), "{r:?}");
    for p in &planes {
        assert_untouched(p, "FourierPlan::forward_image (rows) plane");
    }
    assert_untouched(&scratch, "FourierPlan::forward_image (rows) scratch");
}

fn plans<G: Group>(domain: Domain, shape: &ConvShape) {
    use AlgorithmChoice::{Blocked, Direct, Fast, Fourier};
    let geo = shape.geometry::<G>(domain).unwrap();
    let x = values(geo.input_len(), 9);
    let raw = values(geo.weight_len(), 10);
    let bias = values(geo.bias_len(), 11);
    for choice in [Direct, Blocked, Fast, Fourier] {
        let plan = Plan::<G>::new(domain, shape, choice, Kernel::compiled()).unwrap();
        let mut prepared = sentinel(plan.prepared_weights_len());
        let mut prep_scratch = sentinel(plan.prepare_scratch_len());
        let r = plan.prepare_weights(&raw[1..], &mut prepared, &mut prep_scratch);
        assert!(r.is_err(), "{r:?}");
        assert_untouched(&prepared, "Plan::prepare_weights prepared");
        assert_untouched(&prep_scratch, "Plan::prepare_weights scratch");
        plan.prepare_weights(&raw, &mut prepared, &mut prep_scratch)
            .unwrap();
        let scratch_len = plan.scratch_len();
        let mut cases = vec![
            (prepared.len() - 1, bias.len(), scratch_len),
            (prepared.len(), bias.len() - 1, scratch_len),
        ];
        if scratch_len > 0 {
            cases.push((prepared.len(), bias.len(), scratch_len - 1));
        }
        for (p_len, bias_len, scratch_len) in cases {
            let mut out = sentinel(geo.output_len());
            let mut scratch = sentinel(scratch_len);
            let b = Some(&bias[..bias_len]);
            let r = plan.forward(&x, &prepared[..p_len], b, &mut out, &mut scratch);
            assert!(
                matches!(r, Err(Error::BufferLength { .. })),
                "{choice:?}: {r:?}"
            );
            assert_untouched(&out, "Plan::forward output");
            assert_untouched(&scratch, "Plan::forward scratch");
        }
    }
}

fn int8_fast<G: Group>(domain: Domain, shape: &ConvShape) {
    let plan = QFastPlan::new::<G>(domain, shape, QKernel::compiled()).unwrap();
    let geo = shape.geometry::<G>(domain).unwrap();
    let x: Vec<i8> = (0..geo.input_len())
        .map(|i| (i * 37 % 255) as u8 as i8)
        .collect();
    let raw: Vec<i8> = (0..geo.weight_len())
        .map(|i| (i * 11 % 200) as i8)
        .collect();
    let mut prepared = vec![0i32; plan.prepared_weights_len()];
    plan.prepare_weights(&raw, &mut prepared).unwrap();
    let bias: Vec<i32> = (0..geo.bias_len()).map(|i| i as i32 * 100 - 50).collect();
    let ms: Vec<Multiplier> = (0..geo.out_channels())
        .map(|_| Multiplier::from_real(0.003).unwrap())
        .collect();
    let requant = |n: usize, zp: i32| Requant {
        input_zero_point: zp,
        output_zero_point: 3,
        multipliers: &ms[..n],
        relu: false,
    };
    let n = ms.len();
    // (multipliers, zero point, bias, prepared, scratch): one of them wrong.
    let cases = [
        (n - 1, -5, bias.len(), prepared.len(), plan.scratch_len()),
        (n, 200, bias.len(), prepared.len(), plan.scratch_len()),
        (n, -5, bias.len() - 1, prepared.len(), plan.scratch_len()),
        (n, -5, bias.len(), prepared.len() - 1, plan.scratch_len()),
        (n, -5, bias.len(), prepared.len(), plan.scratch_len() - 1),
    ];
    for (m, zp, b, p, s) in cases {
        let sentinel_i8 = |len: usize| (0..len).map(|i| (i % 251) as i8).collect::<Vec<i8>>();
        let mut out = sentinel_i8(geo.output_len());
        let mut scratch: Vec<i32> = (0..s).map(|i| 0x5a5a_0000 ^ i as i32).collect();
        let r = plan.forward(
            &requant(m, zp),
            &x,
            &prepared[..p],
            Some(&bias[..b]),
            &mut out,
            &mut scratch,
        );
        assert!(r.is_err(), "{r:?}");
        assert_eq!(
            out,
            sentinel_i8(geo.output_len()),
            "QFastPlan::forward output"
        );
        assert!(
            scratch
                .iter()
                .enumerate()
                .all(|(i, &v)| v == 0x5a5a_0000 ^ i as i32),
            "QFastPlan::forward scratch"
        );
    }
}

#[test]
fn fast_path_writes_nothing_on_error() {
    for (domain, shape) in shapes() {
        fast_path::<C4>(domain, &shape);
        fast_path::<D4>(domain, &shape);
    }
}

#[test]
fn fourier_path_writes_nothing_on_error() {
    for (domain, shape) in shapes() {
        fourier_path::<C4>(domain, &shape);
        fourier_path::<D4>(domain, &shape);
    }
}

#[test]
fn plans_write_nothing_on_error() {
    for (domain, shape) in shapes() {
        plans::<C4>(domain, &shape);
        plans::<D4>(domain, &shape);
    }
}

#[test]
fn int8_fast_path_writes_nothing_on_error() {
    for (domain, shape) in shapes() {
        int8_fast::<C4>(domain, &shape);
        int8_fast::<D4>(domain, &shape);
    }
}
