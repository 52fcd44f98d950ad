#!/usr/bin/env python3
"""Golden set 3 self-test: a small random int8 G-CNN in the gconv int8 model format, run
through tflite_model.py (LiteRT reference kernels).

    tools/int8/.venv/bin/python tools/int8/make_model_selftest.py
        # -> tools/golden/int8-model-selftest/{model.json, model.safetensors, images.npy,
        #    logits.npy, meta.json}

Model: conv z2->c4 (1->4, 3x3 same, bias, relu) -> max_pool 2 -> conv c4->c4 (4->5, 3x3 same,
no bias, relu) -> group_pool max -> global_avg_pool -> dense 5->10 (bias). Output scales are
calibrated on the images (int8_ref emulation). Checks, before writing:
  * the TFLite logits equal a layer-by-layer int8_ref emulation of the model, bit for bit;
  * the logits of the images rotated by 90, 180, 270 degrees equal those of the images
    (an int8 P4 G-CNN is exactly invariant: every step is integer arithmetic that commutes
    with the rotation);
  * the dequantized logits are close to a float64 forward with the dequantized weights.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

import golden_io as io
import int8_ref as R
import tfl
import tflite_model as TM

SEED = 20250613
HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "golden" / "int8-model-selftest"
N_IMAGES = 8


def make_images(rng, in_scale, in_zp):
    imgs = rng.uniform(0.0, 1.0, size=(N_IMAGES, 1, 8, 8)).astype(np.float32)
    # image 0: float32 x/scale lands exactly half-way for every pixel (QUANTIZE rounds half
    # away from zero, in float32); image 1: values outside the range (clamping)
    ties = []
    k = 0
    while len(ties) < 64:
        x = np.float32((k + 0.5) * float(in_scale))
        if np.float32(x / in_scale) == np.float32(k + 0.5):
            ties.append(x)
        k = (k + 1) % 255
    imgs[0, 0] = np.array(ties, dtype=np.float32).reshape(8, 8)
    imgs[1, 0, :4] = rng.uniform(-0.5, 0.0, size=(4, 8)).astype(np.float32)
    imgs[1, 0, 4:] = rng.uniform(1.0, 1.5, size=(4, 8)).astype(np.float32)
    return imgs


def calib(real, relu, rng):
    """Output (scale, zero point) from dequantized values: relu outputs [0, max] -> zp -128;
    otherwise [min, max] with an asymmetric zero point."""
    hi = float(np.quantile(real, 0.995))
    lo = float(np.quantile(real, 0.005))
    if relu:
        return np.float32(max(hi, 1e-6) / 255.0), -128
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    s = np.float32((hi - lo) / 255.0)
    zp = int(np.clip(np.round(-128 - lo / float(s)), -128, 127))
    return s, zp


# ---- int8_ref emulation of a whole model (our layouts, no TFLite) ----------------------------


def emulate(model, weights, images, calibrate_rng=None):
    """Runs the model in int8_ref; when calibrate_rng is given, fills in the output scales /
    zero points of conv and dense layers (model is modified) from the dequantized
    accumulators."""
    inp = model["input"]
    s, zp = np.float32(inp["scale"]), inp["zero_point"]
    x = R.quantize(images, s, zp)  # (N, C, H, W)
    for layer in model["layers"]:
        kind = layer["kind"]
        if kind == "conv":
            fr, to = layer["from"], layer["to"]
            nto = tfl.ORDER[to]
            name = layer["name"]
            wq = weights[f"{name}.weight"]
            bank = tfl.expand_bank(wq, fr, to)
            ws = np.repeat(weights[f"{name}.weight_scale"], nto)
            bias = np.repeat(weights[f"{name}.bias"], nto) if layer["bias"] else None
            pad = TM.resolve_padding(layer["padding"], layer["kernel"])
            n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
            xf = x.reshape(n, -1, h, w)
            if calibrate_rng is not None:
                # dequantized accumulator, via an identity-ish requantization in float64
                acc = conv_acc(xf, bank, bias, zp, layer["stride"], pad)
                real = acc * (float(s) * ws.astype(np.float64))[None, :, None, None]
                if layer["relu"]:
                    real = np.maximum(real, 0)
                os_, ozp = calib(real.reshape(-1), layer["relu"], calibrate_rng)
                layer["output_scale"], layer["output_zero_point"] = io.f32(os_), ozp
            os_, ozp = np.float32(layer["output_scale"]), layer["output_zero_point"]
            y = R.conv(xf, bank, bias, s, zp, ws, os_, ozp, layer["stride"], pad,
                       layer["relu"])
            x = y.reshape(n, layer["out_channels"], nto, y.shape[-2], y.shape[-1])
            s, zp = os_, ozp
        elif kind in ("max_pool", "avg_pool"):
            k = layer["window"]
            n = x.shape[0]
            sh = x.shape
            pad = TM.resolve_padding(layer.get("padding", "valid"), k)
            x4 = x.reshape(n, -1, sh[-2], sh[-1])
            if kind == "max_pool":
                y = R.max_pool(x4, k, layer.get("stride", k), pad)
            else:  # padded positions are real zeros (the zero point) and count
                t, b, l, r = pad
                x4 = np.pad(x4, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=zp)
                y = R.avg_pool(x4, k, layer.get("stride", k))
            x = y.reshape(sh[:-2] + y.shape[-2:])
        elif kind == "relu":
            x = np.maximum(x, np.int8(zp))
        elif kind == "group_pool":
            if layer["mode"] == "max":
                x = x.max(axis=2)
            else:
                n, c, gg, h, w = x.shape
                v = np.moveaxis(x, 2, -1).reshape(n, c * h * w, 1, gg)
                x = R.avg_pool(v, (1, gg), (1, gg)).reshape(n, c, h, w)
        elif kind == "global_avg_pool":
            n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
            y = R.avg_pool(x.reshape(n, -1, h, w), (h, w), (h, w))
            x = y.reshape(x.shape[:-2])
        elif kind == "dense":
            name = layer["name"]
            xf = x.reshape(x.shape[0], -1)
            wq = weights[f"{name}.weight"]
            wsc = weights[f"{name}.weight_scale"][0]
            bias = weights[f"{name}.bias"] if layer["bias"] else None
            if calibrate_rng is not None:
                acc = (xf.astype(np.int64) - zp) @ wq.astype(np.int64).T
                if bias is not None:
                    acc = acc + bias
                real = acc * (float(s) * float(wsc))
                os_, ozp = calib(real.reshape(-1), layer["relu"], calibrate_rng)
                layer["output_scale"], layer["output_zero_point"] = io.f32(os_), ozp
            os_, ozp = np.float32(layer["output_scale"]), layer["output_zero_point"]
            x = R.fully_connected(xf, wq, bias, s, zp, wsc, os_, ozp, layer["relu"], "float")
            s, zp = os_, ozp
        else:
            raise ValueError(kind)
    return x


def conv_acc(xf, bank, bias, zp, stride, pad):
    t, b, l, r = pad
    xp = np.pad(xf.astype(np.int64) - zp, ((0, 0), (0, 0), (t, b), (l, r)))
    k = bank.shape[-1]
    ho, wo = (xp.shape[2] - k) // stride + 1, (xp.shape[3] - k) // stride + 1
    acc = np.zeros((xf.shape[0], bank.shape[0], ho, wo), dtype=np.int64)
    for p in range(k):
        for q in range(k):
            win = xp[:, :, p:p + stride * (ho - 1) + 1:stride, q:q + stride * (wo - 1) + 1:stride]
            acc += np.einsum("nchw,oc->nohw", win, bank[:, :, p, q].astype(np.int64))
    if bias is not None:
        acc += bias.astype(np.int64)[None, :, None, None]
    return acc


def float_forward(model, weights, images):
    """float64 forward with the dequantized weights and biases (no activation rounding)."""
    x = np.asarray(images, dtype=np.float64)
    s_in = float(model["input"]["scale"])
    for layer in model["layers"]:
        kind = layer["kind"]
        if kind == "conv":
            name, nto = layer["name"], tfl.ORDER[layer["to"]]
            ws = np.repeat(weights[f"{name}.weight_scale"].astype(np.float64), nto)
            bank = tfl.expand_bank(weights[f"{name}.weight"], layer["from"], layer["to"])
            bank = bank.astype(np.float64) * ws[:, None, None, None]
            t, b, l, r = TM.resolve_padding(layer["padding"], layer["kernel"])
            n = x.shape[0]
            xf = np.pad(x.reshape(n, -1, x.shape[-2], x.shape[-1]), ((0, 0), (0, 0), (t, b),
                                                                      (l, r)))
            k, st = layer["kernel"], layer["stride"]
            ho, wo = (xf.shape[2] - k) // st + 1, (xf.shape[3] - k) // st + 1
            y = np.zeros((n, bank.shape[0], ho, wo))
            for p in range(k):
                for q in range(k):
                    y += np.einsum("nchw,oc->nohw",
                                   xf[:, :, p:p + st * (ho - 1) + 1:st, q:q + st * (wo - 1) + 1:st],
                                   bank[:, :, p, q])
            if layer["bias"]:
                y += (np.repeat(weights[f"{name}.bias"], nto) * s_in * ws)[None, :, None, None]
            if layer["relu"]:
                y = np.maximum(y, 0)
            x = y.reshape(n, layer["out_channels"], nto, ho, wo)
            s_in = float(layer["output_scale"])
        elif kind == "max_pool":
            n, sh = x.shape[0], x.shape
            v = x.reshape(n, -1, sh[-2] // 2, 2, sh[-1] // 2, 2).max(axis=(3, 5))
            x = v.reshape(sh[:-2] + v.shape[-2:])
        elif kind == "group_pool":
            x = x.max(axis=2)
        elif kind == "global_avg_pool":
            x = x.mean(axis=(-2, -1))
        elif kind == "dense":
            name = layer["name"]
            wsc = float(weights[f"{name}.weight_scale"][0])
            w = weights[f"{name}.weight"].astype(np.float64) * wsc
            x = x.reshape(x.shape[0], -1) @ w.T
            if layer["bias"]:
                x = x + weights[f"{name}.bias"] * s_in * wsc
            s_in = float(layer["output_scale"])
    return x


def coverage_check(rng):
    """Two more models, written to tools/golden/int8-model-coverage-{a,b}/, through the other paths of tflite_model.py: a
    c4 input, non-square sizes, explicit and asymmetric paddings, stride 2, avg_pool with
    padding, max_pool with padding, a relu layer, group_pool mean, a D4 conv, a dense on a
    spatial group map (the TRANSPOSE path) and on a vector, conv without bias, dense + relu.
    TFLite must equal the int8_ref emulation bit for bit."""
    import tempfile
    models = []
    # model A: c4 input
    models.append(({
        "format": "gconv-model", "version": 1, "dtype": "int8",
        "input": {"space": "c4", "channels": 2, "height": 6, "width": 7,
                  "scale": io.f32(0.03), "zero_point": 5},
        "accept_non_equivariant": True,
        "layers": [
            {"kind": "conv", "name": "a", "from": "c4", "to": "c4", "in_channels": 2,
             "out_channels": 3, "kernel": 2, "stride": 1, "padding": "0,1,0,1", "bias": False,
             "relu": False, "output_scale": None, "output_zero_point": None},
            {"kind": "relu"},
            {"kind": "avg_pool", "window": 2, "stride": 2, "padding": "1"},
            {"kind": "conv", "name": "b", "from": "c4", "to": "c4", "in_channels": 3,
             "out_channels": 2, "kernel": 3, "stride": 2, "padding": "1,1,0,2", "bias": True,
             "relu": True, "output_scale": None, "output_zero_point": None},
            {"kind": "dense", "name": "fc", "in_features": 2 * 4 * 2 * 2, "out_features": 6,
             "bias": True, "relu": True, "output_scale": None, "output_zero_point": None},
            {"kind": "dense", "name": "fc2", "in_features": 6, "out_features": 4,
             "bias": False, "relu": False, "output_scale": None, "output_zero_point": None},
        ]}, (3, 2, 4, 6, 7)))
    # model B: z2 -> d4
    models.append(({
        "format": "gconv-model", "version": 1, "dtype": "int8",
        "input": {"space": "z2", "channels": 2, "height": 9, "width": 9,
                  "scale": io.f32(0.02), "zero_point": -20},
        "accept_non_equivariant": False,
        "layers": [
            {"kind": "conv", "name": "c1", "from": "z2", "to": "d4", "in_channels": 2,
             "out_channels": 2, "kernel": 3, "stride": 2, "padding": "valid", "bias": True,
             "relu": True, "output_scale": None, "output_zero_point": None},
            {"kind": "max_pool", "window": 3, "stride": 1, "padding": "1"},
            {"kind": "conv", "name": "c2", "from": "d4", "to": "d4", "in_channels": 2,
             "out_channels": 3, "kernel": 3, "stride": 1, "padding": "same", "bias": True,
             "relu": False, "output_scale": None, "output_zero_point": None},
            {"kind": "group_pool", "mode": "mean"},
            {"kind": "dense", "name": "fc", "in_features": 3 * 4 * 4, "out_features": 5,
             "bias": True, "relu": False, "output_scale": None, "output_zero_point": None},
        ]}, (3, 2, 9, 9)))
    for name, (model, ishape) in zip("ab", models):
        weights = {}
        for layer in model["layers"]:
            if layer["kind"] == "conv":
                nti = tfl.ORDER[layer["from"]]
                co, ci, k = layer["out_channels"], layer["in_channels"], layer["kernel"]
                weights[layer["name"] + ".weight"] = rng.integers(
                    -127, 128, size=(co, ci, nti, k, k)).astype(np.int8)
                weights[layer["name"] + ".weight_scale"] = rng.uniform(
                    0.001, 0.02, size=co).astype(np.float32)
                if layer["bias"]:
                    weights[layer["name"] + ".bias"] = rng.integers(
                        -5000, 5001, size=co).astype(np.int32)
            elif layer["kind"] == "dense":
                fo, fi = layer["out_features"], layer["in_features"]
                weights[layer["name"] + ".weight"] = rng.integers(
                    -127, 128, size=(fo, fi)).astype(np.int8)
                weights[layer["name"] + ".weight_scale"] = np.array(
                    [rng.uniform(0.001, 0.02)], np.float32)
                if layer["bias"]:
                    weights[layer["name"] + ".bias"] = rng.integers(
                        -5000, 5001, size=fo).astype(np.int32)
        images = rng.normal(0, 1, size=ishape).astype(np.float32)
        emulate(model, weights, images, calibrate_rng=rng)
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            io.write_json(d / "model.json", model)
            save_file(weights, str(d / "model.safetensors"))
            y = TM.run_model(d, images)
        emu = emulate(model, weights, images)
        assert np.array_equal(y, emu), "coverage model: TFLite differs from int8_ref"
        out = HERE.parent / "golden" / f"int8-model-coverage-{name}"
        out.mkdir(parents=True, exist_ok=True)
        io.write_json(out / "model.json", model)
        save_file(weights, str(out / "model.safetensors"))
        (out / "model.safetensors").chmod(0o644)
        for fname, arr in (("images.npy", images), ("logits.npy", y)):
            with open(out / fname, "wb") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), version=(1, 0))
        print(f"coverage model ({model['input']['space']} input, "
              f"{len(model['layers'])} layers): TFLite == int8_ref, output {y.shape}, "
              f"{len(np.unique(y))} distinct values")


def main():
    rng = np.random.default_rng(SEED)
    in_scale, in_zp = np.float32(1.0 / 255.0), -128
    model = {
        "format": "gconv-model", "version": 1, "dtype": "int8",
        "input": {"space": "z2", "channels": 1, "height": 8, "width": 8,
                  "scale": io.f32(in_scale), "zero_point": in_zp},
        "accept_non_equivariant": False,
        "layers": [
            {"kind": "conv", "name": "conv1", "from": "z2", "to": "c4", "in_channels": 1,
             "out_channels": 4, "kernel": 3, "stride": 1, "padding": "same", "bias": True,
             "relu": True, "output_scale": None, "output_zero_point": None},
            {"kind": "max_pool", "window": 2, "stride": 2, "padding": "valid"},
            {"kind": "conv", "name": "conv2", "from": "c4", "to": "c4", "in_channels": 4,
             "out_channels": 5, "kernel": 3, "stride": 1, "padding": "same", "bias": False,
             "relu": True, "output_scale": None, "output_zero_point": None},
            {"kind": "group_pool", "mode": "max"},
            {"kind": "global_avg_pool"},
            {"kind": "dense", "name": "fc", "in_features": 5, "out_features": 10, "bias": True,
             "relu": False, "output_scale": None, "output_zero_point": None},
        ],
    }
    weights = {
        "conv1.weight": rng.integers(-127, 128, size=(4, 1, 1, 3, 3)).astype(np.int8),
        "conv1.weight_scale": rng.uniform(0.002, 0.02, size=4).astype(np.float32),
        "conv1.bias": rng.integers(-3000, 3001, size=4).astype(np.int32),
        "conv2.weight": rng.integers(-127, 128, size=(5, 4, 4, 3, 3)).astype(np.int8),
        "conv2.weight_scale": rng.uniform(0.001, 0.01, size=5).astype(np.float32),
        "fc.weight": rng.integers(-127, 128, size=(10, 5)).astype(np.int8),
        "fc.weight_scale": np.array([rng.uniform(0.002, 0.02)], dtype=np.float32),
        "fc.bias": rng.integers(-2000, 2001, size=10).astype(np.int32),
    }
    images = make_images(rng, in_scale, in_zp)
    emulate(model, weights, images, calibrate_rng=rng)  # fills the output scales

    OUT.mkdir(parents=True, exist_ok=True)
    io.write_json(OUT / "model.json", model)
    save_file(weights, str(OUT / "model.safetensors"))
    (OUT / "model.safetensors").chmod(0o644)  # save_file creates it 0600
    with open(OUT / "images.npy", "wb") as f:
        np.lib.format.write_array(f, images, version=(1, 0))

    # the CLI, as a user runs it
    cmd = [sys.executable, str(HERE / "tflite_model.py"), "--model", str(OUT), "--images",
           str(OUT / "images.npy"), "--output", str(OUT / "logits.npy")]
    subprocess.run(cmd, check=True)
    logits = np.load(OUT / "logits.npy")
    assert logits.dtype == np.int8 and logits.shape == (N_IMAGES, 10)

    # 1. bit-exact against the int8_ref emulation
    loaded = TM.load_safetensors(OUT / "model.safetensors")
    for k, v in weights.items():
        assert np.array_equal(loaded[k], v) and loaded[k].dtype == v.dtype, k
    emu = emulate(json.loads((OUT / "model.json").read_text()), loaded, images)
    assert np.array_equal(emu, logits), (emu, logits)
    # 2. exact invariance under rotations
    for r in (1, 2, 3):
        rot = np.ascontiguousarray(np.rot90(images, r, axes=(-2, -1)))
        lr = TM.run_model(OUT, rot)
        assert np.array_equal(lr, logits), f"rotation {r}: logits differ"
    # 3. close to the float forward
    # float64 forward of the dequantized quantized input (so that clamping of image 1 and the
    # input rounding are not counted), dequantized weights, no intermediate rounding
    xq = R.quantize(images, in_scale, in_zp)
    fl = float_forward(model, weights, (xq.astype(np.float64) - in_zp) * float(in_scale))
    ls, lz = model["layers"][-1]["output_scale"], model["layers"][-1]["output_zero_point"]
    deq = (logits.astype(np.float64) - lz) * ls
    unsat = (logits > -128) & (logits < 127)
    err = np.abs(deq - fl)[unsat].max() / ls
    n_sat = int((~unsat).sum())
    span = (fl.max() - fl.min()) / ls
    meta = {"generator": "tools/int8/make_model_selftest.py", "seed": SEED,
            "resolver": "BUILTIN_REF", "versions": io.versions(),
            "images": list(images.shape), "logits": list(logits.shape),
            "matches_int8_ref_emulation": True, "invariant_under_rot90": True,
            "saturated_logits": n_sat,
            "max_abs_error_vs_float64_forward_in_output_steps_unsaturated": round(float(err), 3),
            "float_logit_span_in_output_steps": round(float(span), 1)}
    io.write_json(OUT / "meta.json", meta)
    coverage_check(np.random.default_rng(SEED + 1))
    print(f"self-test model -> {OUT}")
    print(json.dumps(meta, indent=1))
    print("logits:\n", logits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
