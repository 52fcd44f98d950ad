#!/usr/bin/env python3
"""Golden files for the Rust model loader (gconv_std::model::Model), made with tools/gconv_torch.py.

Regenerate (from the repository root):

    tools/setup-venv.sh && tools/.venv/bin/python tools/make_goldens.py

Each directory tools/golden/<name>/ holds

    model.json          docs/model-format.md description (tools/gconv_torch.describe)
    model.safetensors   F32 weights, PyTorch state_dict names and layouts
    input.npy           float32 input batch
    output.npy          float32 PyTorch output (computed in float64, then cast)

Goldens (all weights and inputs are drawn from numpy's PCG64 with fixed seeds, so they do
not depend on torch's RNG; batch-norm running statistics are random, running_var positive,
and the models are in eval mode):

    p4cnn           Z2->C4 conv 3x3 same, BN, ReLU, C4->C4 conv, ReLU, max_pool 2, C4->C4 conv,
                    group_pool max, global_avg_pool, dense -> 10.  input (4, 1, 12, 12),
                    output (4, 10), invariant under C4.
    p4m             the same with D4.  output (4, 10), invariant under D4.
    p4cnn-features  the p4cnn model (same weights) without group_pool / global_avg_pool / dense:
                    output the group map (4, 6, 4, 6, 6), equivariant under C4.
    coverage        the other layer kinds and options, D4, still invariant: stride-2 VALID conv,
                    even kernel with padding "1", avg_pool, conv without bias and padding
                    "1,1,1,1", group_pool mean, batch_norm on a Z2 map, 3x3/1 max_pool with
                    padding "1", dense.  input (3, 2, 11, 11), output (3, 4).
    c4-input-flatten  a C4 group-map input (input.space "c4"), an even kernel with TensorFlow
                    style asymmetric padding "0,1,0,1" (so accept_non_equivariant is true),
                    and dense on the flattened (N, C, G, H, W) map.  input (2, 2, 4, 6, 6),
                    output (2, 7), NOT equivariant.

Channel counts differ from layer to layer (and from |G|) so that a swapped axis shows.
The script checks, before writing anything: the float32 forward equals the float64 golden
within 1e-5, the exported directory loads back (gconv_torch.load) to the same outputs, and
the invariance / equivariance of the equivariant goldens under every group element.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gconv_torch as gt  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "golden"
TOL = 1e-5


def randomize(model: nn.Module, seed: int) -> None:
    """Fill every parameter and BN statistic from numpy's PCG64 (torch-independent)."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, mod in model.named_children():
            if isinstance(mod, gt.GConv):
                fan_in = mod.c_in * mod.nti * mod.k * mod.k
                mod.weight.copy_(torch.from_numpy(
                    rng.normal(0, 1.5 / np.sqrt(fan_in), mod.weight.shape)))
                if mod.bias is not None:
                    mod.bias.copy_(torch.from_numpy(rng.uniform(-0.2, 0.2, mod.bias.shape)))
            elif isinstance(mod, nn.BatchNorm3d):
                c = mod.num_features
                mod.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c)))
                mod.bias.copy_(torch.from_numpy(rng.uniform(-0.3, 0.3, c)))
                mod.running_mean.copy_(torch.from_numpy(rng.uniform(-0.5, 0.5, c)))
                mod.running_var.copy_(torch.from_numpy(rng.uniform(0.2, 2.0, c)))
                mod.num_batches_tracked.fill_(0)
            elif isinstance(mod, nn.Linear):
                mod.weight.copy_(torch.from_numpy(
                    rng.normal(0, 1 / np.sqrt(mod.in_features), mod.weight.shape)))
                if mod.bias is not None:
                    mod.bias.copy_(torch.from_numpy(rng.uniform(-0.1, 0.1, mod.bias.shape)))
    model.eval()


def p4_model(group: str, head: bool) -> gt.GCNN:
    layers = [
        ("conv1", gt.GConv("z2", group, 1, 3, 3, 1, "same")),
        ("bn1", gt.GBatchNorm(3)),
        ("relu1", nn.ReLU()),
        ("conv2", gt.GConv(group, group, 3, 5, 3, 1, "same")),
        ("relu2", nn.ReLU()),
        ("pool1", gt.SpatialPool("max", 2)),
        ("conv3", gt.GConv(group, group, 5, 6, 3, 1, "same")),
    ]
    if head:
        layers += [("gpool", gt.GroupPool("max")), ("gap", gt.GlobalAvgPool()),
                   ("fc", gt.Dense(6, 10))]
    return gt.GCNN("z2", 1, 12, 12, layers)


def coverage_model() -> gt.GCNN:
    return gt.GCNN("z2", 2, 11, 11, [
        ("conv1", gt.GConv("z2", "d4", 2, 3, 3, 2, "valid")),      # 11 -> 5
        ("bn1", gt.GBatchNorm(3)),
        ("relu1", nn.ReLU()),
        ("conv2", gt.GConv("d4", "d4", 3, 4, 2, 1, 1)),            # even K, "1": 5 -> 6
        ("pool1", gt.SpatialPool("avg", 2)),                       # 6 -> 3
        ("conv3", gt.GConv("d4", "d4", 4, 5, 3, 1, (1, 1, 1, 1), bias=False)),  # 3 -> 3
        ("gpool", gt.GroupPool("mean")),
        ("bn2", gt.GBatchNorm(5)),                                 # on a Z2 map
        ("relu2", nn.ReLU()),
        ("pool2", gt.SpatialPool("max", 3, 1, 1)),                 # 3 -> 3
        ("gap", gt.GlobalAvgPool()),
        ("fc", gt.Dense(5, 4)),
    ])


def c4_input_flatten_model() -> gt.GCNN:
    return gt.GCNN("c4", 2, 6, 6, [
        ("conv1", gt.GConv("c4", "c4", 2, 3, 2, 1, (0, 1, 0, 1))),  # TF "SAME", even K
        ("relu1", nn.ReLU()),
        ("conv2", gt.GConv("c4", "c4", 3, 2, 3, 1, "valid", bias=False)),  # 6 -> 4
        ("fc", gt.Dense(2 * 4 * 4 * 4, 7)),
    ])


def forward64(model: gt.GCNN, x: np.ndarray) -> np.ndarray:
    m64 = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        return m64(torch.from_numpy(x.astype(np.float64))).numpy()


def check_symmetry(model: gt.GCNN, x: np.ndarray, group: str, kind: str) -> float:
    """Largest deviation from invariance (kind 'invariant') or equivariance ('equivariant')
    over all elements, in float64."""
    m = copy.deepcopy(model).double().eval()
    xt = torch.from_numpy(x.astype(np.float64))
    err = 0.0
    with torch.no_grad():
        y = m(xt)
        for g in range(gt.ORDER[group]):
            yg = m(gt.transform(xt, g, group, model.input_space))
            want = y if kind == "invariant" else gt.transform(y, g, group, group)
            err = max(err, (yg - want).abs().max().item())
    return err


def make(name: str, model: gt.GCNN, x: np.ndarray, accept: bool = False,
         symmetry: tuple[str, str] | None = None) -> None:
    out_dir = GOLDEN / name
    y64 = forward64(model, x)
    y = y64.astype(np.float32)
    with torch.no_grad():
        y32 = model(torch.from_numpy(x)).numpy()
    err32 = float(np.abs(y32 - y).max())
    assert err32 < TOL, f"{name}: float32 forward differs from the golden by {err32}"
    desc = gt.export(model, out_dir, accept_non_equivariant=accept)
    np.save(out_dir / "input.npy", x.astype(np.float32))
    np.save(out_dir / "output.npy", y)
    back = gt.load(out_dir)
    with torch.no_grad():
        yb = back(torch.from_numpy(np.load(out_dir / "input.npy"))).numpy()
    errb = float(np.abs(yb - np.load(out_dir / "output.npy")).max())
    assert errb < TOL, f"{name}: reloaded model differs by {errb}"
    assert json.loads((out_dir / "model.json").read_text()) == desc
    msg = ""
    if symmetry:
        e = check_symmetry(model, x, *symmetry)
        assert e < 1e-10, f"{name}: not {symmetry[1]} under {symmetry[0]}: {e}"
        msg = f", {symmetry[1]} under {symmetry[0]} (float64 err {e:.1e})"
    print(f"{name:17s} input {tuple(x.shape)} -> output {tuple(y.shape)}, "
          f"|y|max {np.abs(y).max():.3f}, float32 vs golden {err32:.1e}, reload {errb:.1e}{msg}")


def main() -> int:
    torch.set_num_threads(1)  # deterministic reductions
    rng = np.random.default_rng(2024)
    x12 = rng.uniform(0, 1, (4, 1, 12, 12)).astype(np.float32)

    p4cnn = p4_model("c4", True)
    randomize(p4cnn, 1)
    make("p4cnn", p4cnn, x12, symmetry=("c4", "invariant"))

    features = p4_model("c4", False)
    features.load_state_dict({k: v for k, v in p4cnn.state_dict().items()
                              if k.split(".")[0] in dict(features.named_children())})
    features.eval()
    make("p4cnn-features", features, x12, symmetry=("c4", "equivariant"))

    p4m = p4_model("d4", True)
    randomize(p4m, 2)
    make("p4m", p4m, x12, symmetry=("d4", "invariant"))

    cov = coverage_model()
    randomize(cov, 3)
    xc = rng.uniform(-1, 1, (3, 2, 11, 11)).astype(np.float32)
    make("coverage", cov, xc, symmetry=("d4", "invariant"))

    flat = c4_input_flatten_model()
    randomize(flat, 4)
    xf = rng.normal(0, 1, (2, 2, 4, 6, 6)).astype(np.float32)
    make("c4-input-flatten", flat, xf, accept=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
