"""Storage of the int8 golden sets: cases.json (a list of dicts) + flat 1-D .npy arrays
concatenated over the cases (npy version 1.0, little endian, C order), + meta.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DTYPES = {"i1": np.dtype("|i1"), "i4": np.dtype("<i4"), "f4": np.dtype("<f4")}


def f32(x) -> float:
    """The exact float32 value as a Python float (its repr round-trips through f64 -> f32)."""
    v = np.float32(x)
    assert np.isfinite(v)
    return float(v)


class FlatArrays:
    """Named flat arrays; ``add(name, arr)`` appends ``arr`` (C order) and returns
    ``{name_offset, name_len}`` (element offsets) for the case record."""

    def __init__(self, spec: dict[str, str]):
        self.spec = {k: DTYPES[v] for k, v in spec.items()}
        self.parts: dict[str, list[np.ndarray]] = {k: [] for k in spec}
        self.size: dict[str, int] = {k: 0 for k in spec}

    def add(self, name: str, arr) -> dict:
        dt = self.spec[name]
        if arr is None:
            return {f"{name}_offset": self.size[name], f"{name}_len": 0}
        a = np.asarray(arr)
        assert np.can_cast(a.dtype, dt, casting="same_kind") or a.dtype == dt, (name, a.dtype)
        b = np.ascontiguousarray(a).astype(dt, copy=False).reshape(-1)
        if a.dtype.kind in "iu":
            assert np.array_equal(b.astype(np.int64), a.reshape(-1).astype(np.int64)), name
        else:
            assert np.array_equal(b.astype(np.float64), a.reshape(-1).astype(np.float64)), name
        off = self.size[name]
        self.parts[name].append(b)
        self.size[name] += b.size
        return {f"{name}_offset": off, f"{name}_len": int(b.size)}

    def write(self, out_dir: Path):
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, dt in self.spec.items():
            arr = (np.concatenate(self.parts[name]) if self.parts[name]
                   else np.zeros(0, dtype=dt)).astype(dt)
            with open(out_dir / f"{name}.npy", "wb") as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), version=(1, 0),
                                          allow_pickle=False)


def write_json(path: Path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def versions() -> dict:
    import importlib.metadata as md
    return {p: md.version(p) for p in ("ai-edge-litert", "numpy", "flatbuffers")}
