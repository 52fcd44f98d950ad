#!/usr/bin/env python3
"""Write models/digits/calibration.npy: the calibration batch for post-training
quantization of the digits models (`gconv quantize`, the int8 tests and the demo).

The first 256 images of the *training* split of tools/train_digits.py (scikit-learn's
bundled digits, the same stratified split with 300 test images and seed 0, scaled to
[0, 1]), upright, float32 (256, 1, 8, 8). Training data, never the test set: the
rotated test set stays unseen by quantization as it was by training.

Needs numpy and scikit-learn only (not torch):
    python3 -m venv /tmp/v && /tmp/v/bin/pip install numpy scikit-learn
    /tmp/v/bin/python tools/make_calibration.py
"""
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

TEST_SIZE = 300  # as in tools/train_digits.py
COUNT = 256

digits = load_digits()
x = (digits.images.astype(np.float32) / 16.0)[:, None]
y = digits.target.astype(np.int64)
x_tr, _x_te, _y_tr, _y_te = train_test_split(x, y, test_size=TEST_SIZE, stratify=y, random_state=0)
out = Path(__file__).resolve().parent.parent / "models/digits/calibration.npy"
np.save(out, np.ascontiguousarray(x_tr[:COUNT], dtype=np.float32))
print(f"wrote {out} {x_tr[:COUNT].shape}")
