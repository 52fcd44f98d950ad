"""Build .tflite flatbuffers by hand and run them with LiteRT's REFERENCE kernels.

Every tensor, scale and zero point of the graph is exactly what the caller sets (no converter).
The schema classes are the object API generated from LiteRT's own schema, shipped in the
``ai_edge_litert`` wheel (``ai_edge_litert.schema_py_generated``), so the file matches the
interpreter that runs it.

    g = Graph()
    x = g.tensor("x", (1, 4, 4, 2), INT8, scale=0.05, zero_point=-3)
    ...
    g.op(CONV_2D, [x, w, b], [y], options=...)
    blob = g.finish(inputs=[x], outputs=[y])
    [out] = run(blob, [x_data])                # BUILTIN_REF op resolver

Also the GrouPy index tables (re-implemented from CONVENTIONS.md: tools/gconv_torch.py imports
torch at module level, this venv has no torch) and the filter-bank expansion.
"""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import interpreter as litert
from ai_edge_litert import schema_py_generated as S

INT8 = S.TensorType.INT8
INT32 = S.TensorType.INT32
FLOAT32 = S.TensorType.FLOAT32
_NP = {INT8: np.int8, INT32: np.int32, FLOAT32: np.float32}

OP = S.BuiltinOperator
# Operator versions: any version inside the BUILTIN_REF resolver's registered range works; these
# are the versions the TF converter writes for int8 graphs.
_VERSION = {
    OP.CONV_2D: 3,
    OP.FULLY_CONNECTED: 4,
    OP.MAX_POOL_2D: 2,
    OP.AVERAGE_POOL_2D: 2,
    OP.PAD: 2,
    OP.PADV2: 2,
    OP.RESHAPE: 1,
    OP.TRANSPOSE: 2,
    OP.QUANTIZE: 2,
    OP.RELU: 2,
}

NONE = S.ActivationFunctionType.NONE
RELU = S.ActivationFunctionType.RELU
VALID = S.Padding.VALID
SAME = S.Padding.SAME


def f32(x) -> np.float32:
    return np.float32(x)


class Graph:
    """One subgraph; tensors are ints (indices)."""

    def __init__(self):
        self.buffers = [S.BufferT()]  # buffer 0: the empty buffer of every non-constant tensor
        self.tensors: list = []
        self.ops: list = []
        self.opcodes: dict[int, int] = {}
        self.opcode_list: list = []

    def tensor(self, name, shape, ttype, data=None, scale=None, zero_point=None,
               quantized_dimension=0) -> int:
        t = S.TensorT()
        t.name = name
        t.shape = [int(s) for s in shape]
        t.type = ttype
        if data is not None:
            arr = np.ascontiguousarray(np.asarray(data, dtype=_NP[ttype]).reshape(shape))
            b = S.BufferT()
            b.data = np.frombuffer(arr.astype(arr.dtype.newbyteorder("<")).tobytes(),
                                   dtype=np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        else:
            t.buffer = 0
        if scale is not None:
            q = S.QuantizationParametersT()
            sc = np.atleast_1d(np.asarray(scale, dtype=np.float32))
            zp = np.atleast_1d(np.asarray(zero_point if zero_point is not None else 0,
                                          dtype=np.int64))
            if zp.size == 1 and sc.size > 1:
                zp = np.zeros(sc.size, dtype=np.int64) + zp[0]
            # float(np.float32) is exact; the builder writes float32 again: no rounding.
            q.scale = [float(s) for s in sc]
            q.zeroPoint = [int(z) for z in zp]
            q.quantizedDimension = int(quantized_dimension)
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def like(self, name, shape, src: int) -> int:
        """A non-constant tensor with the type and quantization of tensor ``src``."""
        s = self.tensors[src]
        q = s.quantization
        return self.tensor(name, shape, s.type,
                           scale=None if q is None else q.scale,
                           zero_point=None if q is None else q.zeroPoint)

    def shape(self, t: int) -> tuple:
        return tuple(self.tensors[t].shape)

    def qparams(self, t: int) -> tuple[np.float32, int]:
        q = self.tensors[t].quantization
        return np.float32(q.scale[0]), int(q.zeroPoint[0])

    def bias_scales(self, x: int, w: int) -> np.ndarray:
        """float32(double(input_scale) * double(weight_scale[c])) per output channel."""
        in_s = np.float64(self.tensors[x].quantization.scale[0])
        ws = np.asarray(self.tensors[w].quantization.scale, dtype=np.float64)
        return (in_s * ws).astype(np.float32)

    def op(self, code, inputs, outputs, options_type=0, options=None):
        if code not in self.opcodes:
            oc = S.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = _VERSION[code]
            self.opcodes[code] = len(self.opcode_list)
            self.opcode_list.append(oc)
        o = S.OperatorT()
        o.opcodeIndex = self.opcodes[code]
        o.inputs = [int(i) for i in inputs]
        o.outputs = [int(i) for i in outputs]
        o.builtinOptionsType = options_type
        o.builtinOptions = options
        self.ops.append(o)

    # ---- op helpers ------------------------------------------------------------------------

    def conv2d(self, x, w, b, y, stride, relu):
        o = S.Conv2DOptionsT()
        o.padding = VALID
        o.strideH = o.strideW = int(stride)
        o.fusedActivationFunction = RELU if relu else NONE
        if b is None:
            # CONV_2D requires a bias input (conv.cc: TF_LITE_ENSURE(context, has_bias)); no
            # bias = a zero int32 bias, as the TF converter writes it.
            cout = self.shape(w)[0]
            b = self.tensor(f"zero_bias{len(self.tensors)}", (cout,), INT32,
                            data=np.zeros(cout, np.int32), scale=self.bias_scales(x, w),
                            zero_point=0)
        self.op(OP.CONV_2D, [x, w, b], [y],
                S.BuiltinOptions.Conv2DOptions, o)

    def pool(self, code, x, y, window, stride, padding=VALID, relu=False):
        o = S.Pool2DOptionsT()
        o.padding = padding
        o.strideH, o.strideW = (stride, stride) if np.isscalar(stride) else stride
        o.filterHeight, o.filterWidth = (window, window) if np.isscalar(window) else window
        o.fusedActivationFunction = RELU if relu else NONE
        self.op(code, [x], [y], S.BuiltinOptions.Pool2DOptions, o)

    def pad(self, x, y, pads_nhwc, value_tensor=None):
        """``pads_nhwc``: ((n0, n1), (t, b), (l, r), (c0, c1)). PAD fills with the output zero
        point; PADV2 with ``value_tensor`` (same scale / zero point as the output)."""
        p = self.tensor(f"pads{len(self.tensors)}", (4, 2), INT32,
                        data=np.asarray(pads_nhwc, dtype=np.int32))
        if value_tensor is None:
            self.op(OP.PAD, [x, p], [y], S.BuiltinOptions.PadOptions, S.PadOptionsT())
        else:
            self.op(OP.PADV2, [x, p, value_tensor], [y], S.BuiltinOptions.PadV2Options,
                    S.PadV2OptionsT())

    def reshape(self, x, y):
        shp = self.tensor(f"shape{len(self.tensors)}", (len(self.shape(y)),), INT32,
                          data=np.asarray(self.shape(y), dtype=np.int32))
        o = S.ReshapeOptionsT()
        o.newShape = list(self.shape(y))
        self.op(OP.RESHAPE, [x, shp], [y], S.BuiltinOptions.ReshapeOptions, o)

    def transpose(self, x, y, perm):
        p = self.tensor(f"perm{len(self.tensors)}", (len(perm),), INT32,
                        data=np.asarray(perm, dtype=np.int32))
        self.op(OP.TRANSPOSE, [x, p], [y], S.BuiltinOptions.TransposeOptions,
                S.TransposeOptionsT())

    def fully_connected(self, x, w, b, y, relu):
        o = S.FullyConnectedOptionsT()
        o.fusedActivationFunction = RELU if relu else NONE
        o.weightsFormat = S.FullyConnectedOptionsWeightsFormat.DEFAULT
        o.keepNumDims = False
        self.op(OP.FULLY_CONNECTED, [x, w, -1 if b is None else b], [y],
                S.BuiltinOptions.FullyConnectedOptions, o)

    def quantize(self, x, y):
        self.op(OP.QUANTIZE, [x], [y], S.BuiltinOptions.QuantizeOptions, S.QuantizeOptionsT())

    def relu(self, x, y):
        self.op(OP.RELU, [x], [y])

    def finish(self, inputs, outputs) -> bytes:
        sg = S.SubGraphT()
        sg.tensors = self.tensors
        sg.inputs = list(inputs)
        sg.outputs = list(outputs)
        sg.operators = self.ops
        sg.name = "main"
        m = S.ModelT()
        m.version = 3
        m.operatorCodes = self.opcode_list
        m.subgraphs = [sg]
        m.description = "gconv int8 golden (hand-built)"
        m.buffers = self.buffers
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def run(blob: bytes, inputs, reference: bool = True, resolver=None):
    """Run the model once; returns the list of output arrays (copies).

    ``reference=True``: BUILTIN_REF (reference kernels, no delegate): what every golden uses.
    ``resolver`` overrides (an ``OpResolverType``; e.g. AUTO = optimized kernels + XNNPACK)."""
    kind = resolver if resolver is not None else (
        litert.OpResolverType.BUILTIN_REF if reference
        else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it = litert.Interpreter(model_content=blob, experimental_op_resolver_type=kind,
                            num_threads=1)
    it.allocate_tensors()
    for d, x in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], np.ascontiguousarray(x))
    it.invoke()
    return [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]


# --------------------------------------------------------------------------------------------
# Groups and index tables (CONVENTIONS.md)
# --------------------------------------------------------------------------------------------

ORDER = {"z2": 1, "c4": 4, "d4": 8}


def _decompose(space, g):
    if space == "z2":
        return 0, 0
    if space == "c4":
        return 0, g
    return g // 4, g % 4


def _index(space, m, r):
    return 4 * m + r if space == "d4" else r


def compose(space, g1, g2):
    if space == "z2":
        return 0
    m1, r1 = _decompose(space, g1)
    m2, r2 = _decompose(space, g2)
    return _index(space, m1 ^ m2, ((-r1 if m2 else r1) + r2) % 4)


def inverse(space, g):
    if space == "z2":
        return 0
    m, r = _decompose(space, g)
    return g if m else _index(space, 0, (-r) % 4)


def spatial(a, space, g):
    m, r = _decompose(space, g)
    out = np.rot90(a, r, axes=(-2, -1))
    if m:
        out = np.flip(out, axis=-2)
    return np.ascontiguousarray(out)


def make_indices(from_space, to_group, k):
    """int32 (nto, nti, K, K, 3), last axis (T, U, V), as GrouPy's make_*_indices(K)."""
    if to_group not in ("c4", "d4") or from_space not in ("z2", to_group):
        raise ValueError(f"no G-conv from {from_space} to {to_group}")
    nto, nti = ORDER[to_group], ORDER[from_space]
    uu, vv = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    out = np.zeros((nto, nti, k, k, 3), dtype=np.int32)
    for t in range(nto):
        ut, vt = spatial(uu, to_group, t), spatial(vv, to_group, t)
        tinv = inverse(to_group, t)
        for s in range(nti):
            out[t, s, :, :, 0] = compose(to_group, tinv, s) if nti > 1 else 0
            out[t, s, :, :, 1] = ut
            out[t, s, :, :, 2] = vt
    return out


def expand_bank(w: np.ndarray, from_space: str, to_group: str) -> np.ndarray:
    """Raw (C_out, C_in, nti, K, K) -> OIHW bank (C_out*nto, C_in*nti, K, K)."""
    c_out, c_in, nti, k, _ = w.shape
    ind = make_indices(from_space, to_group, k)
    nto = ind.shape[0]
    tw = w[:, :, ind[..., 0], ind[..., 1], ind[..., 2]]  # (C_out, C_in, nto, nti, K, K)
    tw = tw.transpose(0, 2, 1, 3, 4, 5)  # tw[o][t][i][s][u][v]
    return np.ascontiguousarray(tw.reshape(c_out * nto, c_in * nti, k, k))


def check_indices(ref_dir: Path) -> int:
    """Compare make_indices with GrouPy's tables in tests/data/groupy-indices; returns
    the number of tables checked (raises on a mismatch)."""
    n = 0
    names = {("z2", "c4"): "c4_z2", ("c4", "c4"): "c4_p4", ("z2", "d4"): "d4_z2",
             ("d4", "d4"): "d4_p4m"}
    for (fr, to), nm in names.items():
        for k in range(1, 6):
            for p in (ref_dir / f"indices_{nm}_k{k}.npy",
                      ref_dir / "d4-even-extension" / f"ext_indices_{nm}_k{k}.npy"):
                if p.exists():
                    ref = np.load(p)
                    mine = make_indices(fr, to, k)
                    if not np.array_equal(ref, mine):
                        raise AssertionError(f"index table mismatch: {p}")
                    n += 1
    return n


# --------------------------------------------------------------------------------------------
# Layout helpers: our (N, C, [G,] H, W) <-> TFLite NHWC with channel c*G + t
# --------------------------------------------------------------------------------------------


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) or (N, C, G, H, W) -> (N, H, W, C*G)."""
    if x.ndim == 5:
        n, c, g, h, w = x.shape
        x = x.reshape(n, c * g, h, w)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def from_nhwc(y: np.ndarray, groups: int | None) -> np.ndarray:
    """(N, H, W, C*G) -> (N, C, G, H, W) (groups given) or (N, C, H, W) (groups None)."""
    y = y.transpose(0, 3, 1, 2)
    if groups is not None:
        n, cg, h, w = y.shape
        y = y.reshape(n, cg // groups, groups, h, w)
    return np.ascontiguousarray(y)
