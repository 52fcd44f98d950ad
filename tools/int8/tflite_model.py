#!/usr/bin/env python3
"""Run a gconv int8 model (model.json + model.safetensors, dtype "int8") through LiteRT's
REFERENCE kernels and write its int8 logits.

    tools/int8/.venv/bin/python tools/int8/tflite_model.py --model DIR --images X.npy \\
        --output logits.npy [--save-tflite model.tflite]

X.npy: float32 (N, C, H, W) (or (N, C, |G|, H, W) for a c4/d4 input). Output: int8
(N, out_features) (or the last layer's output in our layout if the model does not end in a
dense layer).

The TFLite graph (NHWC, our channel c*|G| + t):
  float32 input -> QUANTIZE (input scale / zero point)
  conv            [PAD (input zero point)] -> CONV_2D VALID, per-channel filter scales
                  (weight_scale[o] for the |G| expanded channels of o), int32 bias with scale
                  input_scale*weight_scale[o] (a zero bias when "bias": false), fused RELU
  max_pool        [PADV2 (-128)] -> MAX_POOL_2D VALID
  avg_pool        [PAD (zero point): padded positions count, as real zeros] ->
                  AVERAGE_POOL_2D VALID
  relu            RELU (same scale / zero point)
  group_pool      RESHAPE (N,H,W,C*G)->(N,H*W*C,G,1), MAX_/AVERAGE_POOL_2D 1xG stride 1xG,
                  RESHAPE -> (N,H,W,C)
  global_avg_pool AVERAGE_POOL_2D filter HxW VALID -> (N, C*G)
  dense           [TRANSPOSE (N,H,W,C*G)->(N,C*G,H,W) so that the flattening is our C order
                  (C, G, H, W)] -> RESHAPE (N, in) -> FULLY_CONNECTED (per-tensor weight scale)
The graph is built by hand (tfl.py): every scale and zero point is the model's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import tfl  # noqa: E402
from tfl import FLOAT32, INT8, INT32, OP  # noqa: E402

LAYER_KEYS = {
    "conv": {"kind", "name", "from", "to", "in_channels", "out_channels", "kernel", "stride",
             "padding", "bias", "relu", "output_scale", "output_zero_point"},
    "max_pool": {"kind", "window", "stride", "padding"},
    "avg_pool": {"kind", "window", "stride", "padding"},
    "relu": {"kind"},
    "group_pool": {"kind", "mode"},
    "global_avg_pool": {"kind"},
    "dense": {"kind", "name", "in_features", "out_features", "bias", "relu", "output_scale",
              "output_zero_point"},
}
TOP_KEYS = {"format", "version", "dtype", "input", "accept_non_equivariant", "layers"}
INPUT_KEYS = {"space", "channels", "height", "width", "scale", "zero_point"}


def resolve_padding(padding, k: int) -> tuple[int, int, int, int]:
    """docs/model-format.md: "valid", "same" (odd K: (K-1)/2 each side), "P", "T,B,L,R"."""
    if padding is None or padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        if k % 2 == 0:
            raise ValueError("'same' padding needs an odd kernel")
        return ((k - 1) // 2,) * 4
    parts = str(padding).split(",")
    if len(parts) == 1:
        return (int(parts[0]),) * 4
    if len(parts) == 4:
        return tuple(int(p) for p in parts)
    raise ValueError(f"bad padding {padding!r}")


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Minimal safetensors reader (8-byte LE header length, JSON header, data)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    dt = {"I8": "|i1", "I32": "<i4", "F32": "<f4"}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=dt[info["dtype"]]).reshape(info["shape"])
    return out


def check_keys(obj: dict, allowed: set, where: str):
    unknown = set(obj) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")


class State:
    """The current activation: TFLite tensor id + our logical shape."""

    def __init__(self, tensor, kind, c, g, h, w):
        self.t, self.kind, self.c, self.g, self.h, self.w = tensor, kind, c, g, h, w
        # kind: "map" (NHWC (N,H,W,C*G)) or "vector" (N, F)


def build(model: dict, weights: dict, batch: int) -> tuple[bytes, tuple]:
    """The TFLite flatbuffer of the model for a fixed batch; returns (blob, output layout)
    where the layout is ("vector", F) or ("map", C, G, H, W)."""
    check_keys(model, TOP_KEYS, "model.json")
    if model.get("format") != "gconv-model" or model.get("version") != 1:
        raise ValueError("not a gconv-model version 1")
    if model.get("dtype") != "int8":
        raise ValueError("tflite_model.py handles dtype int8 models only")
    inp = model["input"]
    check_keys(inp, INPUT_KEYS, "input")
    space = inp["space"]
    g0 = tfl.ORDER[space]
    c, h, w = inp["channels"], inp["height"], inp["width"]
    used = set()

    def tensor_of(name, shape, dtype):
        if name not in weights:
            raise ValueError(f"missing tensor {name}")
        a = weights[name]
        if tuple(a.shape) != tuple(shape) or a.dtype != np.dtype(dtype):
            raise ValueError(f"{name}: shape {a.shape} {a.dtype}, expected {shape} {dtype}")
        used.add(name)
        return a

    gr = tfl.Graph()
    xf = gr.tensor("image", (batch, h, w, c * g0), FLOAT32)
    in_scale = np.float32(inp["scale"])
    in_zp = int(inp["zero_point"])
    xq = gr.tensor("quantized", (batch, h, w, c * g0), INT8, scale=in_scale, zero_point=in_zp)
    gr.quantize(xf, xq)
    st = State(xq, "map", c, g0, h, w)

    def new_like(name, shape):
        return gr.like(name, shape, st.t)

    for li, layer in enumerate(model["layers"]):
        kind = layer.get("kind")
        if kind not in LAYER_KEYS:
            raise ValueError(f"layer {li}: unknown kind {kind!r}")
        check_keys(layer, LAYER_KEYS[kind], f"layer {li} ({kind})")
        tag = f"l{li}_{kind}"
        if kind == "conv":
            if st.kind != "map":
                raise ValueError(f"layer {li}: conv on a vector")
            fr, to = layer["from"], layer["to"]
            nti, nto = tfl.ORDER[fr], tfl.ORDER[to]
            if fr != {1: "z2", 4: "c4", 8: "d4"}[st.g] or layer["in_channels"] != st.c:
                raise ValueError(f"layer {li}: conv from {fr} x{layer['in_channels']} on a "
                                 f"map with {st.c} channels x {st.g} planes")
            k = layer["kernel"]
            stride = layer.get("stride", 1)
            t, b, l, r = resolve_padding(layer.get("padding", "valid"), k)
            co, ci = layer["out_channels"], layer["in_channels"]
            name = layer["name"]
            wq = tensor_of(f"{name}.weight", (co, ci, nti, k, k), "|i1")
            ws = tensor_of(f"{name}.weight_scale", (co,), "<f4")
            bias = tensor_of(f"{name}.bias", (co,), "<i4") if layer["bias"] else None
            cur = st.t
            s_in, zp_in = gr.qparams(cur)
            hp, wp = st.h + t + b, st.w + l + r
            if (t, b, l, r) != (0, 0, 0, 0):
                cur = new_like(f"{tag}_pad", (batch, hp, wp, st.c * st.g))
                gr.pad(st.t, cur, [[0, 0], [t, b], [l, r], [0, 0]])
            bank = tfl.expand_bank(np.asarray(wq), fr, to)  # (co*nto, ci*nti, K, K)
            ws_exp = np.repeat(ws, nto)
            wt = gr.tensor(f"{name}.filter", (co * nto, k, k, ci * nti), INT8,
                           data=bank.transpose(0, 2, 3, 1), scale=ws_exp, zero_point=0,
                           quantized_dimension=0)
            bt = None
            if bias is not None:
                bt = gr.tensor(f"{name}.bias", (co * nto,), INT32, data=np.repeat(bias, nto),
                               scale=gr.bias_scales(cur, wt), zero_point=0)
            ho, wo = (hp - k) // stride + 1, (wp - k) // stride + 1
            y = gr.tensor(f"{tag}_out", (batch, ho, wo, co * nto), INT8,
                          scale=np.float32(layer["output_scale"]),
                          zero_point=int(layer["output_zero_point"]))
            gr.conv2d(cur, wt, bt, y, stride, bool(layer["relu"]))
            st = State(y, "map", co, nto, ho, wo)
        elif kind in ("max_pool", "avg_pool"):
            if st.kind != "map":
                raise ValueError(f"layer {li}: pooling on a vector")
            k = layer["window"]
            stride = layer.get("stride", k)
            t, b, l, r = resolve_padding(layer.get("padding", "valid"), k)
            cur = st.t
            hp, wp = st.h + t + b, st.w + l + r
            if (t, b, l, r) != (0, 0, 0, 0):
                cur = new_like(f"{tag}_pad", (batch, hp, wp, st.c * st.g))
                if kind == "max_pool":
                    s, zp = gr.qparams(st.t)
                    fill = gr.tensor(f"{tag}_fill", (1,), INT8, data=[-128], scale=s,
                                     zero_point=zp)
                    gr.pad(st.t, cur, [[0, 0], [t, b], [l, r], [0, 0]], value_tensor=fill)
                else:
                    gr.pad(st.t, cur, [[0, 0], [t, b], [l, r], [0, 0]])
            ho, wo = (hp - k) // stride + 1, (wp - k) // stride + 1
            y = new_like(f"{tag}_out", (batch, ho, wo, st.c * st.g))
            gr.pool(OP.MAX_POOL_2D if kind == "max_pool" else OP.AVERAGE_POOL_2D, cur, y, k,
                    stride)
            st = State(y, "map", st.c, st.g, ho, wo)
        elif kind == "relu":
            y = new_like(f"{tag}_out", gr.shape(st.t))
            gr.relu(st.t, y)
            st = State(y, st.kind, st.c, st.g, st.h, st.w)
        elif kind == "group_pool":
            if st.kind != "map" or st.g == 1:
                raise ValueError(f"layer {li}: group_pool needs a group map")
            mode = layer["mode"]
            if mode not in ("max", "mean"):
                raise ValueError(f"layer {li}: group_pool mode {mode!r}")
            rows = new_like(f"{tag}_rows", (batch, st.h * st.w * st.c, st.g, 1))
            gr.reshape(st.t, rows)
            p = new_like(f"{tag}_pooled", (batch, st.h * st.w * st.c, 1, 1))
            gr.pool(OP.MAX_POOL_2D if mode == "max" else OP.AVERAGE_POOL_2D, rows, p,
                    (1, st.g), (1, st.g))
            y = new_like(f"{tag}_out", (batch, st.h, st.w, st.c))
            gr.reshape(p, y)
            st = State(y, "map", st.c, 1, st.h, st.w)
        elif kind == "global_avg_pool":
            if st.kind != "map":
                raise ValueError(f"layer {li}: global_avg_pool on a vector")
            p = new_like(f"{tag}_pooled", (batch, 1, 1, st.c * st.g))
            gr.pool(OP.AVERAGE_POOL_2D, st.t, p, (st.h, st.w), (st.h, st.w))
            y = new_like(f"{tag}_out", (batch, st.c * st.g))
            gr.reshape(p, y)
            st = State(y, "vector", st.c * st.g, 1, 1, 1)
        elif kind == "dense":
            name = layer["name"]
            fin, fout = layer["in_features"], layer["out_features"]
            cur = st.t
            if st.kind == "map":
                feats = st.c * st.g * st.h * st.w
                if st.h * st.w > 1:
                    tr = new_like(f"{tag}_chw", (batch, st.c * st.g, st.h, st.w))
                    gr.transpose(st.t, tr, [0, 3, 1, 2])
                    cur = tr
                flat = new_like(f"{tag}_flat", (batch, feats))
                gr.reshape(cur, flat)
                cur = flat
            else:
                feats = st.c
            if feats != fin:
                raise ValueError(f"layer {li}: dense in_features {fin}, input has {feats}")
            wq = tensor_of(f"{name}.weight", (fout, fin), "|i1")
            ws = tensor_of(f"{name}.weight_scale", (1,), "<f4")
            bias = tensor_of(f"{name}.bias", (fout,), "<i4") if layer["bias"] else None
            wt = gr.tensor(f"{name}.weight", (fout, fin), INT8, data=wq, scale=ws,
                           zero_point=0)
            bt = None
            if bias is not None:
                bt = gr.tensor(f"{name}.bias", (fout,), INT32, data=bias,
                               scale=gr.bias_scales(cur, wt), zero_point=0)
            y = gr.tensor(f"{tag}_out", (batch, fout), INT8,
                          scale=np.float32(layer["output_scale"]),
                          zero_point=int(layer["output_zero_point"]))
            gr.fully_connected(cur, wt, bt, y, bool(layer["relu"]))
            st = State(y, "vector", fout, 1, 1, 1)
    unused = set(weights) - used
    if unused:
        raise ValueError(f"tensors not used by the model: {sorted(unused)}")
    layout = ("vector", st.c) if st.kind == "vector" else ("map", st.c, st.g, st.h, st.w)
    return gr.finish([xf], [st.t]), layout


def images_to_nhwc(images: np.ndarray, model: dict) -> np.ndarray:
    inp = model["input"]
    g0 = tfl.ORDER[inp["space"]]
    exp = ((inp["channels"], inp["height"], inp["width"]) if g0 == 1 else
           (inp["channels"], g0, inp["height"], inp["width"]))
    if tuple(images.shape[1:]) != exp:
        raise ValueError(f"images {images.shape}, model input (N,) + {exp}")
    return tfl.to_nhwc(np.asarray(images, dtype=np.float32))


def run_model(model_dir: Path, images: np.ndarray, save_tflite: Path | None = None):
    model = json.loads((model_dir / "model.json").read_text())
    weights = load_safetensors(model_dir / "model.safetensors")
    blob, layout = build(model, weights, images.shape[0])
    if save_tflite is not None:
        save_tflite.write_bytes(blob)
    [y] = tfl.run(blob, [images_to_nhwc(images, model)])
    if layout[0] == "map":
        _, c, g, h, w = layout
        y = tfl.from_nhwc(y, g if g > 1 else None)
    return y


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--images", required=True, type=Path)
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--save-tflite", type=Path)
    a = ap.parse_args(argv)
    images = np.load(a.images)
    if images.dtype != np.float32:
        raise SystemExit(f"images must be float32, got {images.dtype}")
    y = run_model(a.model, images, a.save_tflite)
    with open(a.output, "wb") as f:
        np.lib.format.write_array(f, np.ascontiguousarray(y.astype(np.int8)), version=(1, 0))
    print(f"{a.output}: int8 {y.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
