"""A numpy re-statement of LiteRT's int8 REFERENCE kernels (the arithmetic the goldens pin).

Written from LiteRT's reference sources (tflite/kernels/internal/reference/integer_ops/*.h,
kernel_util.cc, quantization_util.cc, common.cc) and checked bit for bit against the
interpreter on every golden case (make_*_goldens.py call ``check_*``). It is the
executable form of the findings in README.md; the goldens themselves are TFLite's output.

Each function takes our layouts ((N, C, [G,] H, W)) and returns int8 arrays.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)


def round_half_away(x):
    """C ``round`` / ``std::round`` (half away from zero) on float64 (or float32) arrays."""
    x = np.asarray(x)
    t = np.trunc(x)
    frac = x - t  # exact
    return t + np.sign(x) * (np.abs(frac) >= x.dtype.type(0.5))


def quantize_multiplier(m: float) -> tuple[int, int]:
    """tflite::QuantizeMultiplier(double): (q, shift) with m ~= q * 2^(shift-31),
    q in [2^30, 2^31). ``frexp``, ``round(q * 2^31)`` half away from zero, q == 2^31 ->
    2^30 and shift+1, shift < -31 -> (0, 0). (The double-rounding build does not clamp
    shift > 30.)"""
    if m == 0.0:
        return 0, 0
    frac, shift = math.frexp(m)
    q = int(round_half_away(np.float64(frac) * float(1 << 31)))
    assert q <= (1 << 31)
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, shift


def _trunc_div_pow2_31(v: np.ndarray) -> np.ndarray:
    """int64 v / 2^31 truncated toward zero (C integer division)."""
    return np.where(v >= 0, v >> 31, -((-v) >> 31))


def srdhm(a: np.ndarray, b: int) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul(int32 a, int32 b)."""
    a = a.astype(np.int64)
    ab = a * np.int64(b)
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    res = _trunc_div_pow2_31(ab + nudge)
    if b == INT32_MIN:
        res = np.where(a == INT32_MIN, np.int64((1 << 31) - 1), res)
    return res


def rounding_divide_by_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT: x / 2^exponent, ties away from zero."""
    if exponent == 0:
        return x
    x = x.astype(np.int64)
    mask = np.int64((1 << exponent) - 1)
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0).astype(np.int64)
    return (x >> exponent) + (remainder > threshold).astype(np.int64)


def mbqm_double(x: np.ndarray, q: int, shift: int) -> np.ndarray:
    """MultiplyByQuantizedMultiplier, TFLITE_SINGLE_ROUNDING=0 (the default build)."""
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    xl = x.astype(np.int64) * (1 << left)
    assert np.all((xl >= INT32_MIN) & (xl < (1 << 31))), "x << left_shift overflows int32"
    return rounding_divide_by_pot(srdhm(xl, q), right)


def mbqm_single(x: np.ndarray, q: int, shift: int) -> np.ndarray:
    """MultiplyByQuantizedMultiplier, TFLITE_SINGLE_ROUNDING=1: (x*q + 2^(30-shift))
    >> (31-shift), i.e. one rounding, ties toward +inf."""
    total = 31 - shift
    return (x.astype(np.int64) * np.int64(q) + (np.int64(1) << (total - 1))) >> total


def act_range(out_zp: int, relu: bool) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8: RELU -> [max(-128, zp + round(0/s)), 127]."""
    return (max(-128, out_zp) if relu else -128), 127


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


def conv(x_q, bank_oihw, bias, in_scale, in_zp, w_scales, out_scale, out_zp, stride, pad,
         relu, multiplier="double", rounding="double"):
    """CONV_2D int8 per-channel (reference_integer_ops::ConvPerChannel) after PAD(zp).

    x_q (N, Cin, H, W) int8 (planes flattened); bank (Cout, Cin, K, K) int8; bias (Cout,)
    int32 or None; w_scales (Cout,) float32 (per expanded channel). Returns (N, Cout, H', W').
    ``multiplier``: "double" = double(in)*double(w)/double(out) (what conv.cc does);
    "float" = double(float(in*w))/double(out) (FC's legacy per-tensor formula), to measure.
    """
    t, b, l, r = pad
    x = np.pad(x_q.astype(np.int64), ((0, 0), (0, 0), (t, b), (l, r)),
               constant_values=in_zp) - in_zp
    n, cin, hp, wp = x.shape
    cout, _, k, _ = bank_oihw.shape
    ho, wo = (hp - k) // stride + 1, (wp - k) // stride + 1
    cols = np.empty((n, cin, k, k, ho, wo), dtype=np.int64)
    for p in range(k):
        for q in range(k):
            cols[:, :, p, q] = x[:, :, p:p + stride * (ho - 1) + 1:stride,
                                 q:q + stride * (wo - 1) + 1:stride]
    acc = np.einsum("ncpqhw,ocpq->nohw", cols, bank_oihw.astype(np.int64))
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64)[None, :, None, None]
    assert np.all(np.abs(acc) < (1 << 31))
    out = np.empty_like(acc)
    mb = mbqm_double if rounding == "double" else mbqm_single
    for c in range(cout):
        if multiplier == "double":
            m = float(np.float32(in_scale)) * float(np.float32(w_scales[c])) / float(
                np.float32(out_scale))
        else:
            m = float(np.float32(np.float32(in_scale) * np.float32(w_scales[c]))) / float(
                np.float32(out_scale))
        qm, sh = quantize_multiplier(m)
        out[:, c] = mb(acc[:, c], qm, sh)
    lo, hi = act_range(out_zp, relu)
    return np.clip(out + out_zp, lo, hi).astype(np.int8)


def fully_connected(x_q, w_q, bias, in_scale, in_zp, w_scale, out_scale, out_zp, relu,
                    mode="float"):
    """FULLY_CONNECTED int8, per-tensor weight scale. x (N, in), w (out, in).

    mode "float": the reference kernel since LiteRT commit 9213607 (Apr 2025):
        round(double(acc) * (double(in)*double(w)/double(out))), half away from zero.
    mode "fixed": the optimized kernels' fixed point: QuantizeMultiplier(double(float(in*w))
        / double(out)) and MultiplyByQuantizedMultiplier (double rounding)."""
    acc = x_q.astype(np.int64) - in_zp
    acc = acc @ w_q.astype(np.int64).T
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64)[None, :]
    if mode == "float":
        m = float(np.float32(in_scale)) * float(np.float32(w_scale)) / float(
            np.float32(out_scale))
        out = round_half_away(acc.astype(np.float64) * m).astype(np.int64)
    else:
        m = float(np.float32(np.float32(in_scale) * np.float32(w_scale))) / float(
            np.float32(out_scale))
        qm, sh = quantize_multiplier(m)
        out = mbqm_double(acc, qm, sh)
    lo, hi = act_range(out_zp, relu)
    return np.clip(out + out_zp, lo, hi).astype(np.int8)


def _windows(x, window, stride, pad, fill):
    """x (N, C, H, W) -> (N, C, H', W', kh*kw) windows of the padded array (fill outside),
    plus a mask of in-bounds positions (N/C-independent)."""
    kh, kw = (window, window) if np.isscalar(window) else window
    sh, sw = (stride, stride) if np.isscalar(stride) else stride
    t, b, l, r = pad
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (t, b), (l, r)), constant_values=fill)
    inside = np.pad(np.ones(x.shape[-2:], dtype=bool), ((t, b), (l, r)))
    n, c, hp, wp = xp.shape
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    win = np.empty((n, c, ho, wo, kh * kw), dtype=np.int64)
    msk = np.empty((ho, wo, kh * kw), dtype=bool)
    for p in range(kh):
        for q in range(kw):
            win[..., p * kw + q] = xp[:, :, p:p + sh * (ho - 1) + 1:sh,
                                      q:q + sw * (wo - 1) + 1:sw]
            msk[..., p * kw + q] = inside[p:p + sh * (ho - 1) + 1:sh, q:q + sw * (wo - 1) + 1:sw]
    return win, msk


def max_pool(x_q, window, stride, pad=(0, 0, 0, 0)):
    """MAX_POOL_2D int8 (padding never wins: it is -128 = PADV2(-128), or excluded)."""
    win, _ = _windows(x_q, window, stride, pad, -128)
    return win.max(axis=-1).astype(np.int8)


def avg_pool(x_q, window, stride, pad=(0, 0, 0, 0), count_excludes_padding=True):
    """AVERAGE_POOL_2D int8 (reference_integer_ops::AveragePool): sum of the raw int8 values
    (zero point included) over the in-bounds positions, divided by their count with
    ``(acc > 0 ? acc + n/2 : acc - n/2) / n`` in C integer division (ties away from zero)."""
    win, msk = _windows(x_q, window, stride, pad, 0)
    if count_excludes_padding:
        acc = (win * msk).sum(axis=-1)
        cnt = np.broadcast_to(msk.sum(axis=-1), acc.shape).astype(np.int64)
    else:
        acc = win.sum(axis=-1)
        cnt = np.full(acc.shape, win.shape[-1], dtype=np.int64)
    num = np.where(acc > 0, acc + cnt // 2, acc - cnt // 2)
    q = np.abs(num) // cnt * np.sign(num)  # truncation toward zero
    return np.clip(q, -128, 127).astype(np.int8)


def quantize(x_f32, scale, zp):
    """QUANTIZE float32 -> int8 (reference_ops::AffineQuantize):
    round(x / (float)scale) computed in float32 (std::round on float, half away from zero),
    + zp, clamp to [-128, 127]."""
    x = np.asarray(x_f32, dtype=np.float32)
    v = round_half_away(x / np.float32(scale))  # float32 division, float32 result
    # the kernel casts float -> int32 before clamping; values past int32 are UB in C++
    return np.clip(v.astype(np.float64) + zp, -128, 127).astype(np.int8)
