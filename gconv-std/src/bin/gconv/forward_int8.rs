//! `gconv forward --dtype int8`: one int8 layer on `.npy` files, with the arithmetic
//! of the TFLite int8 specification (`docs/int8.md`).
//!
//! ```text
//! gconv forward --from c4 --to c4 --dtype int8 \
//!   --input x.npy --input-scale S --input-zero-point Z \
//!   --weight w.npy --weight-scale ws.npy [--bias b.npy] \
//!   --output-scale S --output-zero-point Z [--relu] \
//!   --stride 1 --padding 1 --output y.npy
//! ```
//!
//! x int8 `(N, C_in, [nti,] H, W)`; w int8 `(C_out, C_in, nti, K, K)`; ws float32
//! `(C_out,)`; b int32 `(C_out,)`; y int8 `(N, C_out, nto, H', W')`. As for f32, every
//! input is validated before anything runs, errors are one line naming the file, the
//! expected and the found shape or dtype (exit 2), and the output is written last.

use std::path::Path;
use std::process::ExitCode;

use gconv_core::quant::QuantParams;
use gconv_std::npy::{read_npy_f32_strict, read_npy_i8, read_npy_i32, write_npy_i8};
use gconv_std::quant::{QConv, QConvConfig, QTensor};
use gconv_std::{Pair, Space};

use crate::args::{parse_space, shape_text};
use crate::forward::{Args, check_output_path, input_mismatch, warn_if_not_equivariant};

/// A required int8 flag's text.
fn required<'a>(value: &'a Option<String>, flag: &str) -> Result<&'a str, String> {
    value
        .as_deref()
        .map(str::trim)
        .ok_or_else(|| format!("--dtype int8 needs {flag}"))
}

/// Parses a scale: a finite, positive float32.
fn parse_scale(text: &str, flag: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(s),
        _ => Err(format!(
            "{flag} {text}: the scale must be a finite, positive number"
        )),
    }
}

/// Parses a zero point in [-128, 127].
fn parse_zero_point(text: &str, flag: &str) -> Result<i32, String> {
    match text.parse::<i32>() {
        Ok(z) if (-128..=127).contains(&z) => Ok(z),
        _ => Err(format!(
            "{flag} {text}: the zero point must be an integer in [-128, 127]"
        )),
    }
}

/// Runs `gconv forward --dtype int8`.
pub fn run(args: &Args) -> crate::Outcome {
    if args.path.trim() != "auto" {
        return Err(format!(
            "--path {}: int8 layers have one exact path (every int8 kernel gives the same bits)",
            args.path
        ));
    }
    let from = parse_space(&args.from).map_err(|e| format!("--from {}: {e}", args.from))?;
    let to = parse_space(&args.to).map_err(|e| format!("--to {}: {e}", args.to))?;
    let pair =
        Pair::new(from, to).map_err(|e| format!("--from {} --to {}: {e}", args.from, args.to))?;
    let (stride, padding) = args.conv.parse()?;
    let input_params = QuantParams {
        scale: parse_scale(
            required(&args.input_scale, "--input-scale")?,
            "--input-scale",
        )?,
        zero_point: parse_zero_point(
            required(&args.input_zero_point, "--input-zero-point")?,
            "--input-zero-point",
        )?,
    };
    let output_params = QuantParams {
        scale: parse_scale(
            required(&args.output_scale, "--output-scale")?,
            "--output-scale",
        )?,
        zero_point: parse_zero_point(
            required(&args.output_zero_point, "--output-zero-point")?,
            "--output-zero-point",
        )?,
    };
    let ws_path = args
        .weight_scale
        .as_deref()
        .ok_or("--dtype int8 needs --weight-scale ws.npy")?;
    check_output_path(&args.output)?;

    // Weight: int8 (C_out, C_in, nti, K, K), no -128.
    let (w_shape, w) = read_npy_i8(&args.weight).map_err(|e| e.to_string())?;
    let nti = from.planes();
    let wfile = args.weight.display();
    let (c_out, c_in, k) = match *w_shape.as_slice() {
        [o, i, s, k1, k2] if s == nti && k1 == k2 && o > 0 && i > 0 && k1 > 0 => (o, i, k1),
        _ => {
            return Err(format!(
                "{wfile}: expected shape (C_out, C_in, {nti}, K, K) with square nonzero K for a {} layer, found {}",
                pair.name(),
                shape_text(&w_shape)
            ));
        }
    };
    if let Some(index) = w.iter().position(|&v| v == i8::MIN) {
        return Err(format!(
            "{wfile}: weight {index} (C order) is -128: int8 weights are symmetric, in [-127, 127]"
        ));
    }
    let pad = padding
        .resolve(k)
        .map_err(|e| format!("--padding {}: {e}", args.conv.padding.trim()))?;

    // Weight scales: float32 (C_out,), finite and positive.
    let (ws_shape, ws) = read_npy_f32_strict(ws_path).map_err(|e| e.to_string())?;
    let wsfile = ws_path.display();
    if ws_shape != [c_out] {
        return Err(format!(
            "{wsfile}: expected shape ({c_out},) (one scale per output G-channel of {wfile}), found {}",
            shape_text(&ws_shape)
        ));
    }
    if let Some(i) = ws.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(format!(
            "{wsfile}: scale {i} is {}: scales must be finite and positive",
            ws[i]
        ));
    }

    // Input: int8 (N, C_in, [nti,] H, W), kernel fits.
    let (x_shape, x) = read_npy_i8(&args.input).map_err(|e| e.to_string())?;
    let xfile = args.input.display();
    let expected = match from {
        Space::Z2 => format!("(N, {c_in}, H, W)"),
        _ => format!("(N, {c_in}, {nti}, H, W)"),
    };
    if let Some(reason) = input_mismatch(&x_shape, from, c_in) {
        return Err(format!(
            "{xfile}: expected shape {expected} for weight {wfile} {}, found {}: {reason}",
            shape_text(&w_shape),
            shape_text(&x_shape)
        ));
    }
    let (h, wd) = (x_shape[x_shape.len() - 2], x_shape[x_shape.len() - 1]);
    if h + pad[0] + pad[1] < k || wd + pad[2] + pad[3] < k {
        return Err(format!(
            "{xfile}: expected shape {expected} large enough for the {k}x{k} kernel with padding {}, found {}",
            args.conv.padding.trim(),
            shape_text(&x_shape)
        ));
    }

    // Bias: int32 (C_out,).
    let bias = match &args.bias {
        Some(path) => {
            let (b_shape, b) = read_npy_i32(path).map_err(|e| e.to_string())?;
            if b_shape != [c_out] {
                return Err(format!(
                    "{}: expected shape ({c_out},) (one int32 bias per output G-channel of {wfile}), found {}",
                    path.display(),
                    shape_text(&b_shape)
                ));
            }
            Some(b)
        }
        None => None,
    };

    let config = QConvConfig {
        pair,
        stride,
        padding,
        relu: args.relu,
        input: input_params,
        output: output_params,
    };
    let layer = QConv::new(config, &w_shape, w, ws, bias).map_err(|e| format!("{wfile}: {e}"))?;
    let x = QTensor::new(x_shape, x, input_params).map_err(|e| format!("{xfile}: {e}"))?;
    warn_if_not_equivariant(
        pair,
        (h, wd),
        (k, stride, padding),
        args.conv.padding.trim(),
        pad,
    );
    let y = layer.forward(&x).map_err(|e| format!("{xfile}: {e}"))?;
    write(&args.output, &y)?;
    eprintln!(
        "{} int8: {} -> {}",
        pair.name(),
        shape_text(x.shape()),
        shape_text(y.shape())
    );
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, y: &QTensor) -> Result<(), String> {
    write_npy_i8(path, y.shape(), y.data()).map_err(|e| e.to_string())
}
