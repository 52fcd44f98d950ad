#!/usr/bin/env python3
"""Train P4CNN (C4), P4M (D4) and a planar CNN on upright sklearn digits; test on rotated digits.

Regenerate models/ (from the repository root; about a minute on 2 CPU cores):

    tools/setup-venv.sh && tools/.venv/bin/python tools/train_digits.py

Data: ``sklearn.datasets.load_digits()`` (1797 images, 8x8, values 0..16 scaled to [0, 1]),
a stratified split with 300 test images (seed 0). Training uses the upright images only, no
augmentation. Test sets (seed 1): every test image rotated by a random multiple of 90 degrees
(``test_rotated_c4``), and the same rotation followed, at random, by a flip
(``test_rotated_d4``: element ``g = 4*m + r`` of CONVENTIONS.md: rot90 by r, then flipud if m).

Models (the same block sequence; 8x8 -> 8 -> 8 -> pool 4 -> 4, every layer satisfies the
equivariance rule of CONVENTIONS.md):

    conv1 3x3 same, bn1, relu, conv2 3x3 same, bn2, relu, max_pool 2, conv3 3x3 same, bn3, relu,
    [group_pool max,] global_avg_pool, dense -> 10

with planar channels N = 32 for the planar CNN and the equal-parameter budget
``round(N / sqrt(|G|))`` G-channels for the G-CNNs (C4: 16, D4: 11). The planar CNN is the same
model built from ordinary ``nn.Conv2d`` / ``nn.BatchNorm2d``.

Outputs:

    models/digits-p4cnn/{model.json, model.safetensors}   trained P4CNN (tools/gconv_torch.export)
    models/digits-p4m/{model.json, model.safetensors}     trained P4M
    models/digits/test_upright.npy       float32 (300, 1, 8, 8)
    models/digits/test_rotated_c4.npy    float32 (300, 1, 8, 8)
    models/digits/test_rotated_d4.npy    float32 (300, 1, 8, 8)
    models/digits/test_labels.npy        float32 (300,)
    models/digits/accuracy.json          model -> {params, upright_acc, rotated_acc}; rotated_acc
                                         is on test_rotated_c4 for p4cnn and planar-cnn, on
                                         test_rotated_d4 for p4m (the exported models reproduce
                                         these numbers in float32)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gconv_torch as gt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PLANAR_CHANNELS = 32
TEST_SIZE = 300


def g_channels(group: str) -> int:
    return round(PLANAR_CHANNELS / math.sqrt(gt.ORDER[group]))


def gcnn(group: str) -> gt.GCNN:
    c = g_channels(group)
    return gt.GCNN("z2", 1, 8, 8, [
        ("conv1", gt.GConv("z2", group, 1, c, 3, 1, "same")),
        ("bn1", gt.GBatchNorm(c)),
        ("relu1", nn.ReLU()),
        ("conv2", gt.GConv(group, group, c, c, 3, 1, "same")),
        ("bn2", gt.GBatchNorm(c)),
        ("relu2", nn.ReLU()),
        ("pool", gt.SpatialPool("max", 2)),
        ("conv3", gt.GConv(group, group, c, c, 3, 1, "same")),
        ("bn3", gt.GBatchNorm(c)),
        ("relu3", nn.ReLU()),
        ("gpool", gt.GroupPool("max")),
        ("gap", gt.GlobalAvgPool()),
        ("fc", gt.Dense(c, 10)),
    ])


def planar_cnn() -> nn.Sequential:
    n = PLANAR_CHANNELS
    return nn.Sequential(
        nn.Conv2d(1, n, 3, padding=1), nn.BatchNorm2d(n), nn.ReLU(),
        nn.Conv2d(n, n, 3, padding=1), nn.BatchNorm2d(n), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(n, n, 3, padding=1), nn.BatchNorm2d(n), nn.ReLU(),
        gt.GlobalAvgPool(), nn.Linear(n, 10),
    )


def data():
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None]  # (1797, 1, 8, 8) in [0, 1]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_SIZE, stratify=y,
                                              random_state=0)
    rng = np.random.default_rng(1)
    r = rng.integers(0, 4, len(x_te))
    m = rng.integers(0, 2, len(x_te))
    x_c4 = np.stack([gt.spatial_np(img, "c4", int(ri)) for img, ri in zip(x_te, r)])
    x_d4 = np.stack([gt.spatial_np(img, "d4", int(4 * mi + ri))
                     for img, mi, ri in zip(x_te, m, r)])
    return (x_tr, y_tr), (x_te.astype(np.float32), x_c4.astype(np.float32),
                          x_d4.astype(np.float32), y_te)


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 32):
            idx = perm[i:i + 32]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


@torch.no_grad()
def logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    return model.eval()(torch.from_numpy(x)).numpy()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return float((logits(model, x).argmax(1) == y).mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="train the digits models (see the docstring)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "models")
    args = ap.parse_args(argv)

    # One thread and deterministic kernels: the committed models regenerate bit for bit,
    # whatever the machine's core count.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    t0 = time.time()
    (x_tr, y_tr), (x_up, x_c4, x_d4, y_te) = data()
    print(f"train {x_tr.shape}, test {x_up.shape}; planar channels {PLANAR_CHANNELS}, "
          f"C4 {g_channels('c4')}, D4 {g_channels('d4')} G-channels; torch {torch.__version__}")

    torch.manual_seed(0)  # initial weights
    models = {"planar-cnn": planar_cnn(), "p4cnn": gcnn("c4"), "p4m": gcnn("d4")}
    results = {}
    for seed, (name, model) in enumerate(models.items()):
        t = time.time()
        train(model, x_tr, y_tr, args.epochs, seed)
        results[name] = {
            "params": gt.count_params(model),
            "upright": accuracy(model, x_up, y_te),
            "c4": accuracy(model, x_c4, y_te),
            "d4": accuracy(model, x_d4, y_te),
            "seconds": time.time() - t,
        }

    # Invariance of the trained G-CNNs on the real test sets (float32).
    inv = {
        "p4cnn": np.abs(logits(models["p4cnn"], x_c4) - logits(models["p4cnn"], x_up)).max(),
        "p4m": np.abs(logits(models["p4m"], x_d4) - logits(models["p4m"], x_up)).max(),
    }

    out, data_dir = args.out, args.out / "digits"
    data_dir.mkdir(parents=True, exist_ok=True)
    np.save(data_dir / "test_upright.npy", x_up)
    np.save(data_dir / "test_rotated_c4.npy", x_c4)
    np.save(data_dir / "test_rotated_d4.npy", x_d4)
    np.save(data_dir / "test_labels.npy", y_te.astype(np.float32))
    rotated_set = {"planar-cnn": "c4", "p4cnn": "c4", "p4m": "d4"}
    acc_json = {name: {"params": r["params"], "upright_acc": r["upright"],
                       "rotated_acc": r[rotated_set[name]]} for name, r in results.items()}
    (data_dir / "accuracy.json").write_text(json.dumps(acc_json, indent=2) + "\n")
    for name, group in (("p4cnn", "c4"), ("p4m", "d4")):
        d = out / f"digits-{name}"
        gt.export(models[name], d)
        back = gt.load(d)  # the exported files reproduce the accuracies
        for x, key in ((x_up, "upright"), (x_c4, "c4"), (x_d4, "d4")):
            assert accuracy(back, x, y_te) == results[name][key], (name, key)

    print()
    print("| model | G-channels x |G| | params | upright | rotated (C4) | rotated + flipped (D4) |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        ch = {"planar-cnn": f"{PLANAR_CHANNELS} x 1", "p4cnn": f"{g_channels('c4')} x 4",
              "p4m": f"{g_channels('d4')} x 8"}[name]
        print(f"| {name} | {ch} | {r['params']} | {100 * r['upright']:.1f}% | "
              f"{100 * r['c4']:.1f}% | {100 * r['d4']:.1f}% |")
    print()
    for name, r in results.items():
        print(f"{name}: trained in {r['seconds']:.1f} s")
    print(f"max |logits(rotated) - logits(upright)|: p4cnn on C4 set {inv['p4cnn']:.1e}, "
          f"p4m on D4 set {inv['p4m']:.1e}")
    print(f"total {time.time() - t0:.1f} s; wrote {out}/digits-p4cnn, {out}/digits-p4m, "
          f"{data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
