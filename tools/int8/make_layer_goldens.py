#!/usr/bin/env python3
"""Golden set 2: the other int8 layers, computed by LiteRT's reference kernels.

    tools/int8/.venv/bin/python tools/int8/make_layer_goldens.py   # -> tools/golden/int8-layers/

Kinds and their TFLite graphs (NHWC, our channel c*G + t):
  max_pool        MAX_POOL_2D VALID; nonzero padding = PADV2 with the constant -128 first
  avg_pool        AVERAGE_POOL_2D VALID; one case AVERAGE_POOL_2D SAME (stride 1, 3x3 = our
                  [1,1,1,1] with the count excluding the padded positions)
  group_pool      RESHAPE (N,H,W,C*G) -> (N,H*W*C,G,1), MAX_POOL_2D / AVERAGE_POOL_2D filter
                  1xG stride 1xG, RESHAPE -> (N,H,W,C)
  global_avg_pool AVERAGE_POOL_2D filter HxW VALID
  dense           FULLY_CONNECTED, per-tensor int8 weight scale, int32 bias, optional RELU
  relu            RELU (input and output share scale and zero point)
Pooling and relu keep the input's scale and zero point. Every output is checked bit for bit
against int8_ref (the numpy statement of the reference arithmetic).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import golden_io as io
import int8_ref as R
import tfl
from tfl import INT8, INT32, OP

SEED = 20250612
HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "golden" / "int8-layers"


def qparams(rng):
    return np.float32(rng.uniform(0.01, 0.1)), int(rng.integers(-128, 128))


def nhwc_shape(shape):
    if len(shape) == 5:
        n, c, g, h, w = shape
        return (n, h, w, c * g)
    n, c, h, w = shape
    return (n, h, w, c)


def force_ties(x: np.ndarray, axes, rng, frac=0.5):
    """Adjust values so that for about ``frac`` of the pooled groups (reduced over ``axes``,
    an even count n) the raw sum is exactly k*n + n/2 (a half-way rounding), with k of both
    signs."""
    x = x.astype(np.int64).copy()
    moved = np.moveaxis(x, axes, list(range(x.ndim - len(axes), x.ndim)))
    lead = moved.shape[:x.ndim - len(axes)]
    flat = moved.reshape(int(np.prod(lead)), -1)
    n = flat.shape[1]
    assert n % 2 == 0
    for i in range(flat.shape[0]):
        if rng.random() >= frac:
            continue
        s = int(flat[i].sum())
        k = int(np.floor(s / n))
        target = k * n + n // 2
        delta = target - s
        j = 0
        while delta != 0:
            step = int(np.clip(delta, -128 - flat[i, j], 127 - flat[i, j]))
            flat[i, j] += step
            delta -= step
            j = (j + 1) % n
        assert flat[i].sum() == target
    out = np.moveaxis(flat.reshape(moved.shape), list(range(x.ndim - len(axes), x.ndim)), axes)
    return out.astype(np.int8)


class Builder:
    def __init__(self):
        self.rng = np.random.default_rng(SEED)
        self.flat = io.FlatArrays({"inputs": "i1", "weights": "i1", "weight_scales": "f4",
                                   "biases": "i4", "outputs": "i1"})
        self.cases = []
        self.notes = {}

    def add(self, case, x, y, emu, weights=None, weight_scale=None, bias=None):
        if not np.array_equal(y, emu):
            raise AssertionError(f"case {len(self.cases)} ({case['kind']}): int8_ref differs "
                                 f"from TFLite ({int((y != emu).sum())} of {y.size})")
        case = {"id": len(self.cases), **case}
        case.update(self.flat.add("inputs", x))
        case.update(self.flat.add("weights", weights))
        case.update(self.flat.add("weight_scales",
                                  None if weight_scale is None else np.atleast_1d(weight_scale)))
        case.update(self.flat.add("biases", bias))
        case.update(self.flat.add("outputs", y))
        self.cases.append(case)

    def note_ties(self, what, sums, counts):
        sums = np.asarray(sums, dtype=np.int64)
        counts = np.broadcast_to(np.asarray(counts, dtype=np.int64), sums.shape)
        half = (counts % 2 == 0) & (np.abs(sums) % counts == counts // 2)
        self.notes.setdefault("averages", []).append(
            {"what": what, "windows": int(sums.size), "negative_sums": int((sums < 0).sum()),
             "half_way_positive": int((half & (sums > 0)).sum()),
             "half_way_negative": int((half & (sums < 0)).sum())})

    @staticmethod
    def common(x, scale, zp):
        shape = list(x.shape)
        d = {"input_shape": shape, "input_scale": io.f32(scale), "input_zero_point": zp}
        if len(shape) == 5:
            d.update({"batch": shape[0], "channels": shape[1], "planes": shape[2],
                      "height": shape[3], "width": shape[4]})
        elif len(shape) == 4:
            d.update({"batch": shape[0], "channels": shape[1], "planes": 1,
                      "height": shape[2], "width": shape[3]})
        return d

    # ---- spatial pooling -------------------------------------------------------------------

    def spatial_pool(self, kind, shape, window, stride, pad, lo=-128, hi=127, zp=None,
                     tflite_same=False, tie_shift=False):
        rng = self.rng
        scale, zp_r = qparams(rng)
        zp = zp_r if zp is None else zp
        x = rng.integers(lo, hi + 1, size=shape).astype(np.int8)
        groups = shape[2] if len(shape) == 5 else None
        xn = tfl.to_nhwc(x)
        n, h, w, c = xn.shape
        t, b, l, r = pad
        if tflite_same:
            ho, wo = -(-h // stride), -(-w // stride)
        else:
            ho, wo = (h + t + b - window) // stride + 1, (w + l + r - window) // stride + 1
        g = tfl.Graph()
        xin = g.tensor("input", xn.shape, INT8, scale=scale, zero_point=zp)
        cur = xin
        if pad != [0, 0, 0, 0] and not tflite_same:
            assert kind == "max_pool", "avg_pool padding only through TFLite SAME"
            cur = g.tensor("padded", (n, h + t + b, w + l + r, c), INT8, scale=scale,
                           zero_point=zp)
            fill = g.tensor("pad_value", (1,), INT8, data=[-128], scale=scale, zero_point=zp)
            g.pad(xin, cur, [[0, 0], [t, b], [l, r], [0, 0]], value_tensor=fill)
        y = g.tensor("output", (n, ho, wo, c), INT8, scale=scale, zero_point=zp)
        code = OP.MAX_POOL_2D if kind == "max_pool" else OP.AVERAGE_POOL_2D
        g.pool(code, cur, y, window, stride, padding=tfl.SAME if tflite_same else tfl.VALID)
        [yn] = tfl.run(g.finish([xin], [y]), [xn])
        yo = tfl.from_nhwc(yn, groups)
        x4 = x.reshape(n, c, h, w)
        if kind == "max_pool":
            emu = R.max_pool(x4, window, stride, pad)
        else:
            emu = R.avg_pool(x4, window, stride, pad, count_excludes_padding=True)
            win, msk = R._windows(x4, window, stride, pad, 0)
            self.note_ties(f"avg_pool {list(shape)} {window}x{window}/{stride}",
                           (win * msk).sum(-1), np.broadcast_to(msk.sum(-1), win.shape[:-1]))
        case = {"kind": kind, **self.common(x, scale, zp), "window": window, "stride": stride,
                "padding": list(pad), "output_shape": list(yo.shape),
                "output_scale": io.f32(scale), "output_zero_point": zp}
        if kind == "avg_pool":
            case["count_excludes_padding"] = True
        if tflite_same:
            case["tflite_padding"] = "SAME"
        self.add(case, x, yo, emu.reshape(yo.shape))
        return x, yo

    # ---- group pooling ---------------------------------------------------------------------

    def group_pool(self, mode, shape, ties=False):
        rng = self.rng
        scale, zp = qparams(rng)
        x = rng.integers(-128, 128, size=shape).astype(np.int8)
        if ties:
            x = force_ties(x, [2], rng)
        n, c, gs, h, w = shape
        xn = tfl.to_nhwc(x)
        g = tfl.Graph()
        xin = g.tensor("input", xn.shape, INT8, scale=scale, zero_point=zp)
        r1 = g.tensor("as_rows", (n, h * w * c, gs, 1), INT8, scale=scale, zero_point=zp)
        g.reshape(xin, r1)
        p = g.tensor("pooled", (n, h * w * c, 1, 1), INT8, scale=scale, zero_point=zp)
        code = OP.MAX_POOL_2D if mode == "max" else OP.AVERAGE_POOL_2D
        g.pool(code, r1, p, (1, gs), (1, gs))
        y = g.tensor("output", (n, h, w, c), INT8, scale=scale, zero_point=zp)
        g.reshape(p, y)
        [yn] = tfl.run(g.finish([xin], [y]), [xn])
        yo = tfl.from_nhwc(yn, None)  # (N, C, H, W)
        xg = x.astype(np.int64)
        if mode == "max":
            emu = xg.max(axis=2)
        else:
            # (N, C, G, H, W) -> windows over G: avg_pool with a 1 x G window on (.., 1, G)
            v = np.moveaxis(xg, 2, -1).reshape(n, c * h * w, 1, gs)
            emu = R.avg_pool(v, (1, gs), (1, gs)).reshape(n, c, h, w)
            self.note_ties(f"group_pool mean G={gs}", xg.sum(axis=2), np.full((1,), gs))
        case = {"kind": "group_pool", "mode": mode, "G": gs, **self.common(x, scale, zp),
                "output_shape": list(yo.shape), "output_scale": io.f32(scale),
                "output_zero_point": zp}
        self.add(case, x, yo, emu.astype(np.int8))
        return x, yo

    # ---- global average pooling ------------------------------------------------------------

    def global_avg(self, shape, ties=False, lo=-128, hi=127):
        rng = self.rng
        scale, zp = qparams(rng)
        x = rng.integers(lo, hi + 1, size=shape).astype(np.int8)
        # bias half of the planes negative, half positive, so sums of both signs occur
        x = np.clip(x.astype(np.int64) + rng.choice([-40, 40], size=shape[:-2] + (1, 1)),
                    -128, 127).astype(np.int8)
        if ties:
            x = force_ties(x, [x.ndim - 2, x.ndim - 1], rng, frac=0.6)
        h, w = shape[-2:]
        xn = tfl.to_nhwc(x)
        n, _, _, c = xn.shape
        g = tfl.Graph()
        xin = g.tensor("input", xn.shape, INT8, scale=scale, zero_point=zp)
        y = g.tensor("output", (n, 1, 1, c), INT8, scale=scale, zero_point=zp)
        g.pool(OP.AVERAGE_POOL_2D, xin, y, (h, w), (h, w))
        [yn] = tfl.run(g.finish([xin], [y]), [xn])
        yo = yn.reshape((n,) + shape[1:-2])  # (N, C, G) or (N, C)
        emu = R.avg_pool(x.reshape(n, c, h, w), (h, w), (h, w)).reshape(yo.shape)
        sums = x.astype(np.int64).sum(axis=(-2, -1))
        cnt = h * w
        self.notes.setdefault("global_avg_pool", []).append({
            "shape": list(shape), "negative_sums": int((sums < 0).sum()),
            "positive_sums": int((sums > 0).sum()),
            "half_way": int(((cnt % 2 == 0) & (np.abs(sums) % cnt == cnt // 2)).sum()),
            "half_way_negative": int(((cnt % 2 == 0) & (sums < 0)
                                      & (np.abs(sums) % cnt == cnt // 2)).sum())})
        case = {"kind": "global_avg_pool", **self.common(x, scale, zp),
                "output_shape": list(yo.shape), "output_scale": io.f32(scale),
                "output_zero_point": zp}
        self.add(case, x, yo, emu)
        return x, yo

    # ---- dense -----------------------------------------------------------------------------

    def dense(self, n, fin, fout, has_bias, relu, want_fixed_point_diff):
        rng = self.rng
        in_scale, in_zp = qparams(rng)
        w_scale = np.float32(rng.uniform(0.001, 0.02))
        x = rng.integers(-128, 128, size=(n, fin)).astype(np.int8)
        wq = rng.integers(-127, 128, size=(fout, fin)).astype(np.int8)
        bias = rng.integers(-20000, 20001, size=fout).astype(np.int32) if has_bias else None
        acc = (x.astype(np.int64) - in_zp) @ wq.astype(np.int64).T
        if bias is not None:
            acc += bias
        real = acc * (np.float64(in_scale) * np.float64(w_scale))
        out_zp = int(rng.integers(-30, 31))
        base = max(np.quantile(real[real > 0], 0.95) / (127 - out_zp),
                   np.quantile(-real[real < 0], 0.95) / (128 + out_zp))
        # choose the output scale (within +-10% of base) so that the float requantization of
        # the reference kernel and the fixed-point one (TFLite Micro / optimized formula)
        # differ on some output, or agree on all of them, as asked
        out_scale = None
        for j in range(2000):
            cand = np.float32(base * (1 + 1e-4 * (j // 2) * (1 if j % 2 else -1)))
            a = R.fully_connected(x, wq, bias, in_scale, in_zp, w_scale, cand, out_zp, relu,
                                  "float")
            b = R.fully_connected(x, wq, bias, in_scale, in_zp, w_scale, cand, out_zp, relu,
                                  "fixed")
            if bool((a != b).any()) == want_fixed_point_diff:
                out_scale = cand
                break
        assert out_scale is not None
        g = tfl.Graph()
        xin = g.tensor("input", (n, fin), INT8, scale=in_scale, zero_point=in_zp)
        wt = g.tensor("weight", (fout, fin), INT8, data=wq, scale=[w_scale], zero_point=[0])
        bt = None
        if bias is not None:
            bt = g.tensor("bias", (fout,), INT32, data=bias, scale=g.bias_scales(xin, wt),
                          zero_point=0)
        y = g.tensor("output", (n, fout), INT8, scale=out_scale, zero_point=out_zp)
        g.fully_connected(xin, wt, bt, y, relu)
        [yo] = tfl.run(g.finish([xin], [y]), [x])
        emu = R.fully_connected(x, wq, bias, in_scale, in_zp, w_scale, out_scale, out_zp, relu,
                                "float")
        fixed = R.fully_connected(x, wq, bias, in_scale, in_zp, w_scale, out_scale, out_zp,
                                  relu, "fixed")
        case = {"kind": "dense", "batch": n, "in_features": fin, "out_features": fout,
                "input_shape": [n, fin], "has_bias": has_bias, "relu": relu,
                "input_scale": io.f32(in_scale), "input_zero_point": in_zp,
                "weight_scale": io.f32(w_scale), "output_shape": [n, fout],
                "output_scale": io.f32(out_scale), "output_zero_point": out_zp,
                "fixed_point_outputs_differing": int((fixed != yo).sum())}
        self.add(case, x, yo, emu, weights=wq, weight_scale=w_scale, bias=bias)

    # ---- relu ------------------------------------------------------------------------------

    def relu(self, shape):
        rng = self.rng
        scale, zp = qparams(rng)
        x = rng.integers(-128, 128, size=shape).astype(np.int8)
        groups = shape[2] if len(shape) == 5 else None
        xn = tfl.to_nhwc(x)
        g = tfl.Graph()
        xin = g.tensor("input", xn.shape, INT8, scale=scale, zero_point=zp)
        y = g.tensor("output", xn.shape, INT8, scale=scale, zero_point=zp)
        g.relu(xin, y)
        [yn] = tfl.run(g.finish([xin], [y]), [xn])
        yo = tfl.from_nhwc(yn, groups)
        emu = np.maximum(x, np.int8(zp))
        case = {"kind": "relu", **self.common(x, scale, zp), "output_shape": list(yo.shape),
                "output_scale": io.f32(scale), "output_zero_point": zp}
        self.add(case, x, yo, emu)


def main():
    b = Builder()
    # max pool
    b.spatial_pool("max_pool", (2, 2, 4, 6, 6), 2, 2, [0, 0, 0, 0])
    b.spatial_pool("max_pool", (2, 3, 8, 6), 2, 2, [0, 0, 0, 0])
    b.spatial_pool("max_pool", (1, 2, 8, 5, 5), 3, 1, [1, 1, 1, 1])
    # all values below the zero point: a zero-point (or 0) padding would win at the border
    b.spatial_pool("max_pool", (2, 3, 6, 6), 3, 1, [1, 1, 1, 1], lo=-128, hi=-100, zp=0)
    b.spatial_pool("max_pool", (2, 2, 4, 7, 7), 3, 2, [0, 0, 0, 0])
    # avg pool
    b.spatial_pool("avg_pool", (2, 2, 4, 6, 8), 2, 2, [0, 0, 0, 0])
    b.spatial_pool("avg_pool", (1, 2, 8, 4, 4), 2, 2, [0, 0, 0, 0], lo=-128, hi=20)
    b.spatial_pool("avg_pool", (2, 3, 7, 7), 3, 1, [0, 0, 0, 0])
    b.spatial_pool("avg_pool", (2, 2, 4, 9, 9), 3, 2, [0, 0, 0, 0], lo=-128, hi=40)
    b.spatial_pool("avg_pool", (2, 3, 7, 7), 3, 2, [0, 0, 0, 0], lo=-60, hi=60)
    b.spatial_pool("avg_pool", (2, 2, 4, 5, 5), 3, 1, [1, 1, 1, 1], tflite_same=True)
    # group pool
    b.group_pool("max", (2, 3, 4, 5, 5))
    b.group_pool("max", (2, 2, 8, 4, 6))
    b.group_pool("mean", (2, 3, 4, 5, 5), ties=True)
    b.group_pool("mean", (2, 2, 8, 4, 6), ties=True)
    # global average pool
    b.global_avg((2, 3, 4, 5, 5))
    b.global_avg((2, 2, 8, 4, 4), ties=True)
    b.global_avg((2, 4, 7, 7))
    b.global_avg((2, 4, 6, 8), ties=True)
    b.global_avg((3, 2, 4, 6, 6), ties=True)
    # dense
    b.dense(4, 24, 10, True, False, want_fixed_point_diff=True)
    b.dense(4, 24, 10, False, True, want_fixed_point_diff=False)
    b.dense(3, 48, 7, True, True, want_fixed_point_diff=True)
    b.dense(5, 16, 12, False, False, want_fixed_point_diff=True)
    b.dense(2, 36, 5, True, False, want_fixed_point_diff=False)
    # relu
    b.relu((2, 2, 4, 3, 3))
    b.relu((2, 3, 4, 5))

    b.flat.write(OUT)
    io.write_json(OUT / "cases.json", b.cases)
    kinds = {}
    for c in b.cases:
        kinds[c["kind"]] = kinds.get(c["kind"], 0) + 1
    meta = {"generator": "tools/int8/make_layer_goldens.py", "seed": SEED,
            "resolver": "BUILTIN_REF", "versions": io.versions(), "cases": len(b.cases),
            "kinds": kinds, "global_avg_pool_sums": b.notes["global_avg_pool"],
            "average_half_way_windows": b.notes["averages"],
            "dense_fixed_point_outputs_differing": [
                c["fixed_point_outputs_differing"] for c in b.cases if c["kind"] == "dense"]}
    io.write_json(OUT / "meta.json", meta)
    print(f"{len(b.cases)} cases -> {OUT}: {kinds}")
    for gap in meta["global_avg_pool_sums"]:
        print("  global_avg_pool", gap)
    print("  dense: outputs where fixed-point requantization would differ:",
          meta["dense_fixed_point_outputs_differing"])
    for nt in b.notes.get("averages", []):
        print("  ", nt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
