#!/usr/bin/env python3
"""Golden set 1: int8 G-convolutions computed by LiteRT's reference CONV_2D.

    tools/int8/.venv/bin/python tools/int8/make_conv_goldens.py   # -> tools/golden/int8-conv/

Grid: pair {z2-c4, c4-c4, z2-d4, d4-d4} x K 1..5 x stride {1, 2} x padding {valid, same,
asym} x size {7x7, 6x8} = 240 cases (see README.md). Each case: the raw GrouPy weight is
expanded to the OIHW bank (tfl.expand_bank), transposed to OHWI and run as one CONV_2D
(padding VALID) after a PAD op (int8, pads with the input zero point) when the padding is
nonzero. Every output is also checked bit for bit against int8_ref.conv (the numpy statement
of the reference arithmetic).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import golden_io as io
import int8_ref as R
import tfl
from tfl import INT8, INT32

SEED = 20250611
HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "golden" / "int8-conv"
GROUPY = HERE.parents[1] / "tests" / "data" / "groupy-indices"  # committed GrouPy tables

PAIRS = [("z2", "c4"), ("c4", "c4"), ("z2", "d4"), ("d4", "d4")]
SIZES = [(7, 7), (6, 8)]
N, C_OUT = 2, 3


def paddings(k: int) -> dict:
    same = [(k - 1) // 2] * 4 if k % 2 else [k // 2 - 1, k // 2, k // 2 - 1, k // 2]
    return {"valid": [0, 0, 0, 0], "same": same, "asym": [1, 0, 0, 1]}


def choose_output_qparams(real: np.ndarray, rng, pow2: bool):
    """Output zero point uniform in [-30, 30]; scale so that the 98th percentiles of the
    positive and negative dequantized accumulator values land at the ends of the int8 range
    (a few percent saturate, the rest spread over the range)."""
    zp = int(rng.integers(-30, 31))
    pos, neg = real[real > 0], -real[real < 0]
    cands = []
    if pos.size:
        cands.append(np.quantile(pos, 0.98) / (127 - zp))
    if neg.size:
        cands.append(np.quantile(neg, 0.98) / (128 + zp))
    s = max(cands) if cands else 1e-3
    if pow2:
        s = 2.0 ** np.round(np.log2(s))
    return np.float32(s), zp


def build_case(rng, idx, pair, k, stride, pad_name, pad, size):
    fr, to = pair
    nti, nto = tfl.ORDER[fr], tfl.ORDER[to]
    c_in = 3 if fr == "z2" else 2
    h, w = size
    # every 6th case: power-of-two scales, so the multiplier is a power of two and exact
    # ties hit MultiplyByQuantizedMultiplier's rounding (single vs double rounding differ)
    pow2 = idx % 6 == 3
    if pow2:
        in_scale = np.float32(2.0 ** -int(rng.integers(4, 7)))  # 1/16 .. 1/64
        w_scales = (2.0 ** -rng.integers(6, 10, size=C_OUT)).astype(np.float32)  # 1/64..1/512
    else:
        in_scale = np.float32(rng.uniform(0.01, 0.1))
        w_scales = rng.uniform(0.001, 0.02, size=C_OUT).astype(np.float32)
    in_zp = int(rng.integers(-128, 128))
    xshape = (N, c_in, h, w) if nti == 1 else (N, c_in, nti, h, w)
    x = rng.integers(-128, 128, size=xshape).astype(np.int8)
    wt = rng.integers(-127, 128, size=(C_OUT, c_in, nti, k, k)).astype(np.int8)
    has_bias = idx % 5 != 4
    bias = rng.integers(-20000, 20001, size=C_OUT).astype(np.int32) if has_bias else None
    relu = bool(rng.integers(0, 2))

    bank = tfl.expand_bank(wt, fr, to)  # (C_out*nto, C_in*nti, K, K) OIHW
    ws_exp = np.repeat(w_scales, nto)  # expanded channel o*nto + t -> weight_scale[o]
    bias_exp = None if bias is None else np.repeat(bias, nto)
    x_flat = x.reshape(N, c_in * nti, h, w)

    # dequantized accumulator (float64) to choose the output scale
    acc = R.conv(x_flat, bank, bias_exp, in_scale, in_zp, ws_exp, np.float32(1.0), 0, stride,
                 pad, False)  # only for shape; the real values below
    t, b, l, r = pad
    xp = np.pad(x_flat.astype(np.int64) - in_zp, ((0, 0), (0, 0), (t, b), (l, r)))
    ho, wo = (h + t + b - k) // stride + 1, (w + l + r - k) // stride + 1
    assert acc.shape == (N, C_OUT * nto, ho, wo)
    accs = np.zeros((N, C_OUT * nto, ho, wo), dtype=np.int64)
    for p in range(k):
        for q in range(k):
            win = xp[:, :, p:p + stride * (ho - 1) + 1:stride, q:q + stride * (wo - 1) + 1:stride]
            accs += np.einsum("nchw,oc->nohw", win, bank[:, :, p, q].astype(np.int64))
    if bias_exp is not None:
        accs += bias_exp.astype(np.int64)[None, :, None, None]
    real = accs * (np.float64(in_scale) * ws_exp.astype(np.float64))[None, :, None, None]
    out_scale, out_zp = choose_output_qparams(real.reshape(-1), rng, pow2)
    if idx % 6 == 1:
        # nudge the output scale (by at most ~10%) until some output depends on forming the
        # multiplier as double(in)*double(w)/double(out) rather than from the float32 product
        # in*w (the legacy per-tensor formula): makes the set discriminate the two
        for j in range(1, 1001):
            cand = np.float32(out_scale * (1 + 1e-4 * j))
            d = [R.quantize_multiplier(float(in_scale) * float(ws_exp[c]) / float(cand))
                 != R.quantize_multiplier(float(np.float32(in_scale * ws_exp[c]))
                                          / float(cand)) for c in range(0, C_OUT * nto, nto)]
            if not any(d):
                continue
            a = R.conv(x_flat, bank, bias_exp, in_scale, in_zp, ws_exp, cand, out_zp, stride,
                       pad, relu)
            b = R.conv(x_flat, bank, bias_exp, in_scale, in_zp, ws_exp, cand, out_zp, stride,
                       pad, relu, multiplier="float")
            if (a != b).any():
                out_scale = cand
                break

    # ---- the TFLite graph -----------------------------------------------------------------
    g = tfl.Graph()
    xin = g.tensor("input", (N, h, w, c_in * nti), INT8, scale=in_scale, zero_point=in_zp)
    cur = xin
    if pad != [0, 0, 0, 0]:
        cur = g.tensor("padded", (N, h + t + b, w + l + r, c_in * nti), INT8, scale=in_scale,
                       zero_point=in_zp)
        g.pad(xin, cur, [[0, 0], [t, b], [l, r], [0, 0]])
    wten = g.tensor("filter", bank.transpose(0, 2, 3, 1).shape, INT8,
                    data=bank.transpose(0, 2, 3, 1), scale=ws_exp, zero_point=0,
                    quantized_dimension=0)
    bten = None
    if bias_exp is not None:
        bten = g.tensor("bias", (C_OUT * nto,), INT32, data=bias_exp,
                        scale=g.bias_scales(xin, wten), zero_point=0)
    yten = g.tensor("output", (N, ho, wo, C_OUT * nto), INT8, scale=out_scale,
                    zero_point=out_zp)
    g.conv2d(cur, wten, bten, yten, stride, relu)
    blob = g.finish([xin], [yten])
    [y_nhwc] = tfl.run(blob, [tfl.to_nhwc(x)])
    assert y_nhwc.dtype == np.int8 and y_nhwc.shape == (N, ho, wo, C_OUT * nto)
    y = tfl.from_nhwc(y_nhwc, nto)  # (N, C_out, nto, H', W')

    # ---- bit-exact cross-check with the numpy statement of the reference kernel ----------
    emu = R.conv(x_flat, bank, bias_exp, in_scale, in_zp, ws_exp, out_scale, out_zp, stride,
                 pad, relu).reshape(y.shape)
    if not np.array_equal(emu, y):
        raise AssertionError(f"case {idx}: int8_ref.conv differs from TFLite "
                             f"({int((emu != y).sum())} of {y.size})")
    stats = {
        "single_rounding_diffs": int((R.conv(x_flat, bank, bias_exp, in_scale, in_zp, ws_exp,
                                              out_scale, out_zp, stride, pad, relu,
                                              rounding="single").reshape(y.shape) != y).sum()),
        "float_product_diffs": int((R.conv(x_flat, bank, bias_exp, in_scale, in_zp, ws_exp,
                                            out_scale, out_zp, stride, pad, relu,
                                            multiplier="float").reshape(y.shape) != y).sum()),
        "saturated": int(((y == 127) | (y == -128)).sum()),
        "at_relu_floor": int((y == out_zp).sum()) if relu else 0,
        "size": int(y.size),
    }
    case = {
        "id": idx, "pair": f"{fr}-{to}", "from": fr, "to": to, "kernel": k, "stride": stride,
        "padding_name": pad_name, "padding": list(pad), "batch": N, "in_channels": c_in,
        "out_channels": C_OUT, "in_planes": nti, "out_planes": nto, "height": h, "width": w,
        "out_height": ho, "out_width": wo, "has_bias": has_bias, "relu": relu,
        "input_scale": io.f32(in_scale), "input_zero_point": in_zp,
        "output_scale": io.f32(out_scale), "output_zero_point": out_zp,
    }
    arrays = {"inputs": x, "weights": wt, "weight_scales": w_scales, "biases": bias,
              "outputs": y}
    return case, arrays, stats


def main():
    n_idx = tfl.check_indices(GROUPY)
    print(f"index tables equal to GrouPy's: {n_idx} tables")
    rng = np.random.default_rng(SEED)
    flat = io.FlatArrays({"inputs": "i1", "weights": "i1", "weight_scales": "f4",
                          "biases": "i4", "outputs": "i1"})
    cases = []
    tot = {"single_rounding_diffs": 0, "float_product_diffs": 0, "saturated": 0,
           "at_relu_floor": 0, "size": 0}
    cases_single = cases_float = 0
    idx = 0
    for pair in PAIRS:
        for k in range(1, 6):
            for stride in (1, 2):
                for pad_name, pad in paddings(k).items():
                    for size in SIZES:
                        case, arrays, st = build_case(rng, idx, pair, k, stride, pad_name,
                                                      pad, size)
                        for name, arr in arrays.items():
                            case.update(flat.add(name, arr))
                        cases.append(case)
                        for key in tot:
                            tot[key] += st[key]
                        cases_single += st["single_rounding_diffs"] > 0
                        cases_float += st["float_product_diffs"] > 0
                        idx += 1
    # coverage checks
    w_all = np.concatenate(flat.parts["weights"])
    assert w_all.min() == -127 and w_all.max() == 127
    for pair in PAIRS:
        rl = {c["relu"] for c in cases if (c["from"], c["to"]) == pair}
        bs = {c["has_bias"] for c in cases if (c["from"], c["to"]) == pair}
        assert rl == {True, False} and bs == {True, False}, pair
    flat.write(OUT)
    io.write_json(OUT / "cases.json", cases)
    meta = {"generator": "tools/int8/make_conv_goldens.py", "seed": SEED,
            "resolver": "BUILTIN_REF", "versions": io.versions(), "cases": len(cases),
            "outputs": tot["size"], "saturated_outputs": tot["saturated"],
            "outputs_at_relu_floor": tot["at_relu_floor"],
            "outputs_differing_under_single_rounding": tot["single_rounding_diffs"],
            "cases_differing_under_single_rounding": cases_single,
            "outputs_differing_with_float32_scale_product": tot["float_product_diffs"],
            "cases_differing_with_float32_scale_product": cases_float}
    io.write_json(OUT / "meta.json", meta)
    print(f"{len(cases)} cases -> {OUT}")
    for key, v in meta.items():
        if key not in ("versions",):
            print(f"  {key}: {v}")
    print(f"  versions: {meta['versions']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
