#!/usr/bin/env python3
"""Fits the cost model `gconv_core::quant::dsp` chooses its blocking with.

Reads the `dsp-blocking` lines that the firmware prints when built with the
feature `dsp-blockings` (scripts/cortex-m4-dsp-fit.sh runs it under QEMU with
`-icount` and writes dsp_blockings.log next to this file): the instructions of one
int8 layer of the Cortex-M4 issue under one blocking,

    dsp-blocking shape=a planes_per_pass=4 strip=14 rows=2 words=2004 instructions=11138391

and fits, by non-negative least squares on relative errors, the instructions as

    passes * (packed words, packed rows, pack calls, strip pads)
      + bands + output rows + blocks + SMLADs + outputs + one constant per layer

with the terms counted as `estimate` in gconv-core/src/quant/dsp/mod.rs counts
them (the per-layer constants, e.g. making the filters, do not depend on the
blocking and are not in the Rust model). It prints the Rust constants in tenths
of an instruction and, per layer, the measured best blocking within the
firmware's 2,048-word budget against the one the fitted model picks.

    python3 examples/cortex-m4/fit_dsp_cost.py [dsp_blockings.log]

Needs numpy and scipy (tools/.venv has them: tools/setup-venv.sh).
"""

import re
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

HERE = Path(__file__).resolve().parent
BUDGET = 2048

# The five int8 layers of the firmware (build.rs): group order, lifting, C_in,
# C_out, size, K.
LAYERS = {
    "a": (4, False, 10, 10, 28, 3),
    "e": (4, False, 4, 4, 16, 3),
    "d4": (8, False, 4, 4, 16, 3),
    "lift-c4": (4, True, 1, 10, 28, 3),
    "lift-d4": (8, True, 1, 10, 28, 3),
}

NAMES = ["PACKED_WORD", "PACKED_ROW", "PACK_CALL", "STRIP", "BAND", "ROW", "BLOCK",
         "SMLAD", "OUTPUT", "PASS"]


def cover(width):
    """(pixels, blocks) of a strip: blocks of 3, one of 4 or 2 for the rest."""
    if width <= 2:
        return 2, 1
    r = width % 3
    if r == 0:
        return width, width // 3
    return width, width // 3 + (0 if r == 1 else 1)


def features(name, per_pass, strip, rows):
    order, lifting, cin, cout, size, k = LAYERS[name]
    nti = 1 if lifting else order
    planes = cout * order
    rows_paired = cin == 1 and nti == 1 and k >= 2
    pairs = (cin + 1) // 2
    p2 = pairs * nti
    chunks = (k + 1) // 2 if rows_paired else k * p2
    passes = -(-planes // per_pass)
    oh = ow = size
    f = np.zeros(len(NAMES))
    for sc, w in ((ow // strip, strip), (1 if ow % strip else 0, ow % strip)):
        if sc == 0:
            continue
        pixels, blocks = cover(w)
        pitch = pixels + k - 1
        f[3] += passes * sc
        for bc, r in ((oh // rows, rows), (1 if oh % rows else 0, oh % rows)):
            n = sc * bc
            if n == 0:
                continue
            band_rows = r + k - 1
            f[0] += passes * n * band_rows * p2 * pitch
            f[1] += passes * n * band_rows * p2
            f[2] += passes * n * band_rows * (1 if rows_paired else pairs)
            f[4] += n * planes
            f[5] += n * planes * r
            f[6] += n * planes * r * blocks
            f[7] += n * planes * r * pixels * chunks * k
            f[8] += n * planes * r * w
    f[9] = passes
    return f


def main():
    log = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "dsp_blockings.log"
    pat = re.compile(r"dsp-blocking shape=(\S+) planes_per_pass=(\d+) strip=(\d+) "
                     r"rows=(\d+) words=(\d+) instructions=(\d+)")
    runs = [(m[1], int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]))
            for m in map(pat.search, log.read_text().splitlines()) if m]
    if not runs:
        sys.exit(f"no dsp-blocking lines in {log}")
    names = list(LAYERS)
    rows_x, y = [], []
    for name, pp, strip, r, _, ins in runs:
        layer = np.zeros(len(names))
        layer[names.index(name)] = 1.0
        rows_x.append(np.concatenate([features(name, pp, strip, r), layer]) / ins)
        y.append(1.0)
    coef, _ = nnls(np.array(rows_x), np.array(y))
    print(f"{len(runs)} runs from {log.name}")
    print("// Rust constants (tenths of an instruction):")
    for n, c in zip(NAMES, coef):
        print(f"const COST_{n}: u64 = {round(c * 10)};")
    model = coef[:len(NAMES)]
    errors = []
    for name, pp, strip, r, _, ins in runs:
        full = np.concatenate([features(name, pp, strip, r), np.eye(len(names))[names.index(name)]])
        errors.append(full @ coef / ins - 1)
    print(f"relative error: max {max(abs(e) for e in errors):.3f}, "
          f"rms {np.sqrt(np.mean(np.square(errors))):.3f}")
    for name in names:
        fits = [(ins, pp, s, r) for n, pp, s, r, words, ins in runs
                if n == name and words <= BUDGET]
        if not fits:
            continue
        best = min(fits)
        pick = min(fits, key=lambda t: features(name, t[1], t[2], t[3]) @ model)
        print(f"{name}: measured best within {BUDGET} words {best[1:]} {best[0]:,}; "
              f"model picks {pick[1:]} {pick[0]:,} ({pick[0] / best[0] - 1:+.1%})")


if __name__ == "__main__":
    main()
