#!/usr/bin/env python3
"""Export escnn R2Conv filter banks (plain OIHW Conv2d weights) as golden files for
gconv-std's importer (`gconv_std::import`, test `gconv-std/tests/escnn_import.rs`).

For C4 (`gspaces.rot2dOnR2(N=4)`) and D4 (`gspaces.flipRot2dOnR2(N=4)`), lifting
(trivial fields in, regular fields out) and group (regular in, regular out) layers with
kernel 3 and 5, this builds an `escnn.nn.R2Conv` with random weights and a random bias,
puts it in eval mode and writes, under `golden/<case>/`:

    weight.npy  R2Conv(...).export().weight, (C_out*|G|, C_in*nti, K, K) float32 (OIHW)
    bias.npy    R2Conv(...).export().bias,   (C_out*|G|,)                 float32
    x.npy       random input in escnn's layout (N, C_in*nti, H, W)        float32
    y.npy       escnn's output conv(GeometricTensor(x)).tensor, (N, C_out*|G|, H', W')

and `golden/cases.json`: one record per case (pair, kernel, padding, channel counts,
shapes) plus the element correspondence that this script *verifies* (it stops with an
error when a check fails):

1. escnn's regular representation permutes its basis like left multiplication on
   `G.elements`: `rho(g) e_j = e_{index(g * h_j)}`, so channel j of a regular field is
   the value at element `G.elements[j]`.
2. The spatial action of each escnn element on an (H, W) array (GeometricTensor.transform
   of a trivial field) equals the GrouPy action of exactly one GrouPy element:
   C4 `np.rot90(A, r)`, D4 `4m + r` = `flipud(rot90(A, r))`. This gives the map
   `escnn_to_groupy[j]`.
3. That map is a group isomorphism (composition tables agree), and the transformation
   law of regular fields agrees: escnn's `GeometricTensor.transform(g)` of a regular
   field equals GrouPy's law `(g.y)[h] = spatial_g(y[g^-1 h])` after reordering the
   channels by the map.
4. Each exported bank, with its output and input planes reordered by the map, is
   G-structured in GrouPy's convention: it equals the GrouPy expansion
   `tw[o][t][i][s] = spatial_t(w[o][i][t^-1 s])` of its own t = 0 rows, within float
   rounding. The same bank without the reordering is recorded too (for D4 it is *not*
   G-structured in GrouPy order: the reordering is needed), and so is the bank read with
   the opposite sense of rotation (escnn element r as GrouPy rotation -r, what a y-up
   coordinate system would give): it is not G-structured either.
5. escnn's exported Conv2d reproduces escnn's own output, and the layer is equivariant
   in escnn's own sense (conv(g.x) == g.conv(x)).

Run from anywhere: `tools/escnn/.venv/bin/python tools/escnn/export_banks.py`
(`tools/escnn/setup-venv.sh` makes the venv).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from importlib import metadata

import numpy as np

warnings.filterwarnings("ignore", message=".*py3nj.*")

import torch  # noqa: E402
from escnn import gspaces, nn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden")

SEED = 20240601
BATCH = 2
SIZE = 9
C_IN = 2
C_OUT = 3


# --- GrouPy conventions (CONVENTIONS.md), written out independently in numpy -----------


def groupy_spatial(group: str, g: int, a: np.ndarray) -> np.ndarray:
    """GrouPy element g acting on the last two axes: C4 r -> rot90(A, r);
    D4 4m + r -> flipud^m(rot90(A, r))."""
    m, r = divmod(g, 4)
    out = np.rot90(a, r, axes=(-2, -1))
    if group == "D4" and m == 1:
        out = np.flip(out, axis=-2)
    return out


def groupy_mul(group: str, a: int, b: int) -> int:
    """Composition a * b. C4: (r1 + r2) mod 4. D4: (m1,r1)(m2,r2) =
    (m1 xor m2, ((-1)^m2 r1 + r2) mod 4)."""
    if group == "C4":
        return (a + b) % 4
    m1, r1 = divmod(a, 4)
    m2, r2 = divmod(b, 4)
    sign = -1 if m2 else 1
    return 4 * (m1 ^ m2) + (sign * r1 + r2) % 4


def groupy_inv(group: str, a: int) -> int:
    if group == "C4":
        return (-a) % 4
    m, r = divmod(a, 4)
    return a if m else (-r) % 4


def groupy_expand(group: str, nti: int, w: np.ndarray) -> np.ndarray:
    """Raw weight (C_out, C_in, nti, K, K) -> bank (C_out*|G|, C_in*nti, K, K) by
    tw[o][t][i][s] = spatial_t(w[o][i][t^-1 s])."""
    order = 4 if group == "C4" else 8
    c_out, c_in, _, k, _ = w.shape
    tw = np.zeros((c_out, order, c_in, nti, k, k), dtype=w.dtype)
    for t in range(order):
        for s in range(nti):
            src = 0 if nti == 1 else groupy_mul(group, groupy_inv(group, t), s)
            tw[:, t, :, s] = groupy_spatial(group, t, w[:, :, src])
    return tw.reshape(c_out * order, c_in * nti, k, k)


def groupy_transform_group_map(group: str, g: int, y: np.ndarray) -> np.ndarray:
    """(g.y)[..., h, :, :] = spatial_g(y[..., g^-1 h, :, :]) on (N, C, |G|, H, W)."""
    order = y.shape[-3]
    out = np.empty_like(y)
    gi = groupy_inv(group, g)
    for h in range(order):
        out[..., h, :, :] = groupy_spatial(group, g, y[..., groupy_mul(group, gi, h), :, :])
    return out


# --- escnn side --------------------------------------------------------------------------


def element_map(group: str, gspace) -> list[int]:
    """Checks 1-3 of the module docstring; returns escnn_to_groupy."""
    grp = gspace.fibergroup
    elements = list(grp.elements)
    order = len(elements)
    reg = grp.regular_representation
    # 1. Regular representation basis order = G.elements, rho(g) e_j = e_{g h_j}.
    for g in elements:
        rho = reg(g)
        for j, h in enumerate(elements):
            expected = np.zeros(order)
            expected[elements.index(g @ h)] = 1.0
            if not np.allclose(rho[:, j], expected, atol=1e-9):
                sys.exit(f"{group}: rho({g}) e_{j} is not e_(g h_{j})")
    # 2. Spatial action on a trivial field vs the GrouPy elements.
    rng = np.random.RandomState(0)
    a = rng.randn(1, 1, 7, 7).astype(np.float32)
    triv = nn.FieldType(gspace, [gspace.trivial_repr])
    mapping = []
    for g in elements:
        moved = nn.GeometricTensor(torch.tensor(a), triv).transform(g).tensor.numpy()
        hits = [
            gg
            for gg in range(order)
            if np.array_equal(groupy_spatial(group, gg, a), moved)
        ]
        if len(hits) != 1:
            sys.exit(f"{group}: escnn element {g} matches GrouPy elements {hits}")
        mapping.append(hits[0])
    # 3a. A group isomorphism.
    for i, gi in enumerate(elements):
        for j, gj in enumerate(elements):
            k = elements.index(gi @ gj)
            if mapping[k] != groupy_mul(group, mapping[i], mapping[j]):
                sys.exit(f"{group}: the element map is not a homomorphism at ({i}, {j})")
    # 3b. Transformation law of regular fields.
    reg_type = nn.FieldType(gspace, [reg] * 2)
    f = rng.randn(1, 2 * order, 7, 7).astype(np.float32)
    f_groupy = to_groupy_layout(f, order, mapping)
    for gi, g in enumerate(elements):
        moved = nn.GeometricTensor(torch.tensor(f), reg_type).transform(g).tensor.numpy()
        expect = groupy_transform_group_map(group, mapping[gi], f_groupy)
        if not np.array_equal(to_groupy_layout(moved, order, mapping), expect):
            sys.exit(f"{group}: regular-field transformation law differs for {g}")
    return mapping


def to_groupy_layout(x: np.ndarray, order: int, mapping: list[int]) -> np.ndarray:
    """escnn (N, C*|G|, H, W), channel c*|G| + j = element j -> GrouPy (N, C, |G|, H, W)
    with plane mapping[j]."""
    n, ch, h, w = x.shape
    x = x.reshape(n, ch // order, order, h, w)
    out = np.empty_like(x)
    for j, gj in enumerate(mapping):
        out[:, :, gj] = x[:, :, j]
    return out


def bank_to_groupy(bank: np.ndarray, order: int, nti: int, mapping: list[int]) -> np.ndarray:
    """Reorders an escnn OIHW bank's output planes (and input planes when nti = |G|)."""
    co, ci, k, _ = bank.shape
    b = bank.reshape(co // order, order, ci // nti, nti, k, k)
    out = np.empty_like(b)
    for t in range(order):
        for s in range(nti):
            out[:, mapping[t], :, mapping[s] if nti > 1 else 0] = b[:, t, :, s]
    return out.reshape(co, ci, k, k)


def structure_error(group: str, nti: int, bank: np.ndarray) -> float:
    """Max |bank - expand(t = 0 rows)| / max |bank|, in GrouPy order."""
    order = 4 if group == "C4" else 8
    co, ci, k, _ = bank.shape
    raw = bank.reshape(co // order, order, ci // nti, nti, k, k)[:, 0]
    again = groupy_expand(group, nti, raw.astype(np.float64))
    return float(np.abs(again - bank).max() / np.abs(bank).max())


def export_case(name: str, group: str, lifting: bool, kernel: int, padding: int, mapping):
    gspace = gspaces.rot2dOnR2(N=4) if group == "C4" else gspaces.flipRot2dOnR2(N=4)
    order = gspace.fibergroup.order()
    nti = 1 if lifting else order
    in_repr = gspace.trivial_repr if lifting else gspace.regular_repr
    in_type = nn.FieldType(gspace, [in_repr] * C_IN)
    out_type = nn.FieldType(gspace, [gspace.regular_repr] * C_OUT)
    conv = nn.R2Conv(in_type, out_type, kernel_size=kernel, padding=padding, bias=True)
    with torch.no_grad():
        conv.bias.normal_(0.0, 0.5)
    conv.eval()
    plain = conv.export()
    weight = plain.weight.detach().numpy().astype(np.float32)
    bias = plain.bias.detach().numpy().astype(np.float32)
    x = torch.randn(BATCH, C_IN * nti, SIZE, SIZE)
    with torch.no_grad():
        y = conv(nn.GeometricTensor(x, in_type)).tensor
        y_plain = plain(x)
    x, y = x.numpy(), y.numpy()
    # 5. The export reproduces escnn, and escnn is equivariant in its own sense.
    if not np.allclose(y_plain.numpy(), y, rtol=0, atol=1e-5 * np.abs(y).max()):
        sys.exit(f"{name}: exported Conv2d differs from escnn's output")
    for g in gspace.fibergroup.elements:
        with torch.no_grad():
            lhs = conv(nn.GeometricTensor(torch.tensor(x), in_type).transform(g)).tensor
            rhs = nn.GeometricTensor(torch.tensor(y), out_type).transform(g).tensor
        if not np.allclose(lhs.numpy(), rhs.numpy(), rtol=0, atol=1e-4 * np.abs(y).max()):
            sys.exit(f"{name}: escnn layer is not equivariant for {g}")
    # Bias: constant over the |G| planes of each field.
    b = bias.reshape(C_OUT, order)
    bias_spread = float(np.abs(b - b[:, :1]).max())
    # 4. G-structure in GrouPy order, with and without the reordering.
    err_mapped = structure_error(group, nti, bank_to_groupy(weight, order, nti, mapping))
    err_unmapped = structure_error(group, nti, weight)
    # The other sense of rotation (a y-up reading: every element conjugated by flipud,
    # which turns rot90(A, r) into rot90(A, -r)) does not fit the bank.
    flip = 4 if group == "D4" else None
    reversed_map = [
        groupy_mul(group, flip, groupy_mul(group, g, flip)) if flip else (-g) % 4
        for g in mapping
    ]
    err_reversed = structure_error(group, nti, bank_to_groupy(weight, order, nti, reversed_map))
    if err_reversed < 1e-2:
        sys.exit(f"{name}: the bank also fits the reversed sense of rotation")
    if err_mapped > 1e-5:
        sys.exit(f"{name}: reordered bank is not G-structured (rel. error {err_mapped:.3g})")
    # Evidence in words: each output plane is a transformed copy of plane 0 (lifting).
    plane_checks = None
    if lifting:
        w0 = weight.reshape(C_OUT, order, C_IN, kernel, kernel)
        plane_checks = [
            float(np.abs(w0[:, j] - groupy_spatial(group, mapping[j], w0[:, 0])).max())
            for j in range(order)
        ]
    out_dir = os.path.join(GOLDEN, name)
    os.makedirs(out_dir, exist_ok=True)
    for fname, arr in [("weight", weight), ("bias", bias), ("x", x), ("y", y)]:
        np.save(os.path.join(out_dir, f"{fname}.npy"), np.ascontiguousarray(arr, dtype=np.float32))
    pair = ("Z2" if lifting else group) + group
    print(
        f"{name}: pair {pair} K={kernel} pad={padding} bank {weight.shape} "
        f"structure error (GrouPy order) {err_mapped:.2e}, without reordering {err_unmapped:.2e}, "
        f"reversed rotation sense {err_reversed:.2e}"
    )
    return {
        "name": name,
        "pair": pair,
        "group": group,
        "lifting": lifting,
        "kernel": kernel,
        "padding": padding,
        "stride": 1,
        "in_fields": C_IN,
        "out_fields": C_OUT,
        "nti": nti,
        "nto": order,
        "weight_shape": list(weight.shape),
        "x_shape": list(x.shape),
        "y_shape": list(y.shape),
        "escnn_basis_size": int(conv.basisexpansion.dimension()),
        "bias_spread_within_field": bias_spread,
        "structure_error_groupy_order": err_mapped,
        "structure_error_without_reordering": err_unmapped,
        "structure_error_reversed_rotation_sense": err_reversed,
        "lifting_plane_j_minus_spatial_of_plane_0": plane_checks,
    }


def main() -> None:
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    maps = {}
    for group, gs in [("C4", gspaces.rot2dOnR2(N=4)), ("D4", gspaces.flipRot2dOnR2(N=4))]:
        maps[group] = {
            "escnn_elements": [str(g) for g in gs.fibergroup.elements],
            "escnn_to_groupy": element_map(group, gs),
        }
        print(group, maps[group])
    cases = []
    for group in ["C4", "D4"]:
        for lifting in [True, False]:
            for kernel, padding in [(3, 1), (5, 0)]:
                kind = "lift" if lifting else "group"
                name = f"{group.lower()}_{kind}_k{kernel}"
                cases.append(
                    export_case(name, group, lifting, kernel, padding, maps[group]["escnn_to_groupy"])
                )
    manifest = {
        "generator": "tools/escnn/export_banks.py",
        "versions": {
            "escnn": metadata.version("escnn"),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "seed": SEED,
        "layout": {
            "weight": "escnn export: (C_out*|G|, C_in*nti, K, K), channel field*|G| + j",
            "x": "(N, C_in*nti, H, W) escnn layout",
            "y": "(N, C_out*|G|, H', W') escnn layout",
            "channel j of a regular field": "escnn element escnn_elements[j] = GrouPy element escnn_to_groupy[j]",
        },
        "groups": maps,
        "cases": cases,
    }
    with open(os.path.join(GOLDEN, "cases.json"), "w") as fh:
        json.dump(manifest, fh, indent=2)
        fh.write("\n")


if __name__ == "__main__":
    main()
