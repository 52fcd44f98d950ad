//! Every core path, linked out of line for the panic gate (`scripts/lib/panic-gate.sh`)
//! and run against the host.
//!
//! The panic gate disassembles the gconv-core functions that survive in the ELF as
//! their own symbols; code the compiler inlines into this crate's functions is not
//! gconv-core's to it. So every public entry point here is called through a function
//! pointer hidden from the optimizer ([`core::hint::black_box`]): the compiler must emit
//! the entry point as a function of its own (with everything it inlines), under its
//! gconv-core name, and cannot specialise it to the arguments. The inputs, weights and
//! shapes are hidden the same way, so nothing is constant-folded.
//!
//! Paths (the names the gate reports):
//!
//! * `plan`, `direct`, `blocked`, `fast`, `fourier`: [`Plan`] with
//!   [`AlgorithmChoice::Direct`], `Blocked`, `Fast` and `Fourier` for a lifting and a
//!   group convolution on C4 and on D4 (`prepare_weights`, `forward`), and each path's
//!   own entry points (`conv::lifting::lifting_conv`, `conv::group::group_conv`,
//!   `blocked::forward_geometry`, `FastPlan::{pack_bank, pack_input, compute}` with the
//!   portable micro-kernel, `FourierPlan::{pack_weights, forward}`); every output is
//!   checked against the host's f64 reference within the f32 rounding bound;
//! * `layers`, `pool`: `layers::{relu, channel_affine, group_pool, global_avg_pool,
//!   dense}` and `pool::{max_pool, avg_pool}`, checked bit for bit against the host
//!   running the same functions;
//! * `model-f32`: `model::float::Model::forward` on the C4 classifier of `main.rs`,
//!   checked against the host's output like the hand-wired forward pass;
//! * `model-int8`, `int8`: `model::int8::QModel::forward_f32` on the trained int8
//!   digits P4CNN (`gconv export`'s source, as the `digits` binary runs it) and its
//!   first test image: int8 convolutions, max pooling, group pooling, global average
//!   pooling and dense layers, every logit checked bit for bit against the host's.
//!
//! The int8 DSP path runs (and is checked) in `int8.rs`.

use core::hint::black_box;
use core::ops::Range;

use cortex_m_semihosting::hprintln;
use gconv_core::conv::{group, lifting};
use gconv_core::fast::{FastPlan, Kernel};
use gconv_core::fourier::FourierPlan;
use gconv_core::layers::{self, Reduce};
use gconv_core::model::float::{Conv, Layer, Model};
use gconv_core::model::int8::QModel;
use gconv_core::model::{ConvSpec, Feature, LayerError};
use gconv_core::pool::{self, PoolShape};
use gconv_core::{
    AlgorithmChoice, C4, ConvGeometry, ConvShape, D4, Domain, Error, Group, Padding, Plan, blocked,
};

use crate::data::{self, Shape};

/// The trained int8 digits P4CNN, as `gconv export` wrote it.
#[allow(dead_code, clippy::all, missing_docs)]
mod qmodel {
    include!(concat!(env!("OUT_DIR"), "/digits_p4cnn_int8.rs"));
}
/// Its first test image and the host's logits (unused statics are not linked).
#[allow(dead_code, clippy::all, missing_docs)]
mod digits {
    include!(concat!(env!("OUT_DIR"), "/digits_data.rs"));
    include!(concat!(env!("OUT_DIR"), "/gate_image.rs"));
}

/// Lengths of the int8 model's two activation buffers and its int32 scratch.
pub const Q_ACT: usize = qmodel::SIZES.activations;
pub const Q_SCRATCH: usize = qmodel::SIZES.scratch;

/// The int8 model runner's buffers (RAM).
pub struct QBuffers<'a> {
    pub a: &'a mut [i8],
    pub b: &'a mut [i8],
    pub scratch: &'a mut [i32],
}
use crate::shapes::{Buffers, compare, read_f32};

/// `f`, hidden from the optimizer: a call through it is an indirect call to an
/// out-of-line copy of the function.
#[inline(always)]
fn opaque<T>(f: T) -> T {
    black_box(f)
}

type Res = Result<(), Error>;
type PlanNew<G> = fn(Domain, &ConvShape, AlgorithmChoice, Kernel) -> Result<Plan<G>, Error>;
type PlanPrepare<G> = fn(&Plan<G>, &[f32], &mut [f32], &mut [f32]) -> Res;
type PlanForward<G> = fn(&Plan<G>, &[f32], &[f32], Option<&[f32]>, &mut [f32], &mut [f32]) -> Res;
type DirectConv = fn(&ConvShape, &[f32], &[f32], Option<&[f32]>, &mut [f32], &mut [f32]) -> Res;
type BlockedForward =
    fn(&ConvGeometry, &[f32], &[f32], Option<&[f32]>, &mut [f32], &mut [f32]) -> Res;
type FastPack = fn(&FastPlan, &[f32], &mut [f32]) -> Res;
type FastCompute =
    fn(&FastPlan, Kernel, &[f32], &[f32], Option<&[f32]>, &mut [f32], Range<usize>) -> Res;
type FourierPack = fn(&FourierPlan, &[f32], &mut [f32]) -> Res;
type FourierForward =
    fn(&FourierPlan, Kernel, &[f32], &[f32], Option<&[f32]>, &mut [f32], &mut [f32]) -> Res;

/// Runs every path; true when every output agrees with the host.
#[inline(never)]
pub fn run_all(buf: &mut Buffers, qbuf: &mut QBuffers) -> bool {
    let mut all = true;
    for s in data::gate::ALL.iter() {
        all &= match s.order {
            4 => conv::<C4>(s, buf),
            8 => conv::<D4>(s, buf),
            _ => false,
        };
    }
    all &= layer_checks(buf);
    all &= model_f32(buf);
    all &= model_int8(qbuf);
    hprintln!(
        "gate: every core path through its public entry points -> {}",
        if all { "OK" } else { "FAIL" }
    );
    all
}

/// One check's line; true when it passed.
fn verdict(s: &Shape, what: &str, result: Res, out: &[f32]) -> bool {
    let (ok, n, worst) = compare(out, s);
    let pass = result.is_ok() && ok == n && out.len() == n;
    if !pass {
        hprintln!(
            "  gate {} {}: {:?}, {}/{} outputs within the bound (worst |err|/bound {}) -> FAIL",
            s.name,
            what,
            result,
            ok,
            n,
            worst
        );
    }
    pass
}

/// One convolution on every algorithm of [`Plan`] and every path's own entry points.
fn conv<G: Group>(s: &Shape, buf: &mut Buffers) -> bool {
    let shape = black_box(ConvShape {
        batch: 1,
        in_channels: s.in_channels,
        out_channels: s.out_channels,
        height: s.size,
        width: s.size,
        kernel: s.kernel,
        stride: 1,
        padding: Padding::Same,
    });
    let domain = black_box(if s.lifting { Domain::Z2 } else { Domain::Group });
    let Ok(geo) = shape.geometry::<G>(domain) else {
        hprintln!("  gate {}: invalid shape", s.name);
        return false;
    };
    let (n_in, n_out) = (geo.input_len(), geo.output_len());
    if n_in > buf.input.len() || n_out > buf.output.len() {
        hprintln!("  gate {}: buffers too small", s.name);
        return false;
    }
    read_f32(s.input, &mut buf.input[..n_in]);
    let input: &[f32] = black_box(&buf.input[..n_in]);
    let weight: &[f32] = black_box(s.weight);
    let bias: Option<&[f32]> = black_box(Some(s.bias));
    let output = &mut buf.output[..n_out];
    let scratch = &mut *buf.scratch;
    let mut pass = true;
    let mut checks = 0;

    let new = opaque(Plan::<G>::new as PlanNew<G>);
    let prepare = opaque(Plan::<G>::prepare_weights as PlanPrepare<G>);
    let forward = opaque(Plan::<G>::forward as PlanForward<G>);
    for choice in [
        AlgorithmChoice::Direct,
        AlgorithmChoice::Blocked,
        AlgorithmChoice::Fast,
        AlgorithmChoice::Fourier,
    ] {
        let plan = match new(
            domain,
            &shape,
            black_box(choice),
            black_box(Kernel::Portable),
        ) {
            Ok(p) => p,
            Err(e) => {
                hprintln!("  gate {} {:?}: no plan: {:?}", s.name, choice, e);
                pass = false;
                continue;
            }
        };
        let name = plan.algorithm().name();
        let (wlen, plen, slen) = (
            plan.prepared_weights_len(),
            plan.prepare_scratch_len(),
            plan.scratch_len(),
        );
        // scratch = prepared weights | expanded bank (Fast) | the path's scratch.
        if wlen + plen + wlen.max(slen) > scratch.len() {
            hprintln!("  gate {} {}: scratch too small", s.name, name);
            pass = false;
            continue;
        }
        let (prepared, rest) = scratch.split_at_mut(wlen);
        let (bank, work) = rest.split_at_mut(plen);
        output.fill(f32::NAN);
        let mut result = prepare(&plan, weight, prepared, bank);
        if result.is_ok() {
            result = forward(&plan, input, prepared, bias, output, &mut work[..slen]);
        }
        pass &= verdict(s, name, result, output);
        checks += 1;

        // The path's own entry points, on the plan's prepared weights.
        output.fill(f32::NAN);
        let (what, result) = match (plan.fast_plan(), plan.fourier_plan()) {
            (Some(fp), _) => {
                let pack_bank = opaque(FastPlan::pack_bank as FastPack);
                let pack_input = opaque(FastPlan::pack_input as FastPack);
                let compute = opaque(FastPlan::compute as FastCompute);
                // The packed bank again, from the expanded bank `prepare` left in `bank`:
                // it must be the plan's.
                let mut r = pack_bank(fp, bank, &mut work[..wlen]);
                if r.is_ok() && work[..wlen] != *prepared {
                    hprintln!(
                        "  gate {}: FastPlan::pack_bank differs from the plan's",
                        s.name
                    );
                    pass = false;
                }
                if r.is_ok() {
                    r = pack_input(fp, input, &mut work[..slen]);
                }
                if r.is_ok() {
                    let tiles = 0..fp.plane_tiles();
                    r = compute(
                        fp,
                        Kernel::Portable,
                        &work[..slen],
                        prepared,
                        bias,
                        output,
                        tiles,
                    );
                }
                ("FastPlan::{pack_bank, pack_input, compute}", r)
            }
            (_, Some(fp)) => {
                let pack = opaque(FourierPlan::pack_weights as FourierPack);
                let fwd = opaque(FourierPlan::forward as FourierForward);
                let mut r = pack(fp, weight, prepared);
                if r.is_ok() {
                    r = fwd(
                        fp,
                        Kernel::Portable,
                        input,
                        prepared,
                        bias,
                        output,
                        &mut work[..slen],
                    );
                }
                ("FourierPlan::{pack_weights, forward}", r)
            }
            _ if name == "blocked" => {
                let f = opaque(blocked::forward_geometry as BlockedForward);
                let r = f(&geo, input, weight, bias, output, &mut work[..slen]);
                ("blocked::forward_geometry", r)
            }
            _ => {
                let f = if s.lifting {
                    opaque(lifting::lifting_conv::<G> as DirectConv)
                } else {
                    opaque(group::group_conv::<G> as DirectConv)
                };
                // The bank expanded on every call, into the room of the prepared one.
                let r = f(&shape, input, weight, bias, output, prepared);
                ("conv::{lifting_conv, group_conv}", r)
            }
        };
        pass &= verdict(s, what, result, output);
        checks += 1;
    }
    hprintln!(
        "  gate {}: {} checks (Plan with Direct, Blocked, Fast, Fourier; each path's own entry points) -> {}",
        s.name,
        checks,
        if pass { "OK" } else { "FAIL" }
    );
    pass
}

/// `got == want` bit for bit; prints the layer's line on failure.
fn same(what: &str, result: Res, got: &[f32], want: &[f32]) -> bool {
    let equal = got
        .iter()
        .zip(want)
        .filter(|(g, w)| g.to_bits() == w.to_bits())
        .count();
    let pass = result.is_ok() && equal == want.len() && got.len() == want.len();
    if !pass {
        hprintln!(
            "  gate {}: {:?}, {}/{} outputs bitwise equal to the host's -> FAIL",
            what,
            result,
            equal,
            want.len()
        );
    }
    pass
}

/// The layers and spatial pooling, each through an opaque pointer.
fn layer_checks(buf: &mut Buffers) -> bool {
    use data::gate as d;
    type Relu = fn(&mut [f32]);
    type Affine = fn(usize, usize, &[f32], &[f32], &mut [f32]) -> Res;
    type GroupPool = fn(Reduce, usize, usize, usize, &[f32], &mut [f32]) -> Res;
    type Gap = fn(usize, usize, &[f32], &mut [f32]) -> Res;
    type Dense = fn(usize, usize, usize, &[f32], &[f32], Option<&[f32]>, &mut [f32]) -> Res;
    type Pool = fn(&PoolShape, &[f32], &mut [f32]) -> Res;
    let (channels, order, hw) = black_box((2usize, 8usize, 36usize));
    let planes = channels * order;
    let x: &[f32] = black_box(&d::X[..]);
    let mut pass = true;

    let data = &mut buf.output[..x.len()];
    data.copy_from_slice(x);
    opaque(layers::relu as Relu)(data);
    pass &= same("layers::relu", Ok(()), data, &d::RELU);

    data.copy_from_slice(x);
    let r = opaque(layers::channel_affine as Affine)(
        channels,
        order * hw,
        black_box(&d::SCALE[..]),
        black_box(&d::SHIFT[..]),
        data,
    );
    pass &= same("layers::channel_affine", r, data, &d::AFFINE);

    let group_pool = opaque(layers::group_pool as GroupPool);
    for (reduce, want) in [
        (Reduce::Max, &d::GROUP_MAX[..]),
        (Reduce::Mean, &d::GROUP_MEAN[..]),
    ] {
        let out = &mut buf.output[..want.len()];
        let r = group_pool(black_box(reduce), channels, order, hw, x, out);
        pass &= same("layers::group_pool", r, out, want);
    }

    let out = &mut buf.output[..planes];
    let r = opaque(layers::global_avg_pool as Gap)(planes, hw, x, out);
    pass &= same("layers::global_avg_pool", r, out, &d::GAP);

    let out = &mut buf.output[..d::DENSE.len()];
    let r = opaque(layers::dense as Dense)(
        1,
        planes,
        d::DENSE.len(),
        black_box(&d::GAP[..]),
        black_box(&d::DENSE_W[..]),
        black_box(Some(&d::DENSE_B[..])),
        out,
    );
    pass &= same("layers::dense", r, out, &d::DENSE);

    let shape = black_box(PoolShape {
        planes,
        height: 6,
        width: 6,
        window: 3,
        stride: 2,
        padding: Padding::Same,
    });
    for (f, name, want) in [
        (pool::max_pool as Pool, "pool::max_pool", &d::MAX_POOL[..]),
        (pool::avg_pool as Pool, "pool::avg_pool", &d::AVG_POOL[..]),
    ] {
        let out = &mut buf.output[..want.len()];
        let r = opaque(f)(&shape, x, out);
        pass &= same(name, r, out, want);
    }
    hprintln!(
        "  gate layers: relu, channel_affine, group_pool (max, mean), global_avg_pool, dense, max_pool, avg_pool -> {}",
        if pass { "OK" } else { "FAIL" }
    );
    pass
}

/// The C4 classifier of `main.rs` as a [`Model`] (the firmware model runner).
const C4_LAYERS: [Layer<'static>; 5] = [
    Layer::Conv(Conv {
        spec: ConvSpec {
            domain: Domain::Z2,
            in_channels: 1,
            out_channels: crate::C,
            kernel: 3,
            stride: 1,
            padding: Padding::Same,
        },
        weight: &data::c4::LIFT_W,
        bias: Some(&data::c4::LIFT_B),
        relu: true,
    }),
    Layer::Conv(Conv {
        spec: ConvSpec {
            domain: Domain::Group,
            in_channels: crate::C,
            out_channels: crate::C,
            kernel: 3,
            stride: 1,
            padding: Padding::Same,
        },
        weight: &data::c4::GCONV_W,
        bias: Some(&data::c4::GCONV_B),
        relu: true,
    }),
    Layer::GroupPool(Reduce::Max),
    Layer::GlobalAvgPool,
    Layer::Dense {
        in_features: crate::C,
        out_features: crate::CLASSES,
        weight: &data::c4::DENSE_W,
        bias: Some(&data::c4::DENSE_B),
        relu: false,
    },
];
const C4_MODEL: Model<'static, C4> = match Model::new(
    Feature::Map {
        domain: Domain::Z2,
        channels: 1,
        height: crate::H,
        width: crate::W,
    },
    &C4_LAYERS,
    false,
) {
    Ok(m) => m,
    Err(_) => panic!("invalid gate model"),
};

/// The float model runner on the C4 classifier, bit for bit the host's output.
fn model_f32(buf: &mut Buffers) -> bool {
    type Forward = for<'b> fn(
        &Model<'static, C4>,
        &[f32],
        &'b mut [f32],
        &'b mut [f32],
        &mut [f32],
    ) -> Result<&'b [f32], LayerError>;
    let sizes = C4_MODEL.sizes();
    let (a, b) = buf.output.split_at_mut(sizes.activations);
    let model = black_box(&C4_MODEL);
    let forward = opaque(Model::<'static, C4>::forward as Forward);
    let y = forward(
        model,
        black_box(&data::INPUT[..]),
        a,
        &mut b[..sizes.activations],
        &mut buf.scratch[..sizes.scratch],
    );
    let want = &data::c4::EXPECTED;
    let pass = match y {
        Ok(y) => crate::same_bits(y, want),
        Err(e) => {
            hprintln!("  gate model::float: {:?}", e);
            false
        }
    };
    hprintln!(
        "  gate model::float::Model::forward (C4 classifier) -> {}",
        if pass { "OK" } else { "FAIL" }
    );
    pass
}

/// The int8 model runner on the digits P4CNN's first test image: every logit equal to
/// the host's.
fn model_int8(buf: &mut QBuffers) -> bool {
    type Forward = for<'b> fn(
        &QModel<'static, C4>,
        &[f32],
        &'b mut [i8],
        &'b mut [i8],
        &mut [i32],
    ) -> Result<&'b [i8], LayerError>;
    let forward = opaque(QModel::<'static, C4>::forward_f32 as Forward);
    let model = black_box(&qmodel::MODEL);
    let want = &digits::HOST_LOGITS_P4CNN_INT8[..crate::CLASSES];
    let y = forward(
        model,
        black_box(&digits::GATE_IMAGE[..]),
        buf.a,
        buf.b,
        buf.scratch,
    );
    let pass = match y {
        Ok(y) => y == want,
        Err(e) => {
            hprintln!("  gate model::int8: {:?}", e);
            false
        }
    };
    hprintln!(
        "  gate model::int8::QModel::forward_f32 (digits P4CNN, image 0): logits {} the host's -> {}",
        if pass { "equal to" } else { "differ from" },
        if pass { "OK" } else { "FAIL" }
    );
    pass
}
