#!/usr/bin/env python3
"""Fits the lifting part of `gconv_std::layer::fourier_pays` (ConvPath::Auto's cost model).

For 54 lifting layers (Z2->C4 and Z2->D4; 1, 3, 8 input channels; 3x3, 5x5, 7x7
kernels; 32, 96, 224 pixels square; 16 output channels; batch 1; one thread) this
times `gconv bench --path fourier` (the fused lifting kernel) and `--path fast`, or
reads the times from a file written by an earlier run, and fits, by non-negative
least squares on relative errors:

    fast    ~ a * fast_macs + f0
    fourier ~ m * kernel_macs + s4 * C4_outputs + s8 * D4_outputs + f1

It prints the constants in units of the fast path's multiply-adds (as
`fourier_pays` uses them) and, for every layer, which path the fitted model picks
and what a wrong pick costs.

    python3 gconv-bench/fit_lifting_cost.py                       # measure, then fit
    python3 gconv-bench/fit_lifting_cost.py --times gconv-bench/lifting_cost_times.txt

Needs numpy and scipy (tools/.venv has them: tools/setup-venv.sh). The times the
constants in gconv-std came from are in lifting_cost_times.txt (AMD EPYC Zen 4,
AVX-512), one layer per line: group, C_in, K, size, Fourier ms, fast ms.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GCONV = ROOT / "target" / "release" / "gconv"

# (orbits Q, multiply-adds per output G-channel, input channel and pixel) of the
# lifting kernel, from gconv_core::fourier::lifting (its unit test checks them).
LIFTING = {
    ("c4", 3): (3, 13), ("c4", 5): (7, 37), ("c4", 7): (13, 73),
    ("d4", 3): (3, 17), ("d4", 5): (6, 45), ("d4", 7): (10, 85),
}
C_OUT = 16


def bench(group, c_in, k, size, path):
    cmd = [str(GCONV), "bench", "--from", "z2", "--to", group, "--cin", str(c_in),
           "--cout", str(C_OUT), "--size", str(size), "-k", str(k), "--padding", "same",
           "--path", path, "--iters", "60"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"median_ms=([0-9.]+)", out).group(1))


def measure():
    subprocess.run(["cargo", "build", "--release", "-p", "gconv-std", "--features", "cli", "--bin", "gconv"],
                   cwd=ROOT, check=True)
    rows = []
    for group in ("c4", "d4"):
        for c_in in (1, 3, 8):
            for k in (3, 5, 7):
                for size in (32, 96, 224):
                    f = bench(group, c_in, k, size, "fourier")
                    a = bench(group, c_in, k, size, "fast")
                    print(group, c_in, k, size, f, a, flush=True)
                    rows.append((group, c_in, k, size, f, a))
    return rows


def main():
    import numpy as np
    from scipy.optimize import nnls

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--times", help="read times from this file instead of measuring")
    args = ap.parse_args()
    if args.times:
        rows = [(g, int(c), int(k), int(s), float(f), float(a))
                for g, c, k, s, f, a in (line.split() for line in open(args.times))]
    else:
        rows = measure()

    feats = []
    for g, c_in, k, s, f, a in rows:
        n = 4 if g == "c4" else 8
        _, terms = LIFTING[(g, k)]
        pixels = s * s
        outputs = C_OUT * n * pixels
        kernel_macs = C_OUT * c_in * terms * pixels
        # The fast path's flat output run: out_h * (W + K - 1) per plane (SAME, stride 1).
        fast_macs = C_OUT * n * c_in * k * k * s * (s + k - 1)
        feats.append((kernel_macs, outputs if n == 4 else 0, outputs if n == 8 else 0, fast_macs))
    feats = np.array(feats, dtype=float)
    t_four = np.array([r[4] for r in rows])
    t_fast = np.array([r[5] for r in rows])

    a_mat = np.c_[feats[:, 3], np.ones(len(rows))]
    fast_coef, _ = nnls(a_mat / t_fast[:, None], np.ones(len(rows)))
    b_mat = np.c_[feats[:, 0], feats[:, 1], feats[:, 2], np.ones(len(rows))]
    four_coef, _ = nnls(b_mat / t_four[:, None], np.ones(len(rows)))
    unit = fast_coef[0]  # ms per fast-path multiply-add
    print(f"fast path: {1 / unit / 1e6:.1f} M multiply-adds per ms, fixed {fast_coef[1] / unit:.0f}")
    print("fourier (fast multiply-add units): "
          f"per kernel multiply-add {four_coef[0] / unit:.2f}, per C4 output {four_coef[1] / unit:.2f}, "
          f"per D4 output {four_coef[2] / unit:.2f}, fixed {(four_coef[3] - fast_coef[1]) / unit:.0f}")

    pred_fast, pred_four = a_mat @ fast_coef, b_mat @ four_coef
    wrong, worst = 0, 1.0
    for r, pa, pf in zip(rows, pred_fast, pred_four):
        pick_fourier, fourier_faster = pf < pa, r[4] < r[5]
        note = ""
        if pick_fourier != fourier_faster:
            loss = (r[4] if pick_fourier else r[5]) / min(r[4], r[5])
            wrong, worst = wrong + 1, max(worst, loss)
            note = f"  wrong pick, {loss:.2f}x"
        print(f"{r[0]} {r[1]}->{C_OUT} k{r[2]} {r[3]}x{r[3]}: fourier {r[4]:.4f} ms, fast {r[5]:.4f} ms, "
              f"picks {'fourier' if pick_fourier else 'fast'}{note}")
    print(f"{wrong} wrong picks of {len(rows)}, worst {worst:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
