//! Forward-pass throughput (MACs/s) of the four layer pairs on the shapes the speed
//! issue tracks, plus the filter-bank expansion on its own. Every benchmarked
//! configuration is first checked against the f64 oracle: an unchecked result is
//! never timed.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gconv_core::conv::expand::expand_filter_bank;
use gconv_core::conv::{group, lifting};
use gconv_core::{C4, ConvShape, D4, Domain, Group, Padding};
use gconv_std::reference::{RefConvSpec, RefGroup, reference_conv};

struct Case {
    name: &'static str,
    domain: Domain,
    shape: ConvShape,
}

fn case(
    name: &'static str,
    domain: Domain,
    batch: usize,
    c_in: usize,
    c_out: usize,
    size: usize,
) -> Case {
    Case {
        name,
        domain,
        shape: ConvShape {
            batch,
            in_channels: c_in,
            out_channels: c_out,
            height: size,
            width: size,
            kernel: 3,
            stride: 1,
            padding: Padding::Same,
        },
    }
}

fn data(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7919 + salt) % 1999) as f32 - 999.0) / 999.0)
        .collect()
}

/// Runs the kernel once and compares with the oracle (tolerance: the f32 bound
/// `(terms + 2) * eps * sum |x w|`).
fn checked_forward<G: Group>(
    group_id: RefGroup,
    c: &Case,
    x: &[f32],
    w: &[f32],
    out: &mut [f32],
    scratch: &mut [f32],
) {
    let geo = c.shape.geometry::<G>(c.domain).expect("valid bench shape");
    forward::<G>(c, x, w, out, scratch);
    let pad = c.shape.padding.resolve(c.shape.kernel).unwrap();
    let spec = RefConvSpec {
        group: group_id,
        lifting: c.domain == Domain::Z2,
        batch: c.shape.batch,
        in_channels: c.shape.in_channels,
        out_channels: c.shape.out_channels,
        height: c.shape.height,
        width: c.shape.width,
        kernel: c.shape.kernel,
        stride: c.shape.stride,
        pad,
    };
    let r = reference_conv(&spec, x, w, None);
    let eps = f64::from(f32::EPSILON) * (geo.terms_per_output() as f64 + 2.0);
    for (i, (&y, (&v, &a))) in out.iter().zip(r.value.iter().zip(&r.abs_sum)).enumerate() {
        assert!(
            (f64::from(y) - v).abs() <= eps * a + 1e-30,
            "{}: output {i} wrong",
            c.name
        );
    }
}

fn forward<G: Group>(c: &Case, x: &[f32], w: &[f32], out: &mut [f32], scratch: &mut [f32]) {
    match c.domain {
        Domain::Z2 => lifting::lifting_conv::<G>(&c.shape, x, w, None, out, scratch),
        Domain::Group => group::group_conv::<G>(&c.shape, x, w, None, out, scratch),
    }
    .expect("bench forward");
}

fn bench_case<G: Group>(crit: &mut Criterion, group_id: RefGroup, c: Case) {
    let geo = c.shape.geometry::<G>(c.domain).unwrap();
    let x = data(geo.input_len(), 1);
    let w = data(geo.weight_len(), 2);
    let mut out = vec![0.0; geo.output_len()];
    let mut scratch = vec![0.0; geo.bank_len()];
    checked_forward::<G>(group_id, &c, &x, &w, &mut out, &mut scratch);

    let mut g = crit.benchmark_group("forward");
    g.throughput(Throughput::Elements(geo.macs() as u64));
    g.bench_function(BenchmarkId::from_parameter(c.name), |b| {
        b.iter(|| forward::<G>(&c, black_box(&x), black_box(&w), &mut out, &mut scratch))
    });
    g.finish();

    let mut g = crit.benchmark_group("expand");
    g.throughput(Throughput::Elements(geo.bank_len() as u64));
    let mut bank = vec![0.0; geo.bank_len()];
    let s = c.shape;
    g.bench_function(BenchmarkId::from_parameter(c.name), |b| {
        b.iter(|| {
            expand_filter_bank::<G>(
                c.domain,
                s.out_channels,
                s.in_channels,
                s.kernel,
                black_box(&w),
                &mut bank,
            )
        })
    });
    g.finish();
}

fn benches(crit: &mut Criterion) {
    bench_case::<C4>(
        crit,
        RefGroup::C4,
        case("c4-c4_10-10_k3_28x28_b1", Domain::Group, 1, 10, 10, 28),
    );
    bench_case::<C4>(
        crit,
        RefGroup::C4,
        case("z2-c4_3-16_k3_32x32_b1", Domain::Z2, 1, 3, 16, 32),
    );
    bench_case::<C4>(
        crit,
        RefGroup::C4,
        case("c4-c4_4-4_k3_16x16_b1", Domain::Group, 1, 4, 4, 16),
    );
    bench_case::<D4>(
        crit,
        RefGroup::D4,
        case("z2-d4_3-16_k3_32x32_b1", Domain::Z2, 1, 3, 16, 32),
    );
    bench_case::<D4>(
        crit,
        RefGroup::D4,
        case("d4-d4_16-16_k3_32x32_b1", Domain::Group, 1, 16, 16, 32),
    );
}

criterion_group!(conv, benches);
criterion_main!(conv);
