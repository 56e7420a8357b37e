"""ONNX operators for the OpenCL backend: attribute parsing, shape inference and kernel launches.

Each op is built once at load (where unsupported attributes fail with the node named) and asked for shapes
and launches once per distinct input shape (the backend caches the result as a plan).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from onnx import helper, numpy_helper

from .errors import UnsupportedModelError

i32, f32 = np.int32, np.float32


@dataclass
class Launch:
    kernel: str
    gsize: tuple[int, ...]
    lsize: tuple[int, ...] | None
    args: list  # buffers (or Meta) and numpy scalars, in kernel order


@dataclass
class Meta:
    """A small int32 array the plan uploads once (shapes/strides for N-d kernels)."""
    values: list[int]


class GraphCtx:
    """What ops see at load: constants (initializers, Constant nodes, derived weights) and the opset."""

    def __init__(self, consts: dict[str, np.ndarray], opset: int):
        self.consts, self.opset = consts, opset

    def const(self, node, idx: int, what: str) -> np.ndarray:
        name = node.input[idx] if idx < len(node.input) else ""
        if name not in self.consts:
            raise UnsupportedModelError(
                f"{node.op_type} node {node.name or node.output[0]!r}: input {idx} ({what}) must be a constant "
                f"initializer for the OpenCL backend")
        return self.consts[name]


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _strides(shape) -> list[int]:
    out, s = [], 1
    for d in reversed(shape):
        out.append(s)
        s *= d
    return out[::-1]


def _unsupported(node, what: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"{node.op_type} node {node.name or node.output[0]!r}: {what} is not supported "
                                 f"by the OpenCL backend")


class Op:
    view = False  # outputs alias input 0 with a new shape (no kernel)
    act = 0  # 1 when a following Relu was fused in

    def __init__(self, node, g: GraphCtx):
        self.node, self.name = node, node.name or node.output[0]
        self.inputs = [n for n in node.input if n]
        self.outputs = [node.output[0]]
        if any(o for o in node.output[1:]):
            raise _unsupported(node, "a second output")
        self.a = _attrs(node)

    def infer(self, shapes: list[tuple]) -> list[tuple]:
        raise NotImplementedError

    def launches(self, ins, outs, in_shapes, out_shapes) -> list[Launch]:
        return []

    def fail(self, what: str) -> UnsupportedModelError:
        return _unsupported(self.node, what)


# ---------------------------------------------------------------- linear algebra

def _mm_launch(A, B, C, Y, M, N, K, a, b, c, batch, alpha, beta, act) -> Launch:
    args = [A, B, C, Y, i32(M), i32(N), i32(K), *map(i32, a), *map(i32, b), *map(i32, c), f32(alpha), f32(beta),
            i32(act)]
    if b[1] == 1 and N % 8 == 0:
        return Launch("matmul_v8", (N // 8, math.ceil(M / 4), batch), None, args)
    if M >= 16:
        return Launch("matmul_tiled", (math.ceil(N / 16) * 16, math.ceil(M / 16) * 16, batch), (16, 16, 1), args)
    return Launch("matmul_rows", (math.ceil(N / 64) * 64, M, batch), (64, 1, 1), args)


class Gemm(Op):
    def __init__(self, node, g):
        super().__init__(node, g)
        self.alpha, self.beta = self.a.get("alpha", 1.0), self.a.get("beta", 1.0)
        self.ta, self.tb = self.a.get("transA", 0), self.a.get("transB", 0)
        b = self.inputs[1]
        if self.tb and b in g.consts:  # store constant weights as [K, N]: contiguous along n for the kernels
            derived = b + "::T"
            g.consts[derived] = np.ascontiguousarray(g.consts[b].T)
            self.inputs[1], self.tb = derived, 0

    def infer(self, s):
        (r, c), (br, bc) = s[0], s[1]
        M, K = (c, r) if self.ta else (r, c)
        K2, N = (bc, br) if self.tb else (br, bc)
        if K != K2:
            raise ValueError(f"Gemm {self.name!r}: inner dimensions differ ({K} vs {K2})")
        return [(M, N)]

    def launches(self, ins, outs, s, o):
        (M, N), K = o[0], (s[0][0] if self.ta else s[0][1])
        a = (1, M, 0) if self.ta else (K, 1, 0)
        b = (1, K, 0) if self.tb else (N, 1, 0)
        if len(ins) > 2:
            cs = (1,) * (2 - len(s[2])) + tuple(s[2])
            nat = _strides(cs)
            c = (nat[0] if cs[0] != 1 else 0, nat[1] if cs[1] != 1 else 0, 1)
            C = ins[2]
        else:
            c, C = (0, 0, 0), ins[0]
        return [_mm_launch(ins[0], ins[1], C, outs[0], M, N, K, a, b, c, 1, self.alpha, self.beta, self.act)]


class MatMul(Op):
    def infer(self, s):
        a, b = list(s[0]), list(s[1])
        self._a1, self._b1 = len(a) == 1, len(b) == 1
        a = [1] + a if self._a1 else a
        b = b + [1] if self._b1 else b
        if a[-1] != b[-2]:
            raise ValueError(f"MatMul {self.name!r}: inner dimensions differ ({a[-1]} vs {b[-2]})")
        ba, bb = a[:-2], b[:-2]
        if ba and bb and ba != bb:
            raise self.fail(f"broadcasting batch dimensions {ba} against {bb}")
        out = (ba or bb) + [a[-2], b[-1]]
        if self._a1:
            out.pop(-2)
        if self._b1:
            out.pop(-1)
        self._dims = (a, b)
        return [tuple(out)]

    def launches(self, ins, outs, s, o):
        self.infer(s)
        a, b = self._dims
        M, K, N = a[-2], a[-1], b[-1]
        batch = max(math.prod(a[:-2]), math.prod(b[:-2]))
        sa = (K, 1, M * K if len(a) > 2 else 0)
        sb = (N, 1, K * N if len(b) > 2 else 0)
        return [_mm_launch(ins[0], ins[1], ins[0], outs[0], M, N, K, sa, sb, (0, 0, 0), batch, 1.0, 0.0, self.act)]


# ---------------------------------------------------------------- elementwise

class Binary(Op):
    CODES: ClassVar[dict[str, int]] = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3, "Pow": 4, "Max": 5, "Min": 6}

    def __init__(self, node, g):
        super().__init__(node, g)
        if len(self.inputs) != 2:
            raise self.fail(f"{len(self.inputs)} inputs (only 2)")
        self.code = self.CODES[node.op_type]

    def infer(self, s):
        return [tuple(np.broadcast_shapes(tuple(s[0]), tuple(s[1])))]

    def launches(self, ins, outs, s, o):
        out = o[0]
        n = math.prod(out)
        if tuple(s[0]) == tuple(s[1]) == tuple(out):
            return [Launch("binary_same", (n,), None, [ins[0], ins[1], outs[0], i32(self.code)])]
        rank = len(out)

        def bstr(shape):
            shape = (1,) * (rank - len(shape)) + tuple(shape)
            return [st if d != 1 else 0 for d, st in zip(shape, _strides(shape))]
        meta = Meta(list(out) + bstr(s[0]) + bstr(s[1]))
        return [Launch("binary_bcast", (n,), None, [ins[0], ins[1], outs[0], i32(self.code), i32(rank), meta])]


class Unary(Op):
    CODES: ClassVar[dict[str, int]] = {
        "Relu": 0, "Sigmoid": 1, "Tanh": 2, "Exp": 3, "Log": 4, "Sqrt": 5, "Neg": 6, "Abs": 7, "LeakyRelu": 8,
        "Clip": 9, "Erf": 11, "Elu": 12, "Softplus": 13, "Reciprocal": 14, "HardSigmoid": 15}

    def __init__(self, node, g):
        super().__init__(node, g)
        t = node.op_type
        self.code, self.p = self.CODES[t], (0.0, 0.0)
        if t == "LeakyRelu":
            self.p = (self.a.get("alpha", 0.01), 0.0)
        elif t == "Elu":
            self.p = (self.a.get("alpha", 1.0), 0.0)
        elif t == "HardSigmoid":
            self.p = (self.a.get("alpha", 0.2), self.a.get("beta", 0.5))
        elif t == "Clip":
            lo, hi = self.a.get("min", -np.inf), self.a.get("max", np.inf)
            if len(node.input) > 1 and node.input[1]:
                lo = float(g.const(node, 1, "min"))
            if len(node.input) > 2 and node.input[2]:
                hi = float(g.const(node, 2, "max"))
            self.p = (lo, hi)
            self.inputs = self.inputs[:1]

    def infer(self, s):
        return [tuple(s[0])]

    def launches(self, ins, outs, s, o):
        return [Launch("unary", (max(math.prod(o[0]), 1),), None,
                       [ins[0], outs[0], i32(self.code), f32(self.p[0]), f32(self.p[1])])]


class Softmax(Op):
    def infer(self, s):
        return [tuple(s[0])]

    def launches(self, ins, outs, s, o):
        shape = s[0]
        legacy = self.g_opset < 13
        axis = self.a.get("axis", 1 if legacy else -1) % len(shape)
        if legacy:  # coerced to 2-D [prod(:axis), prod(axis:)]
            outer, L, inner = math.prod(shape[:axis]), math.prod(shape[axis:]), 1
        else:
            outer, L, inner = math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])
        return [Launch("softmax", (outer * inner,), None,
                       [ins[0], outs[0], i32(L), i32(inner), i32(self.node.op_type == "LogSoftmax")])]

    def __init__(self, node, g):
        super().__init__(node, g)
        self.g_opset = g.opset


class BatchNorm(Op):
    def __init__(self, node, g):
        super().__init__(node, g)
        if self.a.get("training_mode", 0):
            raise self.fail("training_mode=1")
        scale, bias, mean, var = (g.const(node, i, w).astype(np.float64)
                                  for i, w in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")))
        s = scale / np.sqrt(var + self.a.get("epsilon", 1e-5))
        key = node.output[0]
        g.consts[key + "::scale"], g.consts[key + "::shift"] = s.astype(np.float32), (bias - mean * s).astype(
            np.float32)
        self.inputs = [self.inputs[0], key + "::scale", key + "::shift"]

    def infer(self, s):
        return [tuple(s[0])]

    def launches(self, ins, outs, s, o):
        shape = s[0]
        return [Launch("channel_affine", (math.prod(shape),), None,
                       [ins[0], ins[1], ins[2], outs[0], i32(shape[1]), i32(math.prod(shape[2:]))])]


# ---------------------------------------------------------------- layout

class View(Op):
    """Flatten, Reshape, Squeeze, Unsqueeze, Identity, Dropout (inference): same buffer, new shape."""
    view = True

    def __init__(self, node, g):
        super().__init__(node, g)
        t = node.op_type
        self.t, self.shape_arg, self.axes = t, None, self.a.get("axes")
        if t == "Reshape":
            self.shape_arg = [int(v) for v in g.const(node, 1, "shape")]
            self.allowzero = self.a.get("allowzero", 0)
        if t in ("Squeeze", "Unsqueeze") and len(node.input) > 1 and node.input[1]:
            self.axes = [int(v) for v in g.const(node, 1, "axes")]
        self.inputs = self.inputs[:1]

    def infer(self, s):
        x, t = tuple(s[0]), self.t
        if t == "Flatten":
            ax = self.a.get("axis", 1) % (len(x) + 1) if x else 0
            return [(math.prod(x[:ax]), math.prod(x[ax:]))]
        if t == "Reshape":
            out = [x[i] if (d == 0 and not self.allowzero) else d for i, d in enumerate(self.shape_arg)]
            if -1 in out:
                known = math.prod(d for d in out if d != -1)
                out[out.index(-1)] = math.prod(x) // known if known else 0
            if math.prod(out) != math.prod(x):
                raise ValueError(f"Reshape {self.name!r}: cannot reshape {x} to {self.shape_arg}")
            return [tuple(out)]
        if t == "Squeeze":
            axes = {a % len(x) for a in self.axes} if self.axes is not None else {i for i, d in enumerate(x) if d == 1}
            return [tuple(d for i, d in enumerate(x) if i not in axes)]
        if t == "Unsqueeze":
            out = list(x)
            rank = len(x) + len(self.axes)
            for a in sorted(a % rank for a in self.axes):
                out.insert(a, 1)
            return [tuple(out)]
        return [x]


class Transpose(Op):
    def infer(self, s):
        x = s[0]
        self.perm = list(self.a["perm"]) if "perm" in self.a else list(range(len(x)))[::-1]
        return [tuple(x[p] for p in self.perm)]

    def launches(self, ins, outs, s, o):
        self.infer(s)
        st = _strides(s[0])
        rank = len(o[0])
        return [Launch("transpose", (max(math.prod(o[0]), 1),), None,
                       [ins[0], outs[0], i32(rank), Meta(list(o[0]) + [st[p] for p in self.perm])])]


class Concat(Op):
    def infer(self, s):
        ax = self.a["axis"] % len(s[0])
        for x in s[1:]:
            if len(x) != len(s[0]) or any(a != b for i, (a, b) in enumerate(zip(x, s[0])) if i != ax):
                raise ValueError(f"Concat {self.name!r}: shapes {s} differ outside axis {ax}")
        out = list(s[0])
        out[ax] = sum(x[ax] for x in s)
        return [tuple(out)]

    def launches(self, ins, outs, s, o):
        ax = self.a["axis"] % len(s[0])
        dst_stride, off, res = math.prod(o[0][ax:]), 0, []
        for buf, x in zip(ins, s):
            block = math.prod(x[ax:])
            if math.prod(x):
                res.append(Launch("copy_block", (math.prod(x),), None,
                                  [buf, outs[0], i32(block), i32(dst_stride), i32(off)]))
            off += block
        return res


# ---------------------------------------------------------------- convolution and pooling

class _Window(Op):
    def _geometry(self, spatial: list[int], kernel: list[int]):
        r = len(spatial)
        strides = list(self.a.get("strides", [1] * r))
        dil = list(self.a.get("dilations", [1] * r))
        pads = list(self.a.get("pads", [0] * 2 * r))
        auto = self.a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        ceil_mode = self.a.get("ceil_mode", 0)
        out = []
        for i in range(r):
            eff = (kernel[i] - 1) * dil[i] + 1
            if auto in ("SAME_UPPER", "SAME_LOWER"):
                o = math.ceil(spatial[i] / strides[i])
                total = max((o - 1) * strides[i] + eff - spatial[i], 0)
                lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
                pads[i], pads[i + r] = lo, total - lo
            elif auto == "VALID":
                pads[i] = pads[i + r] = 0
            span = spatial[i] + pads[i] + pads[i + r] - eff
            o = (math.ceil(span / strides[i]) if ceil_mode else span // strides[i]) + 1
            if ceil_mode and (o - 1) * strides[i] >= spatial[i] + pads[i]:
                o -= 1
            out.append(o)
        return out, strides, dil, pads

    def _check_rank(self, x):
        if len(x) not in (3, 4):
            raise self.fail(f"{len(x) - 2}-D spatial input {x} (1-D and 2-D only)")


def _as2d(vals, fill: int = 1):  # 1-D spatial geometry as 2-D with a height of 1 (pads of 0)
    return list(vals) if len(vals) == 2 else [fill, *vals]


class Conv(_Window):
    def infer(self, s):
        x, w = s[0], s[1]
        self._check_rank(x)
        group = self.a.get("group", 1)
        if x[1] != w[1] * group:
            raise ValueError(f"Conv {self.name!r}: input has {x[1]} channels, weights expect {w[1] * group}")
        out, *_ = self._geometry(list(x[2:]), list(w[2:]))
        return [(x[0], w[0], *out)]

    def launches(self, ins, outs, s, o):
        x, w = s[0], s[1]
        out, st, dil, pads = self._geometry(list(x[2:]), list(w[2:]))
        r = len(x) - 2
        H, W = _as2d(list(x[2:]))
        KH, KW = _as2d(list(w[2:]))
        OH, OW = _as2d(out)
        (sh, sw), (dh, dw), (ph, pw) = _as2d(st), _as2d(dil), _as2d(pads[:r], 0)
        bias = ins[2] if len(ins) > 2 else ins[1]
        return [Launch("conv2d", (OH * OW, w[0], x[0]), None, [
            ins[0], ins[1], bias, outs[0], *map(i32, (x[1], H, W, w[0], OH, OW, KH, KW, sh, sw, ph, pw, dh, dw,
                                                     self.a.get("group", 1), len(ins) > 2, self.act))])]


class Pool(_Window):
    def __init__(self, node, g):
        super().__init__(node, g)
        if self.a.get("storage_order", 0):
            raise self.fail("storage_order=1")
        self.mode = 0 if node.op_type == "MaxPool" else 1

    def infer(self, s):
        self._check_rank(s[0])
        out, *_ = self._geometry(list(s[0][2:]), list(self.a["kernel_shape"]))
        return [(*s[0][:2], *out)]

    def launches(self, ins, outs, s, o):
        x = s[0]
        r = len(x) - 2
        out, st, dil, pads = self._geometry(list(x[2:]), list(self.a["kernel_shape"]))
        H, W = _as2d(list(x[2:]))
        KH, KW = _as2d(list(self.a["kernel_shape"]))
        OH, OW = _as2d(out)
        (sh, sw), (dh, dw), (ph, pw), (phe, pwe) = _as2d(st), _as2d(dil), _as2d(pads[:r], 0), _as2d(pads[r:], 0)
        return [Launch("pool2d", (OH * OW, x[0] * x[1]), None, [ins[0], outs[0], *map(i32, (
            H, W, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, self.mode, self.a.get("count_include_pad", 0), phe,
            pwe))])]


class GlobalPool(Op):
    def infer(self, s):
        return [(*s[0][:2], *([1] * (len(s[0]) - 2)))]

    def launches(self, ins, outs, s, o):
        x = s[0]
        return [Launch("global_pool", (x[0] * x[1],), None,
                       [ins[0], outs[0], i32(math.prod(x[2:])), i32(self.node.op_type == "GlobalAveragePool")])]


OPS: dict[str, Callable] = {
    "Gemm": Gemm, "MatMul": MatMul, "Conv": Conv, "MaxPool": Pool, "AveragePool": Pool,
    "GlobalAveragePool": GlobalPool, "GlobalMaxPool": GlobalPool, "BatchNormalization": BatchNorm,
    "Softmax": Softmax, "LogSoftmax": Softmax, "Transpose": Transpose, "Concat": Concat,
    **{t: Binary for t in Binary.CODES}, **{t: Unary for t in Unary.CODES},
    **{t: View for t in ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Dropout")},
}


def constant_value(node) -> np.ndarray:
    """The value of a Constant node (tensor or scalar/list attributes)."""
    a = node.attribute[0]
    if a.name == "value":
        return numpy_helper.to_array(a.t)
    return np.asarray(helper.get_attribute_value(a))
