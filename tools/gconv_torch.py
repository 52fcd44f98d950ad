#!/usr/bin/env python3
"""Plain-PyTorch group-equivariant convolutions (p4 / p4m), GrouPy-compatible.

Written straight from /work/shared/CONVENTIONS.md (the contract every gconv crate follows):

* element order: C4 element ``r`` = rotation by ``r*90`` degrees counter-clockwise
  (``np.rot90(A, r)``); D4 element ``g = 4*m + r`` = rotate by ``r`` first, then flipud if m;
* index tables ``make_indices(from_space, to_group, K)`` of shape ``(nto, nti, K, K, 3)`` with
  ``(T, U, V)`` where ``U, V`` are the spatial action of ``t`` on the index grids and
  ``T[t][s] = t^-1 s``;
* the gather ``tw[o][t][i][s][u][v] = w[o][i][T][U][V]`` reshaped to an OIHW bank
  ``(C_out*nto, C_in*nti, K, K)`` and one ``F.conv2d`` on the input viewed as
  ``(N, C_in*nti, H, W)``; bias per G-channel, broadcast over the ``nto`` planes.

Blocks: :class:`GConv`, :class:`GroupPool`, :class:`GBatchNorm` (``nn.BatchNorm3d`` on group
maps / ``nn.BatchNorm2d`` on Z2 maps), :class:`SpatialPool`, :class:`GlobalAvgPool`,
``nn.ReLU``, :class:`Dense` (``nn.Linear`` on the flattened input). A model is a
:class:`GCNN` (an ``nn.Sequential`` of named blocks that also knows its input); its
``state_dict`` names are the tensor names of ``docs/model-format.md``.

* :func:`describe` returns the ``model.json`` dict of docs/model-format.md,
* :func:`export` writes ``model.json`` + ``model.safetensors`` (F32) into a directory,
* :func:`load` builds a model back from such a directory (round-trip check of the format).

``python tools/gconv_torch.py --self-test`` checks the index tables against GrouPy's own
``.npy`` files, the group law, exact layer and model equivariance, and the export round trip.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SPACES = ("z2", "c4", "d4")
ORDER = {"z2": 1, "c4": 4, "d4": 8}

# --------------------------------------------------------------------------------------------
# Groups
# --------------------------------------------------------------------------------------------


def _decompose(space: str, g: int) -> tuple[int, int]:
    """(m, r) of element g: C4 has m = 0; D4 g = 4*m + r."""
    if space == "z2":
        assert g == 0
        return 0, 0
    if space == "c4":
        assert 0 <= g < 4
        return 0, g
    assert space == "d4" and 0 <= g < 8
    return g // 4, g % 4


def _compose_index(space: str, m: int, r: int) -> int:
    return 4 * m + r if space == "d4" else r


def compose(space: str, g1: int, g2: int) -> int:
    """g1 * g2: ``(m1,r1)(m2,r2) = (m1 xor m2, ((-1)^m2 r1 + r2) mod 4)``."""
    if space == "z2":
        return 0
    m1, r1 = _decompose(space, g1)
    m2, r2 = _decompose(space, g2)
    return _compose_index(space, m1 ^ m2, ((-r1 if m2 else r1) + r2) % 4)


def inverse(space: str, g: int) -> int:
    """``(0,r)^-1 = (0,-r)``, ``(1,r)^-1 = (1,r)``."""
    if space == "z2":
        return 0
    m, r = _decompose(space, g)
    return g if m else _compose_index(space, 0, (-r) % 4)


def spatial_np(a: np.ndarray, space: str, g: int) -> np.ndarray:
    """Spatial action of g on the last two axes (about the array centre): rot90 by r, then
    flipud (reverse the row axis) if m = 1."""
    m, r = _decompose(space, g)
    out = np.rot90(a, r, axes=(-2, -1))
    if m:
        out = np.flip(out, axis=-2)
    return np.ascontiguousarray(out)


def spatial_torch(x: torch.Tensor, space: str, g: int) -> torch.Tensor:
    """Same as :func:`spatial_np` for a torch tensor (``torch.rot90`` == ``np.rot90``)."""
    m, r = _decompose(space, g)
    out = torch.rot90(x, r, dims=(-2, -1))
    if m:
        out = torch.flip(out, dims=(-2,))
    return out


def transform(x: torch.Tensor, g: int, group: str, space: str) -> torch.Tensor:
    """Transformation law of feature maps (CONVENTIONS.md).

    ``space == "z2"``: ``g.x = spatial_g(x)``. Group map (orientation axis -3):
    ``(g.y)[..., h, :, :] = spatial_g(y[..., g^-1 h, :, :])``. ``group`` is the group g belongs
    to (``c4``/``d4``) and must equal ``space`` for group maps.
    """
    if space == "z2":
        return spatial_torch(x, group, g)
    assert space == group
    n = ORDER[space]
    gi = inverse(space, g)
    perm = [compose(space, gi, h) for h in range(n)]
    return spatial_torch(x[..., perm, :, :], group, g)


# --------------------------------------------------------------------------------------------
# Index tables
# --------------------------------------------------------------------------------------------


def make_indices(from_space: str, to_group: str, k: int) -> np.ndarray:
    """int32 ``(nto, nti, K, K, 3)`` with last axis ``(T, U, V)``, as GrouPy's
    ``make_{c4_z2,c4_p4,d4_z2,d4_p4m}_indices(K)``.

    ``U, V`` = spatial action of ``t`` on the index grids ``uu, vv`` (about the filter centre,
    odd and even K alike); ``T[t][s] = index of t^-1 s`` (0 when nti = 1).
    """
    if to_group not in ("c4", "d4") or from_space not in ("z2", to_group):
        raise ValueError(f"no G-conv from {from_space} to {to_group}")
    nto, nti = ORDER[to_group], ORDER[from_space]
    uu, vv = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    out = np.zeros((nto, nti, k, k, 3), dtype=np.int32)
    for t in range(nto):
        ut, vt = spatial_np(uu, to_group, t), spatial_np(vv, to_group, t)
        tinv = inverse(to_group, t)
        for s in range(nti):
            out[t, s, :, :, 0] = compose(to_group, tinv, s) if nti > 1 else 0
            out[t, s, :, :, 1] = ut
            out[t, s, :, :, 2] = vt
    return out


def flat_indices(ind: np.ndarray) -> np.ndarray:
    """GrouPy's ``flatten_indices``: ``U*K*nti + V*nti + T``, a raveled index into a filter
    stored ``(K, K, nti)`` (GrouPy's internal layout; not used by the forward here)."""
    k, nti = ind.shape[2], ind.shape[1]
    return (ind[..., 1] * k * nti + ind[..., 2] * nti + ind[..., 0]).astype(np.int32)


def expand_filters(w: torch.Tensor, ind: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Raw weight ``(C_out, C_in, nti, K, K)`` -> OIHW bank ``(C_out*nto, C_in*nti, K, K)``."""
    ind = torch.as_tensor(ind, dtype=torch.long, device=w.device)
    c_out, c_in, nti, k, _ = w.shape
    nto = ind.shape[0]
    # w[:, :, T, U, V] -> (C_out, C_in, nto, nti, K, K) = tw[o][i][t][s][u][v]
    tw = w[:, :, ind[..., 0], ind[..., 1], ind[..., 2]]
    tw = tw.permute(0, 2, 1, 3, 4, 5)  # -> tw[o][t][i][s][u][v]
    return tw.reshape(c_out * nto, c_in * nti, k, k)


# --------------------------------------------------------------------------------------------
# Padding / the equivariance rule
# --------------------------------------------------------------------------------------------


def resolve_padding(padding, k: int) -> tuple[int, int, int, int]:
    """``"valid"``, ``"same"`` (odd K), int / ``"P"`` (P each side) or ``"T,B,L,R"`` /
    4-tuple -> ``(top, bottom, left, right)``."""
    if isinstance(padding, int):
        return (padding,) * 4
    if isinstance(padding, (tuple, list)):
        if len(padding) != 4:
            raise ValueError(f"padding tuple must be (T, B, L, R): {padding!r}")
        return tuple(int(p) for p in padding)
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        if k % 2 == 0:
            raise ValueError("'same' padding needs an odd kernel")
        return ((k - 1) // 2,) * 4
    parts = str(padding).split(",")
    if len(parts) == 1:
        return (int(parts[0]),) * 4
    if len(parts) == 4:
        return tuple(int(p) for p in parts)
    raise ValueError(f"bad padding {padding!r}")


def padding_json(padding) -> str:
    """The model.json spelling of a padding: ``"valid"``, ``"same"``, ``"P"``, ``"T,B,L,R"``."""
    if isinstance(padding, str):
        return padding
    if isinstance(padding, int):
        return str(padding)
    return ",".join(str(int(p)) for p in padding)


def out_size(size: int, k: int, stride: int, before: int, after: int) -> int:
    return (size + before + after - k) // stride + 1


def axis_is_centred(size: int, k: int, stride: int, before: int, after: int) -> bool:
    """CONVENTIONS.md: ``pos(i) = i*stride - pad_before + (K-1)/2``; exactly equivariant iff
    ``pos(0) + pos(out-1) == H - 1`` (computed doubled, in integers)."""
    n = out_size(size, k, stride, before, after)
    if n < 1:
        return False
    two_pos0 = -2 * before + k - 1
    two_posl = 2 * (n - 1) * stride - 2 * before + k - 1
    return two_pos0 + two_posl == 2 * (size - 1)


def _pad(x: torch.Tensor, pad: tuple[int, int, int, int], value: float = 0.0) -> torch.Tensor:
    top, bottom, left, right = pad
    if pad == (0, 0, 0, 0):
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


# --------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------


class GConv(nn.Module):
    """G-convolution ``from_space`` (z2 / c4 / d4) -> ``to_group`` (c4 / d4).

    Parameters: ``weight`` ``(C_out, C_in, nti, K, K)`` (GrouPy raw layout), ``bias``
    ``(C_out,)``. Input ``(N, C_in, [nti,] H, W)``, output ``(N, C_out, nto, H', W')``.
    """

    def __init__(self, from_space: str, to_group: str, c_in: int, c_out: int, k: int,
                 stride: int = 1, padding="valid", bias: bool = True):
        super().__init__()
        self.from_space, self.to_group = from_space, to_group
        self.c_in, self.c_out, self.k, self.stride = c_in, c_out, k, stride
        self.padding = padding
        self.pad = resolve_padding(padding, k)
        self.nti, self.nto = ORDER[from_space], ORDER[to_group]
        ind = make_indices(from_space, to_group, k)
        self.register_buffer("indices", torch.from_numpy(ind.astype(np.int64)), persistent=False)
        self.weight = nn.Parameter(torch.empty(c_out, c_in, self.nti, k, k))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        fan_in = self.c_in * self.nti * self.k * self.k
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.kaiming_uniform_(self.weight.view(self.c_out, fan_in), a=math.sqrt(5))
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def bank(self) -> torch.Tensor:
        return expand_filters(self.weight, self.indices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        if self.from_space == "z2":
            if x.dim() != 4 or x.shape[1] != self.c_in:
                raise ValueError(f"expected (N, {self.c_in}, H, W), got {tuple(x.shape)}")
        elif x.dim() != 5 or x.shape[1] != self.c_in or x.shape[2] != self.nti:
            raise ValueError(f"expected (N, {self.c_in}, {self.nti}, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        xp = _pad(x.reshape(n, self.c_in * self.nti, h, w), self.pad)
        y = F.conv2d(xp, self.bank(), None, stride=self.stride)
        y = y.view(n, self.c_out, self.nto, y.shape[-2], y.shape[-1])
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1, 1)
        return y

    def extra_repr(self):
        return (f"{self.from_space}->{self.to_group}, {self.c_in}, {self.c_out}, k={self.k}, "
                f"stride={self.stride}, padding={self.padding!r}, bias={self.bias is not None}")


class GBatchNorm(nn.BatchNorm3d):
    """Batch norm with statistics per G-channel (shared by the |G| planes of a group map):
    ``nn.BatchNorm3d(C)`` on ``(N, C, G, H, W)``. It also accepts a Z2 map ``(N, C, H, W)``,
    where it computes exactly what ``nn.BatchNorm2d(C)`` does (same parameter names)."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(channels, eps=eps, momentum=momentum)

    @property
    def channels(self) -> int:
        return self.num_features

    def _check_input_dim(self, x):
        if x.dim() not in (4, 5) or x.shape[1] != self.num_features:
            raise ValueError(f"expected (N, {self.num_features}, [G,] H, W), "
                             f"got {tuple(x.shape)}")


class SpatialPool(nn.Module):
    """Spatial max / average pooling of every plane of a Z2 or group map (square window).

    Max: padding never wins; avg: padding counts as 0 (``count_include_pad=True``)."""

    def __init__(self, mode: str, window: int, stride: int | None = None, padding="valid"):
        super().__init__()
        if mode not in ("max", "avg"):
            raise ValueError(mode)
        self.mode, self.window = mode, window
        self.stride = window if stride is None else stride
        self.padding = padding
        self.pad = resolve_padding(padding, window)
        if max(self.pad) > window // 2:
            raise ValueError("pool padding must be at most window/2 on each side")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-2]
        h, w = x.shape[-2:]
        p = x.reshape(x.shape[0], -1, h, w)  # (N, C, H, W) or (N, C*G, H, W)
        if self.mode == "max":
            y = F.max_pool2d(_pad(p, self.pad, float("-inf")), self.window, self.stride)
        else:
            y = F.avg_pool2d(_pad(p, self.pad, 0.0), self.window, self.stride)
        return y.reshape(*lead, y.shape[-2], y.shape[-1])

    def extra_repr(self):
        return f"{self.mode}, window={self.window}, stride={self.stride}, padding={self.padding!r}"


class GroupPool(nn.Module):
    """``(N, C, G, H, W)`` -> ``(N, C, H, W)``: max or mean over the orientation axis."""

    def __init__(self, mode: str = "max"):
        super().__init__()
        if mode not in ("max", "mean"):
            raise ValueError(mode)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"group_pool needs a group map (N, C, G, H, W), got {tuple(x.shape)}")
        return x.amax(dim=2) if self.mode == "max" else x.mean(dim=2)

    def extra_repr(self):
        return self.mode


class GlobalAvgPool(nn.Module):
    """Mean over the two spatial axes: ``(N, C, H, W)`` -> ``(N, C)``,
    ``(N, C, G, H, W)`` -> ``(N, C, G)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(-2, -1))


class Dense(nn.Linear):
    """``nn.Linear`` on the input flattened to ``(N, in_features)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(x.shape[0], -1))


class GCNN(nn.Sequential):
    """An ``nn.Sequential`` of named blocks plus its input description.

    ``layers`` is a list of ``(name, module)``; the names become the ``state_dict`` prefixes
    and the ``name`` fields of model.json (unnamed kinds such as relu get any unique name).
    """

    def __init__(self, input_space: str, in_channels: int, height: int, width: int, layers):
        super().__init__(OrderedDict(layers))
        if input_space not in SPACES:
            raise ValueError(input_space)
        self.input_space, self.in_channels = input_space, in_channels
        self.height, self.width = height, width

    def input_shape(self, n: int) -> tuple[int, ...]:
        if self.input_space == "z2":
            return (n, self.in_channels, self.height, self.width)
        return (n, self.in_channels, ORDER[self.input_space], self.height, self.width)


# --------------------------------------------------------------------------------------------
# model.json
# --------------------------------------------------------------------------------------------


def describe(model: GCNN, accept_non_equivariant: bool = False) -> dict:
    """The ``model.json`` dict of docs/model-format.md for a :class:`GCNN`.

    Tracks the feature-map shape through the layers, checks channel counts, and checks the
    equivariance rule of every conv / pooling layer; a violation raises unless
    ``accept_non_equivariant`` (which is then written into the JSON).
    """
    space, c, h, w = model.input_space, model.in_channels, model.height, model.width
    flat = None  # features after global_avg_pool / dense: (N, flat)
    layers = []

    def rule(kind, name, k, stride, pad):
        top, bottom, left, right = pad
        ok = (axis_is_centred(h, k, stride, top, bottom)
              and axis_is_centred(w, k, stride, left, right) and h == w)
        if not ok and not accept_non_equivariant:
            raise ValueError(f"{kind} {name}: equivariance rule fails at input {h}x{w} "
                             f"(k={k}, stride={stride}, padding={pad})")

    for name, m in model.named_children():
        if isinstance(m, GConv):
            if flat is not None or space != m.from_space or c != m.c_in:
                raise ValueError(f"{name}: conv {m.from_space}/{m.c_in} on a {space}/{c} map")
            rule("conv", name, m.k, m.stride, m.pad)
            layers.append({"kind": "conv", "name": name, "from": m.from_space, "to": m.to_group,
                           "in_channels": m.c_in, "out_channels": m.c_out, "kernel": m.k,
                           "stride": m.stride, "padding": padding_json(m.padding),
                           "bias": m.bias is not None})
            t, b, l, r = m.pad
            space, c = m.to_group, m.c_out
            h, w = out_size(h, m.k, m.stride, t, b), out_size(w, m.k, m.stride, l, r)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            ch = m.num_features
            if flat is not None or ch != c:
                raise ValueError(f"{name}: batch_norm of {ch} channels on {c}")
            if isinstance(m, nn.BatchNorm2d) and space != "z2":
                raise ValueError(f"{name}: BatchNorm2d on a group map")
            if type(m) is nn.BatchNorm3d and space == "z2":
                raise ValueError(f"{name}: BatchNorm3d on a Z2 map")
            if not m.affine or not m.track_running_stats:
                raise ValueError(f"{name}: batch_norm must be affine")
            layers.append({"kind": "batch_norm", "name": name, "channels": ch, "eps": m.eps})
        elif isinstance(m, nn.ReLU):
            layers.append({"kind": "relu"})
        elif isinstance(m, SpatialPool):
            if flat is not None:
                raise ValueError(f"{name}: pooling after flattening")
            rule("pool", name, m.window, m.stride, m.pad)
            layers.append({"kind": f"{m.mode}_pool", "window": m.window, "stride": m.stride,
                           "padding": padding_json(m.padding)})
            t, b, l, r = m.pad
            h, w = out_size(h, m.window, m.stride, t, b), out_size(w, m.window, m.stride, l, r)
        elif isinstance(m, GroupPool):
            if flat is not None or space == "z2":
                raise ValueError(f"{name}: group_pool needs a group map")
            layers.append({"kind": "group_pool", "mode": m.mode})
            space = "z2"
        elif isinstance(m, GlobalAvgPool):
            if flat is not None:
                raise ValueError(f"{name}: global_avg_pool after flattening")
            layers.append({"kind": "global_avg_pool"})
            flat = c * ORDER[space]
        elif isinstance(m, nn.Linear):
            fin = flat if flat is not None else c * ORDER[space] * h * w
            if m.in_features != fin:
                raise ValueError(f"{name}: dense in_features {m.in_features}, input has {fin}")
            layers.append({"kind": "dense", "name": name, "in_features": m.in_features,
                           "out_features": m.out_features, "bias": m.bias is not None})
            flat = m.out_features
        else:
            raise ValueError(f"{name}: no model.json kind for {type(m).__name__}")

    return {
        "format": "gconv-model",
        "version": 1,
        "input": {"space": model.input_space, "channels": model.in_channels,
                  "height": model.height, "width": model.width},
        "accept_non_equivariant": bool(accept_non_equivariant),
        "layers": layers,
    }


def dumps(desc: dict) -> str:
    """model.json text: two-space indent, one layer object per line."""
    head = {k: v for k, v in desc.items() if k != "layers"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v)},")
    lines.append('  "layers": [')
    body = [f"    {json.dumps(layer)}" for layer in desc["layers"]]
    lines.append(",\n".join(body))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def weights(model: nn.Module, keep_num_batches_tracked: bool = False) -> dict[str, torch.Tensor]:
    """The state_dict as contiguous CPU float32 tensors (``num_batches_tracked`` dropped)."""
    out = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            if keep_num_batches_tracked:
                out[k] = v.detach().cpu().clone()
            continue
        out[k] = v.detach().to(device="cpu", dtype=torch.float32).contiguous().clone()
    return out


def export(model: GCNN, directory, accept_non_equivariant: bool = False) -> dict:
    """Write ``model.json`` and ``model.safetensors`` (F32, state_dict names) into
    ``directory``; returns the JSON dict."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    desc = describe(model, accept_non_equivariant)
    tensors = weights(model)
    expected = expected_tensors(desc)
    if set(tensors) != set(expected):
        raise ValueError(f"state_dict {sorted(tensors)} != model.json tensors {sorted(expected)}")
    for k, shape in expected.items():
        if tuple(tensors[k].shape) != shape:
            raise ValueError(f"{k}: shape {tuple(tensors[k].shape)} != {shape}")
    (directory / "model.json").write_text(dumps(desc))
    save_file(tensors, str(directory / "model.safetensors"))
    os.chmod(directory / "model.safetensors", 0o644)  # save_file creates it 0600
    return desc


def expected_tensors(desc: dict) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes that a model.json calls for (docs/model-format.md table)."""
    out = {}
    for layer in desc["layers"]:
        kind = layer["kind"]
        if kind == "conv":
            n, co, ci = layer["name"], layer["out_channels"], layer["in_channels"]
            k = layer["kernel"]
            out[f"{n}.weight"] = (co, ci, ORDER[layer["from"]], k, k)
            if layer.get("bias", True):
                out[f"{n}.bias"] = (co,)
        elif kind == "batch_norm":
            n, ch = layer["name"], layer["channels"]
            for p in ("weight", "bias", "running_mean", "running_var"):
                out[f"{n}.{p}"] = (ch,)
        elif kind == "dense":
            n = layer["name"]
            out[f"{n}.weight"] = (layer["out_features"], layer["in_features"])
            if layer.get("bias", True):
                out[f"{n}.bias"] = (layer["out_features"],)
    return out


_ALLOWED = {
    None: {"format", "version", "input", "accept_non_equivariant", "layers"},
    "input": {"space", "channels", "height", "width"},
    "conv": {"kind", "name", "from", "to", "in_channels", "out_channels", "kernel", "stride",
             "padding", "bias"},
    "batch_norm": {"kind", "name", "channels", "eps"},
    "relu": {"kind"},
    "max_pool": {"kind", "window", "stride", "padding"},
    "avg_pool": {"kind", "window", "stride", "padding"},
    "group_pool": {"kind", "mode"},
    "global_avg_pool": {"kind"},
    "dense": {"kind", "name", "in_features", "out_features", "bias"},
}


def build(desc: dict) -> GCNN:
    """A :class:`GCNN` from a model.json dict (strict: unknown keys are an error)."""
    if set(desc) - _ALLOWED[None] or desc["format"] != "gconv-model" or desc["version"] != 1:
        raise ValueError("not a gconv-model v1 description")
    inp = desc["input"]
    if set(inp) - _ALLOWED["input"]:
        raise ValueError(f"unknown input keys {set(inp) - _ALLOWED['input']}")
    space = inp["space"]
    layers = []
    for i, layer in enumerate(desc["layers"]):
        kind = layer["kind"]
        if kind not in _ALLOWED or kind is None or set(layer) - _ALLOWED[kind]:
            raise ValueError(f"layer {i}: bad kind or keys {layer}")
        name = layer.get("name", f"_{kind}{i}")
        if kind == "conv":
            m = GConv(layer["from"], layer["to"], layer["in_channels"], layer["out_channels"],
                      layer["kernel"], layer.get("stride", 1), layer.get("padding", "valid"),
                      layer.get("bias", True))
            space = layer["to"]
        elif kind == "batch_norm":
            m = GBatchNorm(layer["channels"], layer.get("eps", 1e-5))
        elif kind == "relu":
            m = nn.ReLU()
        elif kind in ("max_pool", "avg_pool"):
            m = SpatialPool(kind[:3], layer["window"], layer.get("stride"),
                            layer.get("padding", "valid"))
        elif kind == "group_pool":
            m = GroupPool(layer["mode"])
            space = "z2"
        elif kind == "global_avg_pool":
            m = GlobalAvgPool()
        else:
            m = Dense(layer["in_features"], layer["out_features"], layer.get("bias", True))
        layers.append((name, m))
    return GCNN(inp["space"], inp["channels"], inp["height"], inp["width"], layers)


def load(directory) -> GCNN:
    """Build a model from ``model.json`` and load ``model.safetensors`` (eval mode)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    desc = json.loads((directory / "model.json").read_text())
    model = build(desc)
    tensors = load_file(str(directory / "model.safetensors"))
    tensors = {k: v for k, v in tensors.items() if not k.endswith("num_batches_tracked")}
    for k, v in tensors.items():
        if v.dtype != torch.float32:
            raise ValueError(f"{k}: dtype {v.dtype}, expected float32")
    expected = expected_tensors(desc)
    if set(tensors) != set(expected):
        raise ValueError(f"tensors {sorted(tensors)} != expected {sorted(expected)}")
    model.load_state_dict(tensors, strict=False)
    missing = [k for k in model.state_dict() if k not in tensors
               and not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"missing tensors {missing}")
    return model.eval()


def count_params(model: nn.Module) -> int:
    """Learnable parameters (weights, biases, BN gamma/beta; not running statistics)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------------------------

# GrouPy's index tables, committed with the Rust tests (tests/data/groupy-indices/README.md).
REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "data" / "groupy-indices"

D4_T_TABLE = np.array([
    [0, 1, 2, 3, 4, 5, 6, 7],
    [3, 0, 1, 2, 5, 6, 7, 4],
    [2, 3, 0, 1, 6, 7, 4, 5],
    [1, 2, 3, 0, 7, 4, 5, 6],
    [4, 5, 6, 7, 0, 1, 2, 3],
    [5, 6, 7, 4, 3, 0, 1, 2],
    [6, 7, 4, 5, 2, 3, 0, 1],
    [7, 4, 5, 6, 1, 2, 3, 0],
])


def _check(cond: bool, what: str, failures: list):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def _random_model(group: str, c: int, size: int, with_head: bool, seed: int) -> GCNN:
    torch.manual_seed(seed)
    layers = [
        ("conv1", GConv("z2", group, 1, c, 3, 1, "same")),
        ("bn1", GBatchNorm(c)),
        ("relu1", nn.ReLU()),
        ("conv2", GConv(group, group, c, c, 3, 1, "same")),
        ("relu2", nn.ReLU()),
        ("pool", SpatialPool("max", 2)),
        ("conv3", GConv(group, group, c, c, 3, 1, "same")),
        ("relu3", nn.ReLU()),
    ]
    if with_head:
        layers += [("gpool", GroupPool("max")), ("gap", GlobalAvgPool()), ("fc", Dense(c, 10))]
    model = GCNN("z2", 1, size, size, layers)
    with torch.no_grad():
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 2.0)
        model.bn1.weight.uniform_(0.5, 1.5)
        model.bn1.bias.uniform_(-0.2, 0.2)
    return model.eval()


def self_test() -> int:
    failures: list[str] = []
    torch.set_printoptions(precision=10)

    # 1. Index tables against GrouPy's own output.
    pairs = [("c4_z2", "z2", "c4", (1, 2, 3, 4, 5)), ("c4_p4", "c4", "c4", (1, 2, 3, 4, 5)),
             ("d4_z2", "z2", "d4", (1, 3, 5)), ("d4_p4m", "d4", "d4", (1, 3, 5))]
    for tag, fs, tg, ks in pairs:
        for k in ks:
            ours = make_indices(fs, tg, k)
            ref = np.load(REFERENCE / f"indices_{tag}_k{k}.npy")
            flat = np.load(REFERENCE / f"indices_flat_{tag}_k{k}.npy")
            _check(ref.dtype == np.int32 and ours.shape == ref.shape
                   and np.array_equal(ours, ref), f"indices_{tag}_k{k} == GrouPy", failures)
            _check(np.array_equal(flat_indices(ours), flat), f"indices_flat_{tag}_k{k}", failures)
    for tag, fs in (("d4_z2", "z2"), ("d4_p4m", "d4")):
        for k in (2, 4):
            ours = make_indices(fs, "d4", k)
            ref = np.load(REFERENCE / "d4-even-extension" / f"ext_indices_{tag}_k{k}.npy")
            flat = np.load(REFERENCE / "d4-even-extension" / f"ext_indices_flat_{tag}_k{k}.npy")
            _check(np.array_equal(ours, ref) and np.array_equal(flat_indices(ours), flat),
                   f"ext_indices_{tag}_k{k} (even-K D4 extension)", failures)

    # 2. Group law: the composition formula is the composition of the spatial actions, the
    #    T table of CONVENTIONS.md, rot90 one step.
    a = np.arange(25).reshape(5, 5)
    ok = all(np.array_equal(spatial_np(a, "d4", compose("d4", g1, g2)),
                            spatial_np(spatial_np(a, "d4", g2), "d4", g1))
             for g1 in range(8) for g2 in range(8))
    _check(ok, "D4 composition formula == composition of spatial actions", failures)
    ok = all(compose("d4", g, inverse("d4", g)) == 0 for g in range(8))
    _check(ok, "D4 inverse", failures)
    t_table = np.array([[compose("d4", inverse("d4", t), s) for s in range(8)] for t in range(8)])
    _check(np.array_equal(t_table, D4_T_TABLE), "D4 T[t][s] = t^-1 s table", failures)
    r = spatial_np(a, "c4", 1)
    _check(all(r[u][v] == a[v][4 - u] for u in range(5) for v in range(5)),
           "rot90(A)[u][v] = A[v][K-1-u]", failures)
    names = {4: np.flipud(a), 5: a.T, 6: np.fliplr(a), 7: np.rot90(a, 2).T}
    _check(all(np.array_equal(spatial_np(a, "d4", g), b) for g, b in names.items()),
           "D4 4=flipud 5=transpose 6=fliplr 7=anti-transpose", failures)

    # 3. Bank layout: the gather equals an explicit loop.
    torch.manual_seed(0)
    w = torch.randn(3, 2, 8, 3, 3, dtype=torch.float64)
    ind = make_indices("d4", "d4", 3)
    bank = expand_filters(w, ind).numpy()
    wn = w.numpy()
    loop = np.zeros((3 * 8, 2 * 8, 3, 3))
    for o in range(3):
        for t in range(8):
            for i in range(2):
                for s in range(8):
                    for u in range(3):
                        for v in range(3):
                            tt, uu, vv = ind[t, s, u, v]
                            loop[o * 8 + t, i * 8 + s, u, v] = wn[o, i, tt, uu, vv]
    _check(np.array_equal(bank, loop), "gather bank == explicit loop (d4->d4, K=3)", failures)
    _check(all(np.array_equal(bank[o * 8 + t, :, :, :].reshape(2, 8, 3, 3)[:, s],
                              spatial_np(wn[o, :, D4_T_TABLE[t, s]], "d4", t))
               for o in range(3) for t in range(8) for s in range(8)),
           "tw[:, t, :, s] = spatial_t(w[:, :, T])", failures)

    # 4. Layer equivariance, float64, every element, odd and even K.
    def layer_equivariance(fs, tg, k, size, padding, stride=1):
        torch.manual_seed(k * 100 + size)
        conv = GConv(fs, tg, 2, 3, k, stride, padding).double()
        with torch.no_grad():
            conv.bias.normal_()
        shape = (2, 2, size, size) if fs == "z2" else (2, 2, ORDER[fs], size, size)
        x = torch.randn(shape, dtype=torch.float64)
        y = conv(x)
        err = 0.0
        for g in range(ORDER[tg]):
            gx = transform(x, g, tg, fs)
            err = max(err, (conv(gx) - transform(y, g, tg, tg)).abs().max().item())
        return err

    for fs, tg in (("z2", "c4"), ("c4", "c4"), ("z2", "d4"), ("d4", "d4")):
        for k in (1, 2, 3, 4, 5):
            e1 = layer_equivariance(fs, tg, k, 9, "valid")
            e2 = layer_equivariance(fs, tg, k, 8, (k // 2,) * 4)  # symmetric K//2 each side
            e3 = layer_equivariance(fs, tg, k, 9 if k % 2 else 10, "valid", 2)
            _check(max(e1, e2, e3) < 1e-12,
                   f"conv {fs}->{tg} K={k}: valid / symmetric pad / stride 2 equivariant "
                   f"(max err {max(e1, e2, e3):.1e})", failures)
    # The rule's negative case: even K with TensorFlow-style asymmetric SAME breaks it.
    e = layer_equivariance("z2", "c4", 2, 8, (0, 1, 0, 1))
    _check(e > 1e-3 and not axis_is_centred(8, 2, 1, 0, 1),
           f"even K with asymmetric SAME padding is not equivariant (err {e:.2f})", failures)

    # 5. Whole models: features equivariant, logits invariant (float64 exact, float32 1e-5).
    for group in ("c4", "d4"):
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
            feat = _random_model(group, 3, 12, False, 1).to(dtype)
            full = _random_model(group, 3, 12, True, 1).to(dtype)
            x = torch.rand(4, 1, 12, 12, dtype=dtype)
            yf, yl = feat(x), full(x)
            ef = max((feat(transform(x, g, group, "z2")) - transform(yf, g, group, group))
                     .abs().max().item() for g in range(ORDER[group]))
            el = max((full(transform(x, g, group, "z2")) - yl).abs().max().item()
                     for g in range(ORDER[group]))
            _check(ef < tol and el < tol,
                   f"{group} model {str(dtype)[6:]}: features equivariant (err {ef:.1e}), "
                   f"logits invariant (err {el:.1e}) < {tol:g}", failures)

    # 6. describe / export / load round trip.
    with tempfile.TemporaryDirectory() as tmp:
        for group in ("c4", "d4"):
            model = _random_model(group, 3, 12, True, 2)
            desc = export(model, tmp)
            back = load(tmp)
            x = torch.rand(2, 1, 12, 12)
            same = torch.equal(model(x), back(x))
            text = json.loads(Path(tmp, "model.json").read_text())
            _check(same and text == desc and describe(back) == desc,
                   f"{group} export -> load round trip (json and outputs identical)", failures)
        bad = GCNN("z2", 1, 8, 8, [("c", GConv("z2", "c4", 1, 2, 2, 1, (0, 1, 0, 1)))])
        try:
            describe(bad)
            raised = False
        except ValueError:
            raised = True
        _check(raised and describe(bad, True)["accept_non_equivariant"] is True,
               "describe refuses a non-equivariant layer unless accept_non_equivariant", failures)

    print(f"\n{'FAILED: ' + str(len(failures)) if failures else 'all'} checks"
          f"{'' if failures else ' passed'}")
    return 1 if failures else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--self-test", action="store_true", help="run the self-test")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test()
    ap.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
