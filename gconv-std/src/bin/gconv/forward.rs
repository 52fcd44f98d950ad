//! `gconv forward`: run one layer on `.npy` files.
//!
//! ```text
//! gconv forward --from z2|c4|d4 --to c4|d4 --input x.npy --weight w.npy [--bias b.npy]
//!               [--stride N] [--padding valid|same|P|T,B,L,R]
//!               [--path auto|direct|blocked|fast|fourier] --output y.npy
//! ```
//!
//! The steps, one function each: parse the settings, load and validate the weight, the
//! padding, the input and the bias, build the layer, warn when the equivariance rule
//! says the layer is not exactly equivariant, run it, write the output. Everything is
//! validated before anything is computed and the output is written last (atomically,
//! by `write_npy`), so a failure never leaves a partial or changed output file. Every
//! failure is one line naming the file (as given on the command line), the expected
//! shape and the shape found.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use gconv_core::ConvGeometry;
use gconv_core::equivariance::layer_is_equivariant;
use gconv_std::npy::{read_npy, write_npy};
use gconv_std::{AnyConv, ConvPath, Padding, Pair, Space, Tensor};

use crate::args::{StridePadding, parse_space, shape_text};
use crate::rule::equivariance_problems;

/// Arguments of `gconv forward`.
///
/// `--from`, `--to`, `--stride` and `--padding` are taken as text and converted in
/// `run`, so that a bad value gives the same one-line error as every other bad input
/// (clap's own value errors span several lines); `--stride` and `--padding` accept
/// values starting with `-` for the same reason (`--padding -1` is an error of ours).
#[derive(clap::Args)]
pub struct Args {
    /// Input space: z2 (plain images), c4 (p4) or d4 (p4m).
    #[arg(long, value_name = "z2|c4|d4")]
    pub(crate) from: String,
    /// Output group: c4 (p4) or d4 (p4m).
    #[arg(long, value_name = "c4|d4")]
    pub(crate) to: String,
    /// Input .npy (float32 or float64): (N, C_in, H, W) for z2, else (N, C_in, nti, H, W).
    #[arg(long, value_name = "x.npy")]
    pub(crate) input: PathBuf,
    /// Raw weight .npy (float32 or float64): (C_out, C_in, nti, K, K), as GrouPy stores it.
    #[arg(long, value_name = "w.npy")]
    pub(crate) weight: PathBuf,
    /// Bias .npy (float32 or float64): (C_out,), shared by the orientation planes.
    #[arg(long, value_name = "b.npy")]
    pub(crate) bias: Option<PathBuf>,
    /// Stride and padding.
    #[command(flatten)]
    pub(crate) conv: StridePadding,
    /// Forward path: auto (the core plan's choice), direct, blocked, fast or fourier.
    /// All compute the same convolution and differ only in rounding.
    #[arg(
        long,
        value_name = "auto|direct|blocked|fast|fourier",
        default_value = "auto"
    )]
    pub(crate) path: String,
    /// Output .npy (float32; int8 with --dtype int8): (N, C_out, nto, H', W'); written
    /// only when all went well.
    #[arg(long, value_name = "y.npy")]
    pub(crate) output: PathBuf,
    /// f32 (default) or int8 (TFLite int8 arithmetic: int8 x and w, int32 b, the
    /// quantization flags below).
    #[arg(long, value_name = "f32|int8", default_value = "f32")]
    pub(crate) dtype: String,
    /// int8: the input scale (float32, finite, positive).
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub(crate) input_scale: Option<String>,
    /// int8: the input zero point, in [-128, 127].
    #[arg(long, value_name = "Z", allow_hyphen_values = true)]
    pub(crate) input_zero_point: Option<String>,
    /// int8: the weight scales, float32 .npy of shape (C_out,), one per output G-channel.
    #[arg(long, value_name = "ws.npy")]
    pub(crate) weight_scale: Option<PathBuf>,
    /// int8: the output scale.
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub(crate) output_scale: Option<String>,
    /// int8: the output zero point.
    #[arg(long, value_name = "Z", allow_hyphen_values = true)]
    pub(crate) output_zero_point: Option<String>,
    /// int8: fused ReLU (clamp at the output zero point).
    #[arg(long)]
    pub(crate) relu: bool,
}

/// Runs `gconv forward`.
pub fn run(args: Args) -> crate::Outcome {
    match args.dtype.trim() {
        "f32" => {}
        "int8" => return crate::forward_int8::run(&args),
        other => return Err(format!("--dtype {other}: expected f32 or int8")),
    }
    let int8_only = [
        ("--input-scale", args.input_scale.is_some()),
        ("--input-zero-point", args.input_zero_point.is_some()),
        ("--weight-scale", args.weight_scale.is_some()),
        ("--output-scale", args.output_scale.is_some()),
        ("--output-zero-point", args.output_zero_point.is_some()),
        ("--relu", args.relu),
    ];
    if let Some((flag, _)) = int8_only.iter().find(|(_, given)| *given) {
        return Err(format!("{flag} is an int8 flag: add --dtype int8"));
    }
    let settings = parse_settings(&args)?;
    check_output_path(&args.output)?;
    let weight = load_weight(&args.weight, settings.pair)?;
    let pad = resolve_padding(&settings, &weight)?;
    let input = load_input(&args.input, &settings, &weight, pad)?;
    let bias = match &args.bias {
        Some(path) => Some(load_bias(path, &weight)?),
        None => None,
    };
    let layer = build_layer(&settings, &weight, bias)?;
    let geometry = check_geometry(&layer, &input)?;
    let output = allocate_output(&geometry, &args.output)?;
    warn_if_not_equivariant_f32(&settings, &weight, &input, pad);
    let y = run_layer(&layer, &input, output)?;
    write_output(&args.output, &y)?;
    eprintln!(
        "{}: {} -> {}",
        settings.pair.name(),
        shape_text(input.tensor.shape()),
        shape_text(y.shape())
    );
    Ok(ExitCode::SUCCESS)
}

/// The layer's hyper-parameters, parsed from the command line.
struct Settings {
    /// Input space and output group.
    pair: Pair,
    /// Stride (at least 1).
    stride: usize,
    /// Padding as parsed (not yet resolved against the kernel size).
    padding: Padding,
    /// The `--padding` value as given, for messages.
    padding_text: String,
    /// The forward path.
    path: ConvPath,
}

/// A tensor read from a `.npy` file, with the path as given on the command line.
struct Loaded {
    /// The path as given, for messages.
    path: String,
    /// The values (float64 files rounded to f32).
    tensor: Tensor,
}

/// The raw weight and the sizes it fixes.
struct Weight {
    /// The file and its tensor `(C_out, C_in, nti, K, K)`.
    file: Loaded,
    /// Input G-channels `C_in`.
    in_channels: usize,
    /// Output G-channels `C_out`.
    out_channels: usize,
    /// Kernel size `K`.
    kernel: usize,
}

/// Parses `--from`/`--to` into a pair, `--stride` and `--padding`.
fn parse_settings(args: &Args) -> Result<Settings, String> {
    let from = parse_space(&args.from).map_err(|e| format!("--from {}: {e}", args.from))?;
    let to = parse_space(&args.to).map_err(|e| format!("--to {}: {e}", args.to))?;
    let pair =
        Pair::new(from, to).map_err(|e| format!("--from {} --to {}: {e}", args.from, args.to))?;
    let (stride, padding) = args.conv.parse()?;
    let path =
        ConvPath::parse(args.path.trim()).map_err(|e| format!("--path {}: {e}", args.path))?;
    Ok(Settings {
        pair,
        stride,
        padding,
        padding_text: args.conv.padding.trim().to_string(),
        path,
    })
}

/// Refuses an output path that cannot be written (a directory, or in a directory
/// that does not exist) before any work is done.
pub(crate) fn check_output_path(path: &Path) -> Result<(), String> {
    let shown = path.display();
    if path.is_dir() {
        return Err(format!(
            "{shown}: is a directory, expected a .npy file path"
        ));
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => Err(format!(
            "{shown}: cannot write: the directory {} does not exist",
            dir.display()
        )),
        _ => Ok(()),
    }
}

/// Reads a float32 or float64 `.npy` file; the error names the file.
fn read(path: &Path) -> Result<Loaded, String> {
    let tensor = read_npy(path).map_err(|e| e.to_string())?;
    Ok(Loaded {
        path: path.display().to_string(),
        tensor,
    })
}

/// The one-line shape error: `path: expected shape E context, found F: reason`.
fn shape_error(file: &Loaded, expected: &str, context: &str, reason: &str) -> String {
    format!(
        "{}: expected shape {expected} {context}, found {}: {reason}",
        file.path,
        shape_text(file.tensor.shape())
    )
}

/// Loads the raw weight and checks its rank, its `nti` axis against `--from`, that the
/// kernel is square and that no size is zero.
fn load_weight(path: &Path, pair: Pair) -> Result<Weight, String> {
    let file = read(path)?;
    let nti = pair.from().planes();
    let reason = match *file.tensor.shape() {
        [o, i, s, k1, k2] => {
            if s != nti {
                format!(
                    "axis 2 holds the input orientation planes, {nti} for {} input",
                    pair.from()
                )
            } else if k1 != k2 {
                format!("the kernel must be square, not {k1}x{k2}")
            } else if o == 0 || i == 0 || k1 == 0 {
                "C_out, C_in and K must be at least 1".to_string()
            } else {
                return Ok(Weight {
                    file,
                    in_channels: i,
                    out_channels: o,
                    kernel: k1,
                });
            }
        }
        ref other => format!("rank {} instead of 5", other.len()),
    };
    let expected = format!("(C_out, C_in, {nti}, K, K)");
    let context = format!("for a {} layer", pair.name());
    Err(shape_error(&file, &expected, &context, &reason))
}

/// Resolves the padding against the kernel size to `[top, bottom, left, right]`;
/// `same` with an even kernel is refused with the reason and the alternatives.
fn resolve_padding(settings: &Settings, weight: &Weight) -> Result<[usize; 4], String> {
    let k = weight.kernel;
    match settings.padding.resolve(k) {
        Ok(pad) => Ok(pad),
        Err(gconv_core::Error::SameNeedsOddKernel { .. }) => Err(format!(
            "--padding same: {} has an even {k}x{k} kernel, but `same` needs an odd one: no \
             symmetric padding keeps the size for even K, and the asymmetric {lo},{hi},{lo},{hi} \
             padding other frameworks use shifts the output by half a pixel, which breaks \
             rotation equivariance; use --padding valid, --padding {half} (symmetric, {half} \
             on every side: output one pixel larger, exactly equivariant) or an explicit \
             --padding T,B,L,R (asymmetric padding runs, with a warning)",
            weight.file.path,
            lo = (k / 2).saturating_sub(1),
            hi = k / 2,
            half = k / 2,
        )),
        Err(e) => Err(format!("--padding {}: {e}", settings.padding_text)),
    }
}

/// Loads the input and checks it against the weight: rank, channels, orientation
/// planes, and that the kernel fits the padded input.
fn load_input(
    path: &Path,
    settings: &Settings,
    weight: &Weight,
    pad: [usize; 4],
) -> Result<Loaded, String> {
    let file = read(path)?;
    let (from, c_in) = (settings.pair.from(), weight.in_channels);
    let expected = match from {
        Space::Z2 => format!("(N, {c_in}, H, W)"),
        _ => format!("(N, {c_in}, {}, H, W)", from.planes()),
    };
    let context = format!(
        "for a {} layer with weight {} {}",
        settings.pair.name(),
        weight.file.path,
        shape_text(weight.file.tensor.shape())
    );
    if let Some(reason) = input_mismatch(file.tensor.shape(), from, c_in) {
        return Err(shape_error(&file, &expected, &context, &reason));
    }
    let k = weight.kernel;
    let (h, w) = spatial_size(&file.tensor);
    let (padded_h, padded_w) = (
        h.saturating_add(pad[0]).saturating_add(pad[1]),
        w.saturating_add(pad[2]).saturating_add(pad[3]),
    );
    if padded_h < k || padded_w < k {
        let min_h = k.saturating_sub(pad[0].saturating_add(pad[1])).max(1);
        let min_w = k.saturating_sub(pad[2].saturating_add(pad[3])).max(1);
        let expected = format!("{expected} with H >= {min_h} and W >= {min_w}");
        let context = format!("{context} and padding {}", settings.padding_text);
        let reason =
            format!("the {k}x{k} kernel is larger than the padded {padded_h}x{padded_w} input");
        return Err(shape_error(&file, &expected, &context, &reason));
    }
    Ok(file)
}

/// Why an input of shape `found` does not fit a layer from `from` with `c_in` input
/// channels (rank, channels, orientation planes, empty image), or `None`.
pub(crate) fn input_mismatch(found: &[usize], from: Space, c_in: usize) -> Option<String> {
    let rank = if from == Space::Z2 { 4 } else { 5 };
    let nti = from.planes();
    if found.len() != rank {
        Some(format!("rank {} instead of {rank}", found.len()))
    } else if found[1] != c_in {
        Some(format!(
            "{} input channels, but the weight has C_in = {c_in}",
            found[1]
        ))
    } else if rank == 5 && found[2] != nti {
        Some(format!(
            "{} orientation planes, but {from} input has {nti}",
            found[2]
        ))
    } else if found[rank - 2] == 0 || found[rank - 1] == 0 {
        Some("H and W must be at least 1".to_string())
    } else {
        None
    }
}

/// `(H, W)`: the last two axes of a validated input.
fn spatial_size(x: &Tensor) -> (usize, usize) {
    let s = x.shape();
    (s[s.len() - 2], s[s.len() - 1])
}

/// Loads the bias and checks it is `(C_out,)`.
fn load_bias(path: &Path, weight: &Weight) -> Result<Vec<f32>, String> {
    let file = read(path)?;
    let c_out = weight.out_channels;
    if file.tensor.shape() == [c_out] {
        return Ok(file.tensor.into_parts().1);
    }
    let context = format!(
        "for weight {} {}",
        weight.file.path,
        shape_text(weight.file.tensor.shape())
    );
    let reason = format!("one bias per output G-channel, C_out = {c_out}");
    Err(shape_error(
        &file,
        &format!("({c_out},)"),
        &context,
        &reason,
    ))
}

/// Builds the layer from the validated weight and bias, on the chosen path.
fn build_layer(
    settings: &Settings,
    weight: &Weight,
    bias: Option<Vec<f32>>,
) -> Result<AnyConv, String> {
    let mut layer = AnyConv::from_weights(
        settings.pair,
        weight.file.tensor.clone(),
        bias,
        settings.stride,
        settings.padding,
    )
    .map_err(|e| format!("{}: {e}", weight.file.path))?;
    layer.set_path(settings.path);
    Ok(layer)
}

/// The layer's geometry on this input: the library's own check of every size (and
/// that the output's size fits in memory addresses), after the checks above.
/// Also checks that the chosen `--path` takes the layer (and caches its plan).
fn check_geometry(layer: &AnyConv, input: &Loaded) -> Result<ConvGeometry, String> {
    let shape = input.tensor.shape();
    let geometry = layer
        .geometry(shape)
        .map_err(|e| format!("{}: {e}", input.path))?;
    layer.path_name(shape).map_err(|e| format!("--path: {e}"))?;
    Ok(geometry)
}

/// The output tensor, zeroed; refuses an output too large to allocate instead of
/// aborting.
fn allocate_output(geometry: &ConvGeometry, output: &Path) -> Result<Tensor, String> {
    let shape = geometry.output_shape().to_vec();
    let len = geometry.output_len();
    let too_large = || {
        format!(
            "{}: the output {} is too large to allocate",
            output.display(),
            shape_text(&shape)
        )
    };
    let mut data = Vec::new();
    data.try_reserve_exact(len).map_err(|_| too_large())?;
    data.resize(len, 0.0);
    Tensor::new(shape.clone(), data).map_err(|_| too_large())
}

/// Warns on stderr when the equivariance rule says the layer is not exactly
/// equivariant on this input: one line, then the failing parts of the rule in words,
/// one per line.
fn warn_if_not_equivariant_f32(
    settings: &Settings,
    weight: &Weight,
    input: &Loaded,
    pad: [usize; 4],
) {
    let (h, w) = spatial_size(&input.tensor);
    warn_if_not_equivariant(
        settings.pair,
        (h, w),
        (weight.kernel, settings.stride, settings.padding),
        &settings.padding_text,
        pad,
    );
}

/// The warning of [`warn_if_not_equivariant_f32`] for any dtype.
pub(crate) fn warn_if_not_equivariant(
    pair: Pair,
    (h, w): (usize, usize),
    (k, stride, padding): (usize, usize, Padding),
    padding_text: &str,
    pad: [usize; 4],
) {
    if layer_is_equivariant(h, w, k, stride, padding) {
        return;
    }
    eprintln!(
        "gconv: warning: this {} layer (K = {k}, stride {stride}, padding {}) is not exactly \
         equivariant on a {h}x{w} input; the equivariance rule fails:",
        pair.name(),
        padding_text,
    );
    let mut problems = equivariance_problems(h, w, k, stride, pad);
    if problems.is_empty() {
        problems.push("the output grid is not centred on the input".to_string());
    }
    for problem in problems {
        eprintln!("  - {problem}");
    }
}

/// Runs the layer into the allocated output.
fn run_layer(layer: &AnyConv, input: &Loaded, mut output: Tensor) -> Result<Tensor, String> {
    layer
        .forward_into(&input.tensor, output.data_mut())
        .map_err(|e| format!("{}: {e}", input.path))?;
    Ok(output)
}

/// Writes the output as float32 `.npy` (atomically: temporary file, then rename).
fn write_output(path: &Path, y: &Tensor) -> Result<(), String> {
    write_npy(path, y).map_err(|e| e.to_string())
}
