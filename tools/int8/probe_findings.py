#!/usr/bin/env python3
"""Probe LiteRT's int8 reference kernels with hand-made cases whose answer differs between the
candidate arithmetics, and print which candidate the interpreter follows.

    tools/int8/.venv/bin/python tools/int8/probe_findings.py

Every probe is a tiny hand-built graph run with OpResolverType.BUILTIN_REF. The results are
recorded in README.md ("Findings").
"""

from __future__ import annotations

import sys

import numpy as np

import int8_ref as R
import tfl
from tfl import INT8, INT32, FLOAT32, OP, f32


def conv1x1(x_vals, w_val, in_scale, in_zp, w_scale, out_scale, out_zp, bias=None):
    """1x1 conv, 1 input channel, 1 output channel, on a (1, 1, n, 1) map."""
    x_vals = np.asarray(x_vals, dtype=np.int8)
    n = x_vals.size
    g = tfl.Graph()
    x = g.tensor("x", (1, n, 1, 1), INT8, scale=in_scale, zero_point=in_zp)
    w = g.tensor("w", (1, 1, 1, 1), INT8, data=[w_val], scale=[w_scale], zero_point=[0])
    b = None
    if bias is not None:
        b = g.tensor("b", (1,), INT32, data=[bias], scale=[f32(float(in_scale) * float(w_scale))],
                     zero_point=[0])
    y = g.tensor("y", (1, n, 1, 1), INT8, scale=out_scale, zero_point=out_zp)
    g.conv2d(x, w, b, y, 1, False)
    [out] = tfl.run(g.finish([x], [y]), [x_vals.reshape(1, n, 1, 1)])
    return out.reshape(n).astype(np.int64)


def conv_emul(x_vals, w_val, in_scale, in_zp, w_scale, out_scale, out_zp, bias=None, **kw):
    x = np.asarray(x_vals, dtype=np.int8).reshape(1, 1, -1, 1)
    bank = np.full((1, 1, 1, 1), w_val, dtype=np.int8)
    return R.conv(x, bank, None if bias is None else [bias], in_scale, in_zp,
                  np.array([w_scale], np.float32), out_scale, out_zp, 1, (0, 0, 0, 0), False,
                  **kw).reshape(-1).astype(np.int64)


def fc(x_vals, w_vals, in_scale, in_zp, w_scale, out_scale, out_zp, bias=None, reference=True):
    x_vals = np.asarray(x_vals, dtype=np.int8)
    n, k = x_vals.shape
    w_vals = np.asarray(w_vals, dtype=np.int8)
    o = w_vals.shape[0]
    g = tfl.Graph()
    x = g.tensor("x", (n, k), INT8, scale=in_scale, zero_point=in_zp)
    w = g.tensor("w", (o, k), INT8, data=w_vals, scale=[w_scale], zero_point=[0])
    b = None
    if bias is not None:
        b = g.tensor("b", (o,), INT32, data=bias, scale=[f32(float(in_scale) * float(w_scale))],
                     zero_point=[0])
    y = g.tensor("y", (n, o), INT8, scale=out_scale, zero_point=out_zp)
    g.fully_connected(x, w, b, y, False)
    [out] = tfl.run(g.finish([x], [y]), [x_vals], reference=reference)
    return out.astype(np.int64)


def verdict(name, got, cands: dict):
    match = [k for k, v in cands.items() if np.array_equal(np.asarray(v), got)]
    print(f"{name}: TFLite {got.tolist()}")
    for k, v in cands.items():
        print(f"    {k:<44} {np.asarray(v).tolist()}{'   <== match' if k in match else ''}")
    return match


def main():
    ok = True
    print("== (5) MultiplyByQuantizedMultiplier: single or double rounding ==")
    # multiplier exactly 0.375 = 0.75 * 2^-1: q = 0.75*2^31, shift -1.
    # acc = 6: exact 2.25; double rounding: SRDHM -> round_half_up(4.5) = 5, /2 -> 2.5 -> 3;
    # single rounding: floor(2.25 + 0.5) = 2. acc = -2 (exact -0.75): both -1.
    # Multiplier 0.25 (q = 2^30, shift -1), acc = -2 (exact -0.5): double -> -1 (away), single
    # -> 0 (toward +inf).
    in_s, w_s = f32(3 * 2.0 ** -6), f32(2.0 ** -7)  # in*w = 3 * 2^-13
    out_s = f32(2.0 ** -10)  # m = 0.375
    xs = np.array([6, -6, 2, -2, 10, -10, 14, -14], dtype=np.int8)
    got = conv1x1(xs, 1, in_s, 0, w_s, out_s, 0)
    m = verdict("conv m=0.375 acc=x", got, {
        "double rounding (gemmlowp SRDHM + RDBPOT)": conv_emul(xs, 1, in_s, 0, w_s, out_s, 0),
        "single rounding": conv_emul(xs, 1, in_s, 0, w_s, out_s, 0, rounding="single"),
        "exact, round half away": R.round_half_away(xs * 0.375),
    })
    ok &= "double rounding (gemmlowp SRDHM + RDBPOT)" in m
    out_s = f32(3 * 2.0 ** -11)  # m = 0.25
    xs = np.array([2, -2, 6, -6, 1, -1, 3, -3], dtype=np.int8)
    got = conv1x1(xs, 1, in_s, 0, w_s, out_s, 0)
    m = verdict("conv m=0.25 acc=x", got, {
        "double rounding (gemmlowp SRDHM + RDBPOT)": conv_emul(xs, 1, in_s, 0, w_s, out_s, 0),
        "single rounding": conv_emul(xs, 1, in_s, 0, w_s, out_s, 0, rounding="single"),
    })
    ok &= "double rounding (gemmlowp SRDHM + RDBPOT)" in m

    print("\n== (1) CONV_2D multiplier: double(in)*double(w)/double(out) or float product ==")
    # search scales where the two formulas give different QuantizeMultiplier results and an
    # accumulator whose output differs
    rng = np.random.default_rng(5)
    found = 0
    for _ in range(200000):
        in_s = f32(rng.uniform(0.01, 0.1))
        w_s = f32(rng.uniform(0.001, 0.02))
        out_s = f32(rng.uniform(0.001, 0.05))
        md = float(in_s) * float(w_s) / float(out_s)
        mf = float(np.float32(in_s * w_s)) / float(out_s)
        qd, qf = R.quantize_multiplier(md), R.quantize_multiplier(mf)
        if qd == qf:
            continue
        acc = np.arange(-16000, 16001, dtype=np.int64)
        a = R.mbqm_double(acc, *qd)
        b = R.mbqm_double(acc, *qf)
        diff = acc[(a != b) & (np.abs(a) <= 100)]
        if diff.size == 0:
            continue
        # realise acc = w * (x - zp) with w = 127: pick acc divisible by 127 if possible
        accs = [int(v) for v in diff if v % 127 == 0 and abs(v // 127) <= 255]
        if not accs:
            continue
        a0 = accs[0]
        xq = a0 // 127  # x - zp, zp chosen so that x is int8
        zp = -128 if xq > 0 else 127
        x = xq + zp
        if not -128 <= x <= 127:
            continue
        xs = np.array([x], dtype=np.int8)
        got = conv1x1(xs, 127, in_s, zp, w_s, out_s, 0)
        print(f"in_scale={float(in_s)!r} w_scale={float(w_s)!r} out_scale={float(out_s)!r} "
              f"acc={a0}")
        m = verdict("conv", got, {
            "double(in)*double(w)/double(out)": conv_emul(xs, 127, in_s, zp, w_s, out_s, 0),
            "double(float(in*w))/double(out)": conv_emul(xs, 127, in_s, zp, w_s, out_s, 0,
                                                         multiplier="float"),
        })
        ok &= m == ["double(in)*double(w)/double(out)"]
        found += 1
        if found == 3:
            break

    print("\n== (2) FULLY_CONNECTED (per-tensor weight scale) requantization ==")
    in_s, w_s, out_s = f32(3 * 2.0 ** -6), f32(2.0 ** -7), f32(2.0 ** -10)  # m = 0.375
    # acc 6, 14: double rounding gives 3, 6 (exact 2.25, 5.25); acc -4, -12, 4: exact -1.5,
    # -4.5, 1.5: half away -> -2, -5, 2; half toward +inf (single rounding) -> -1, -4, 2
    xs = np.array([[6, -6, 2, -2, 10, -10, 14, -14, -4, -12, 4]], dtype=np.int8).T  # (11, 1)
    wv = np.array([[1]], dtype=np.int8)
    got = fc(xs, wv, in_s, 0, w_s, out_s, 0).reshape(-1)
    cands = {
        "float: round(double(acc)*m) half away": R.fully_connected(
            xs, wv, None, in_s, 0, w_s, out_s, 0, False, mode="float").reshape(-1),
        "fixed point (double rounding)": R.fully_connected(
            xs, wv, None, in_s, 0, w_s, out_s, 0, False, mode="fixed").reshape(-1),
        "fixed point (single rounding)": R.mbqm_single(
            xs.reshape(-1).astype(np.int64), *R.quantize_multiplier(0.375)),
    }
    m = verdict("FC m=0.375 (BUILTIN_REF)", got, cands)
    ok &= m == ["float: round(double(acc)*m) half away"]
    got = fc(xs, wv, in_s, 0, w_s, out_s, 0, reference=False).reshape(-1)
    verdict("FC m=0.375 (BUILTIN_WITHOUT_DEFAULT_DELEGATES = optimized kernels)", got, cands)
    # float product vs double product, in the float mode: search a case where the exact double
    # quotient lands on the other side of .5 depending on the formula
    found = 0
    for _ in range(400000):
        in_s = f32(rng.uniform(0.01, 0.1))
        w_s = f32(rng.uniform(0.001, 0.02))
        out_s = f32(rng.uniform(0.0005, 0.01))
        md = float(in_s) * float(w_s) / float(out_s)
        mf = float(np.float32(in_s * w_s)) / float(out_s)
        acc = np.arange(-3000, 3001, dtype=np.int64) * 127
        ra = R.round_half_away(acc * md)
        rb = R.round_half_away(acc * mf)
        sel = (ra != rb) & (np.abs(ra) < 100)
        if not sel.any():
            continue
        a0 = int(acc[sel][0])
        xq = a0 // 127
        zp = -128 if xq > 0 else 127
        if not -128 <= xq + zp <= 127:
            continue
        xs = np.array([[xq + zp]], dtype=np.int8)
        wv = np.array([[127]], dtype=np.int8)
        got = fc(xs, wv, in_s, zp, w_s, out_s, 0).reshape(-1)
        print(f"in_scale={float(in_s)!r} w_scale={float(w_s)!r} out_scale={float(out_s)!r} "
              f"acc={a0}")
        m = verdict("FC", got, {
            "round(acc * (double(in)*double(w)/double(out)))": ra[sel][:1],
            "round(acc * (double(float(in*w))/double(out)))": rb[sel][:1],
        })
        ok &= m == ["round(acc * (double(in)*double(w)/double(out)))"]
        found += 1
        if found == 2:
            break

    print("\n== (3) AVERAGE_POOL_2D rounding and padding count ==")
    x = np.array([[-3, -2, 1, 2, -1, 0],
                  [-1, -2, 1, 0, -1, 0],
                  [5, 6, -128, -128, 127, 127],
                  [7, 6, -128, -127, 127, 126]], dtype=np.int8)  # sums -8,4,-2 ; 24,-511,507
    g = tfl.Graph()
    xt = g.tensor("x", (1, 4, 6, 1), INT8, scale=f32(0.05), zero_point=-7)
    yt = g.tensor("y", (1, 2, 3, 1), INT8, scale=f32(0.05), zero_point=-7)
    g.pool(OP.AVERAGE_POOL_2D, xt, yt, 2, 2)
    [got] = tfl.run(g.finish([xt], [yt]), [x.reshape(1, 4, 6, 1)])
    got = got.reshape(2, 3).astype(np.int64)
    sums = np.array([[-8, 4, -2], [24, -511, 507]])
    m = verdict("avg 2x2/2 on raw int8 (sums -8, 4, -2, 24, -511, 507)", got, {
        "raw sum, ties away from zero": R.avg_pool(x.reshape(1, 1, 4, 6), 2, 2).reshape(2, 3),
        "raw sum, floor(s/n + 1/2)": np.floor(sums / 4 + 0.5).astype(np.int64),
        "raw sum, half to even": np.round(sums / 4).astype(np.int64),
    })
    ok &= m == ["raw sum, ties away from zero"]
    # SAME padding at stride 1: corners average 4 values, edges 6, interior 9
    x = np.full((1, 3, 3, 1), 90, dtype=np.int8)
    g = tfl.Graph()
    xt = g.tensor("x", (1, 3, 3, 1), INT8, scale=f32(0.05), zero_point=3)
    yt = g.tensor("y", (1, 3, 3, 1), INT8, scale=f32(0.05), zero_point=3)
    g.pool(OP.AVERAGE_POOL_2D, xt, yt, 3, 1, padding=tfl.SAME)
    [got] = tfl.run(g.finish([xt], [yt]), [x])
    got = got.reshape(3, 3).astype(np.int64)
    m = verdict("avg 3x3/1 SAME on a constant 90 map", got, {
        "count excludes padding": R.avg_pool(x.reshape(1, 1, 3, 3), 3, 1, (1, 1, 1, 1),
                                             True).reshape(3, 3),
        "count includes padding (pad value 0)": R.avg_pool(x.reshape(1, 1, 3, 3), 3, 1,
                                                           (1, 1, 1, 1), False).reshape(3, 3),
    })
    ok &= m == ["count excludes padding"]

    print("\n== (4) QUANTIZE float32 -> int8 ==")
    # search values where float32 division and double division round differently, and ties
    scale = f32(0.1)
    xs = [f32(0.25), f32(-0.25), f32(0.15), f32(-0.15), f32(0.35), f32(-0.35)]
    rng = np.random.default_rng(7)
    extra = 0
    while extra < 4:
        s = f32(rng.uniform(0.01, 0.1))
        k = int(rng.integers(-120, 120))
        # candidates around (k + 0.5) * s
        base = np.float32((k + 0.5) * float(s))
        for d in range(-3, 4):
            xv = base
            for _ in range(abs(d)):
                xv = np.nextafter(xv, np.float32(np.inf) if d > 0 else np.float32(-np.inf))
            a = R.round_half_away(np.float32(xv) / np.float32(s))
            b = R.round_half_away(np.float64(xv) / np.float64(s))
            if a != b:
                xs.append((xv, s))
                extra += 1
                break
    for item in xs:
        if isinstance(item, tuple):
            xv, s = item
        else:
            xv, s = item, scale
        g = tfl.Graph()
        xt = g.tensor("x", (1,), FLOAT32)
        yt = g.tensor("y", (1,), INT8, scale=s, zero_point=0)
        g.quantize(xt, yt)
        [got] = tfl.run(g.finish([xt], [yt]), [np.array([xv], np.float32)])
        got = got.astype(np.int64)
        m = verdict(f"quantize x={float(xv)!r} scale={float(s)!r} (x/s: f32 "
                    f"{float(np.float32(xv) / np.float32(s))!r}, f64 "
                    f"{float(xv) / float(s)!r})", got, {
            "float32 x/scale, round half away": R.quantize(np.array([xv]), s, 0),
            "double x/scale, round half away": np.array(
                [R.round_half_away(np.float64(xv) / np.float64(s))]),
            "float32 x/scale, round half even": np.array(
                [np.round(np.float32(xv) / np.float32(s))]),
            "float32 x * (1/scale), round half away": np.array(
                [R.round_half_away(np.float32(xv) * (np.float32(1) / np.float32(s)))]),
        })
        ok &= "float32 x/scale, round half away" in m
    print("\nall probes as expected" if ok else "\nSOME PROBE DIFFERS FROM README")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
