//! `gconv check`: is this configuration still equivariant? Builds a random layer (or
//! a stack), prints the equivariance rule's verdict, measures
//! `max |Phi(g.x) - g.Phi(x)|` for every group element and says whether the two agree.
//!
//! ```text
//! gconv check --from .. --to .. -k K --size H [--stride N] [--padding ..]
//!             [--channels CI,CO] [--seed S] [--width W]
//! gconv check --layers z2-c4:3,c4-c4:3,pool2 --size H [...]
//! ```
//!
//! Stacks are linear between layers (no activation): pointwise activations commute
//! with the group and would not change the verdict. The tolerance of each measurement
//! is the f32 rounding bound `2 * terms * eps * max(magnitude)`, where `terms` adds up
//! `C_in * nti * K * K + 2` over the conv layers so far (`K * K + 1` for average
//! pooling) and the magnitude is the same stack run with `|w|`, `|b|` on `|x|`.
//! Exit status: 0 when the rule and the measurement agree on where (if anywhere)
//! equivariance first breaks, 1 when they disagree, 2 for bad arguments.

use std::process::ExitCode;

use gconv_core::group::ELEMENT_NAMES;
use gconv_std::{AnyConv, Padding, Pair, Pool2d, PoolKind, Space, Tensor};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::args::{StridePadding, parse_padding, parse_positive, parse_space, shape_text};
use crate::rule::equivariance_problems;

/// Arguments of `gconv check`.
#[derive(clap::Args)]
pub struct Args {
    /// Input space of a single layer: z2, c4 or d4 (not with --layers).
    #[arg(long, value_name = "z2|c4|d4")]
    from: Option<String>,
    /// Output group of a single layer: c4 or d4 (not with --layers).
    #[arg(long, value_name = "c4|d4")]
    to: Option<String>,
    /// Kernel size of a single layer (not with --layers).
    #[arg(short = 'k', value_name = "K", allow_hyphen_values = true)]
    kernel: Option<String>,
    /// Input height (and width, unless --width is given).
    #[arg(long, value_name = "H", allow_hyphen_values = true)]
    size: String,
    /// Input width, for non-square maps (default: --size).
    #[arg(long, value_name = "W", allow_hyphen_values = true)]
    width: Option<String>,
    /// Stride and padding.
    #[command(flatten)]
    conv: StridePadding,
    /// Input G-channels of the first layer and output G-channels of every conv layer.
    #[arg(long, value_name = "CI,CO", default_value = "2,2")]
    channels: String,
    /// Seed of the random weights, biases and input (taken as text so that a bad
    /// value gets our one-line error).
    #[arg(
        long,
        value_name = "S",
        default_value = "0",
        allow_hyphen_values = true
    )]
    seed: String,
    /// A stack of layers, comma separated. Conv: `<from>-<to>:<K>[/<stride>][:<padding>]`
    /// with padding `valid`, `same`, `P` or `T-B-L-R` (e.g. `z2-c4:3`, `c4-c4:4/2:1-2-1-2`);
    /// max pooling `pool<K>[/<stride>]` and average pooling `avgpool<K>[/<stride>]`
    /// (stride defaults to K, no padding).
    #[arg(long, value_name = "LIST")]
    layers: Option<String>,
}

/// One layer of the checked stack.
enum Op {
    /// A convolution.
    Conv(AnyConv),
    /// Spatial pooling.
    Pool(Pool2d),
}

/// A conv layer as written in `--layers` (or by the single-layer options).
struct ConvSpec {
    /// Input space and output group.
    pair: Pair,
    /// Kernel size.
    kernel: usize,
    /// Stride.
    stride: usize,
    /// Padding.
    padding: Padding,
}

/// A parsed layer, before it is built.
enum Spec {
    /// A convolution.
    Conv(ConvSpec),
    /// Spatial pooling.
    Pool(Pool2d),
}

/// A built layer with what the report says about it.
struct Layer {
    /// As the user would write it, e.g. `z2-c4:3/1:valid`.
    label: String,
    /// The operation.
    op: Op,
    /// Input shape.
    input: Vec<usize>,
    /// Output shape.
    output: Vec<usize>,
    /// The rule's verdict on its input: `None` if equivariant, else the reasons.
    broken: Option<Vec<String>>,
    /// Rounding terms this layer adds to the tolerance.
    terms: usize,
}

/// Runs `gconv check`.
pub fn run(args: Args) -> crate::Outcome {
    let height = parse_positive(&args.size).map_err(|e| format!("--size {}: {e}", args.size))?;
    let width = match &args.width {
        Some(w) => parse_positive(w).map_err(|e| format!("--width {w}: {e}"))?,
        None => height,
    };
    let (stride, padding) = args.conv.parse()?;
    let (c_in, c_out) = parse_channels(&args.channels)?;
    let seed: u64 = args.seed.trim().parse().map_err(|_| {
        format!(
            "--seed {}: expected an integer in 0..=18446744073709551615",
            args.seed
        )
    })?;
    let specs = layer_specs(&args, stride, padding)?;
    let (stack, group) = build_stack(specs, c_in, c_out, height, width, seed)?;

    println!(
        "gconv check: {} stack of {} layer(s) on a {height}x{width} input, channels {c_in} -> {c_out}, seed {}",
        group.to(),
        stack.len(),
        seed
    );
    print_rule(&stack);
    let measured = measure(&stack, group, seed)?;
    print_measurements(&stack, group, &measured);

    let rule_break = stack.iter().position(|l| l.broken.is_some());
    let measured_break = measured.iter().position(|m| !m.equivariant());
    let describe = |at: Option<usize>| match at {
        None => "never (equivariant)".to_string(),
        Some(i) => format!("at layer {} ({})", i + 1, stack[i].label),
    };
    println!("first break by the rule:        {}", describe(rule_break));
    println!(
        "first break by the measurement: {}",
        describe(measured_break)
    );
    if rule_break == measured_break {
        println!("rule and measurement agree");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("rule and measurement DISAGREE");
        Ok(ExitCode::from(1))
    }
}

/// Parses `--channels CI,CO`.
fn parse_channels(s: &str) -> Result<(usize, usize), String> {
    let parts: Vec<&str> = s.split(',').collect();
    let parsed: Vec<usize> = parts
        .iter()
        .filter_map(|p| parse_positive(p).ok())
        .collect();
    match parsed[..] {
        [ci, co] if parts.len() == 2 => Ok((ci, co)),
        _ => Err(format!(
            "--channels {s}: expected CI,CO, two positive integers (e.g. 2,3)"
        )),
    }
}

/// The layers to check: `--layers`, or one layer from `--from`, `--to`, `-k`.
fn layer_specs(args: &Args, stride: usize, padding: Padding) -> Result<Vec<Spec>, String> {
    let single = args.from.is_some() || args.to.is_some() || args.kernel.is_some();
    match (&args.layers, single) {
        (Some(_), true) => {
            Err("give either --layers or a single layer (--from, --to, -k), not both".into())
        }
        (None, false) => {
            Err("nothing to check: give a single layer (--from, --to, -k) or --layers".into())
        }
        (Some(list), false) => list
            .split(',')
            .enumerate()
            .map(|(i, item)| {
                parse_layer(item.trim(), stride, padding)
                    .map_err(|e| format!("--layers, layer {} {item:?}: {e}", i + 1))
            })
            .collect(),
        (None, true) => {
            let (Some(from), Some(to), Some(k)) = (&args.from, &args.to, &args.kernel) else {
                return Err("a single layer needs all of --from, --to and -k".into());
            };
            let pair = parse_pair(from, to)?;
            let kernel = parse_positive(k).map_err(|e| format!("-k {k}: {e}"))?;
            Ok(vec![Spec::Conv(ConvSpec {
                pair,
                kernel,
                stride,
                padding,
            })])
        }
    }
}

/// Parses `--from`/`--to` into a pair.
fn parse_pair(from: &str, to: &str) -> Result<Pair, String> {
    let f = parse_space(from).map_err(|e| format!("--from {from}: {e}"))?;
    let t = parse_space(to).map_err(|e| format!("--to {to}: {e}"))?;
    Pair::new(f, t).map_err(|e| e.to_string())
}

/// Parses one `--layers` item (see [`Args::layers`]).
fn parse_layer(item: &str, stride: usize, padding: Padding) -> Result<Spec, String> {
    for (prefix, kind) in [("avgpool", PoolKind::Avg), ("pool", PoolKind::Max)] {
        if let Some(rest) = item.strip_prefix(prefix) {
            let (window, pool_stride) = match rest.split_once('/') {
                Some((k, s)) => (parse_positive(k)?, parse_positive(s)?),
                None => {
                    let k = parse_positive(rest)?;
                    (k, k)
                }
            };
            return Ok(Spec::Pool(Pool2d {
                kind,
                window,
                stride: pool_stride,
                padding: Padding::Valid,
            }));
        }
    }
    let (pair_text, rest) = item
        .split_once(':')
        .ok_or("expected <from>-<to>:<K>[/<stride>][:<padding>], pool<K> or avgpool<K>")?;
    let (from, to) = pair_text
        .split_once('-')
        .ok_or("expected <from>-<to>, e.g. z2-c4")?;
    let pair = parse_pair(from, to)?;
    let (size_text, padding) = match rest.split_once(':') {
        Some((s, p)) => (
            s,
            parse_padding(&p.replace('-', ",")).map_err(|_| {
                format!("invalid padding {p:?}: expected valid, same, P or T-B-L-R")
            })?,
        ),
        None => (rest, padding),
    };
    let (kernel, stride) = match size_text.split_once('/') {
        Some((k, s)) => (parse_positive(k)?, parse_positive(s)?),
        None => (parse_positive(size_text)?, stride),
    };
    Ok(Spec::Conv(ConvSpec {
        pair,
        kernel,
        stride,
        padding,
    }))
}

/// The most values any tensor of a check may hold (1 GiB of f32): a check is a quick
/// test on random data, and beyond this a typo in `--size` would exhaust memory.
const MAX_VALUES: usize = 1 << 28;

/// Refuses a tensor (or bank) of more than [`MAX_VALUES`] values.
fn check_size(what: &str, dims: &[usize]) -> Result<(), String> {
    match dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)) {
        Some(n) if n <= MAX_VALUES => Ok(()),
        _ => Err(format!(
            "{what} {} would hold more than {MAX_VALUES} values: use a smaller --size or --channels",
            shape_text(dims)
        )),
    }
}

/// Builds the stack: checks that the layers chain, flows the shapes through, seeds
/// every conv layer, and applies the rule at every layer's input size. Returns the
/// layers and the pair of the first conv layer (its group is the stack's).
fn build_stack(
    specs: Vec<Spec>,
    c_in: usize,
    c_out: usize,
    height: usize,
    width: usize,
    seed: u64,
) -> Result<(Vec<Layer>, Pair), String> {
    let Some(Spec::Conv(first)) = specs.first() else {
        return Err("--layers: the first layer must be a convolution".into());
    };
    let group = first.pair;
    let mut space = first.pair.from();
    let mut shape = match space {
        Space::Z2 => vec![1, c_in, height, width],
        s => vec![1, c_in, s.planes(), height, width],
    };
    check_size("the input", &shape)?;
    let mut layers = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let at = |e: String| format!("layer {}: {e}", i + 1);
        let (h, w) = (shape[shape.len() - 2], shape[shape.len() - 1]);
        let layer = match spec {
            Spec::Conv(c) => {
                if c.pair.from() != space {
                    return Err(at(format!(
                        "a {} layer cannot follow a {space} feature map",
                        c.pair.name()
                    )));
                }
                let channels_in = shape[1];
                let bank = [
                    c_out,
                    c.pair.to().planes(),
                    channels_in,
                    c.pair.from().planes(),
                    c.kernel,
                    c.kernel,
                ];
                check_size("the expanded filter bank", &bank).map_err(at)?;
                let conv = AnyConv::new(
                    c.pair,
                    channels_in,
                    c_out,
                    c.kernel,
                    c.stride,
                    c.padding,
                    seed.wrapping_add(i as u64),
                )
                .map_err(|e| at(e.to_string()))?;
                let geo = conv.geometry(&shape).map_err(|e| at(e.to_string()))?;
                let pad = c.padding.resolve(c.kernel).map_err(|e| at(e.to_string()))?;
                let broken = (!conv.is_equivariant_on(h, w))
                    .then(|| equivariance_problems(h, w, c.kernel, c.stride, pad));
                space = c.pair.to();
                Layer {
                    label: format!(
                        "{}:{}/{}:{}",
                        pair_label(c.pair),
                        c.kernel,
                        c.stride,
                        padding_label(c.padding)
                    ),
                    terms: channels_in * c.pair.from().planes() * c.kernel * c.kernel + 2,
                    input: shape.clone(),
                    output: geo.output_shape().to_vec(),
                    broken,
                    op: Op::Conv(conv),
                }
            }
            Spec::Pool(p) => {
                let output = p.output_shape(&shape).map_err(|e| at(e.to_string()))?;
                let pad = p.padding.resolve(p.window).map_err(|e| at(e.to_string()))?;
                let broken = (!p.is_equivariant_on(h, w))
                    .then(|| equivariance_problems(h, w, p.window, p.stride, pad));
                let (name, terms) = match p.kind {
                    PoolKind::Max => ("pool", 0),
                    PoolKind::Avg => ("avgpool", p.window * p.window + 1),
                };
                Layer {
                    label: format!("{name}{}/{}", p.window, p.stride),
                    terms,
                    input: shape.clone(),
                    output,
                    broken,
                    op: Op::Pool(p),
                }
            }
        };
        check_size(&format!("layer {}'s output", i + 1), &layer.output)?;
        shape = layer.output.clone();
        layers.push(layer);
    }
    Ok((layers, group))
}

/// `z2-c4` etc.
fn pair_label(pair: Pair) -> String {
    format!("{}-{}", pair.from(), pair.to()).to_ascii_lowercase()
}

/// Padding as written in `--layers`.
fn padding_label(padding: Padding) -> String {
    match padding {
        Padding::Valid => "valid".into(),
        Padding::Same => "same".into(),
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => format!("{top}-{bottom}-{left}-{right}"),
    }
}

/// Prints the rule's verdict for every layer, with the reasons when it fails.
fn print_rule(stack: &[Layer]) {
    println!(
        "{:<6} {:<22} {:<20} {:<20} rule",
        "layer", "op", "input", "output"
    );
    for (i, layer) in stack.iter().enumerate() {
        let verdict = if layer.broken.is_some() {
            "broken"
        } else {
            "equivariant"
        };
        println!(
            "{:<6} {:<22} {:<20} {:<20} {verdict}",
            i + 1,
            layer.label,
            shape_text(&layer.input),
            shape_text(&layer.output)
        );
        for reason in layer.broken.iter().flatten() {
            println!("         - {reason}");
        }
    }
}

/// The measurement after one layer of the stack: the error per group element
/// (`None`: `Phi(g.x)` could not be computed or has another shape than `g.Phi(x)`)
/// and the tolerance.
struct Measured {
    /// `max |Phi(g.x) - g.Phi(x)|` per element.
    errors: Vec<Option<f32>>,
    /// The rounding bound.
    tolerance: f32,
}

impl Measured {
    /// Every element within the tolerance.
    fn equivariant(&self) -> bool {
        self.errors
            .iter()
            .all(|e| e.is_some_and(|e| e <= self.tolerance))
    }
}

/// Applies one layer; the magnitude pass uses `|w|`, `|b|` (pools are unchanged).
fn apply(op: &Op, x: &Tensor, magnitude: bool) -> Option<Tensor> {
    match op {
        Op::Conv(c) if magnitude => c.magnitude_layer().forward(x).ok(),
        Op::Conv(c) => c.forward(x).ok(),
        Op::Pool(p) => p.forward(x).ok(),
    }
}

/// Runs the stack on a seeded random input and on each of its transforms, measuring
/// the equivariance error after every layer.
fn measure(stack: &[Layer], group: Pair, seed: u64) -> Result<Vec<Measured>, String> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let shape = stack[0].input.clone();
    let x = Tensor::from_fn(shape, |_| rng.random_range(-1.0f32..1.0));
    let order = group.group_order();
    // Phi(x), the magnitude pass, and Phi(g.x) for every g (None once it fails).
    let mut y = x.clone();
    let mut magnitude = x.map(f32::abs);
    let mut transformed: Vec<Option<Tensor>> =
        (0..order).map(|g| group.transform(g, &x).ok()).collect();
    let mut terms = 0;
    let mut out = Vec::with_capacity(stack.len());
    for layer in stack {
        y = apply(&layer.op, &y, false).ok_or("the stack failed on its own input")?;
        magnitude = apply(&layer.op, &magnitude, true).ok_or("the magnitude pass failed")?;
        terms += layer.terms;
        for t in &mut transformed {
            *t = t.as_ref().and_then(|t| apply(&layer.op, t, false));
        }
        let errors = transformed
            .iter()
            .enumerate()
            .map(|(g, t)| {
                let expected = group.transform(g, &y).ok()?;
                t.as_ref()?.max_abs_diff(&expected)
            })
            .collect();
        let tolerance = 2.0 * terms.max(1) as f32 * f32::EPSILON * magnitude.max_abs();
        out.push(Measured { errors, tolerance });
    }
    Ok(out)
}

/// Prints the per-element errors after every layer, and the tolerances.
fn print_measurements(stack: &[Layer], group: Pair, measured: &[Measured]) {
    println!("max |Phi(g.x) - g.Phi(x)| after each layer:");
    let mut header = format!("{:<3} {:<15}", "g", "element");
    for i in 0..stack.len() {
        header.push_str(&format!(" {:>11}", format!("layer {}", i + 1)));
    }
    println!("{header}");
    for (g, name) in ELEMENT_NAMES.iter().enumerate().take(group.group_order()) {
        let mut row = format!("{g:<3} {name:<15}");
        for m in measured {
            let cell = match m.errors[g] {
                Some(e) => format!("{e:.3e}"),
                None => "shape".into(),
            };
            row.push_str(&format!(" {cell:>11}"));
        }
        println!("{row}");
    }
    let mut row = format!("{:<3} {:<15}", "", "tolerance");
    for m in measured {
        row.push_str(&format!(" {:>11}", format!("{:.3e}", m.tolerance)));
    }
    println!("{row}");
    let mut row = format!("{:<3} {:<15}", "", "measured");
    for m in measured {
        let verdict = if m.equivariant() {
            "equivariant"
        } else {
            "broken"
        };
        row.push_str(&format!(" {verdict:>11}"));
    }
    println!("{row}");
}
