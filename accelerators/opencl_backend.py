"""ONNX graphs on an OpenCL device with our own kernels: PoCL in CI, FPGA boards and GPUs in production.

Kernels are built from source at load or, for boards whose OpenCL cannot compile at run time (the usual case
on FPGAs), loaded from a prebuilt device binary. Unsupported operators and data types fail at load, named.
Shapes are resolved per distinct set of input shapes into a cached plan (buffers + kernels with bound args),
so a steady stream of the same batch sizes pays no setup.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .backend import Backend, MemoryInfo, TensorSpec, specs_from_onnx
from .devices import DeviceInfo
from .errors import DeviceNotFoundError, InvalidInputError, UnsupportedModelError
from .opencl_kernels import KERNEL_NAMES, KERNEL_SOURCE
from .opencl_ops import OPS, GraphCtx, Meta, Op, constant_value

FUSABLE = ("Gemm", "MatMul", "Conv")


class _Alias(Op):
    """A Relu fused into its producer: passes the buffer through."""
    view = True

    def __init__(self, src: str, dst: str):
        self.inputs, self.outputs, self.name = [src], [dst], dst

    def infer(self, s):
        return [tuple(s[0])]


@dataclass
class ParsedGraph:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    ops: list[Op]
    consts: dict[str, np.ndarray]
    device_consts: list[str] = field(default_factory=list)


def parse_model(model: onnx.ModelProto | str | Path, fuse_relu: bool = True) -> ParsedGraph:
    """Check every operator and data type and build the op list; raises UnsupportedModelError naming them."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    g = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    inputs = [s for s in specs_from_onnx(g.input, "input") if s.name not in consts]
    outputs = specs_from_onnx(g.output, "output")
    for spec in inputs + outputs:
        if spec.dtype != np.float32:
            raise UnsupportedModelError(
                f"graph tensor {spec.name!r} has data type {spec.dtype}; the OpenCL backend computes float32 only")
    gc, ops = GraphCtx(consts, opset), []
    for node in g.node:
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedModelError(f"operator {node.domain}::{node.op_type} (node {node.name!r}) is not "
                                        f"supported by the OpenCL backend")
        if node.op_type == "Constant":
            consts[node.output[0]] = constant_value(node)
            continue
        cls = OPS.get(node.op_type)
        if cls is None:
            raise UnsupportedModelError(
                f"operator {node.op_type} (node {node.name or node.output[0]!r}) is not supported by the OpenCL "
                f"backend; supported: {', '.join(sorted(OPS))}")
        ops.append(cls(node, gc))
    device_consts = sorted({n for op in ops for n in op.inputs if n in consts})
    for n in device_consts:
        if consts[n].dtype != np.float32:
            raise UnsupportedModelError(f"constant {n!r} has data type {consts[n].dtype}; the OpenCL backend "
                                        f"computes float32 only")
    if fuse_relu:
        ops = _fuse_relu(ops, {o.name for o in outputs})
    return ParsedGraph(inputs, outputs, ops, consts, device_consts)


def _fuse_relu(ops: list[Op], graph_outputs: set[str]) -> list[Op]:
    uses: dict[str, int] = {}
    for op in ops:
        for n in op.inputs:
            uses[n] = uses.get(n, 0) + 1
    producer = {op.outputs[0]: op for op in ops}
    out: list[Op] = []
    for op in ops:
        src = producer.get(op.inputs[0]) if op.inputs else None
        if (getattr(op, "node", None) is not None and op.node.op_type == "Relu" and src is not None
                and src.node.op_type in FUSABLE and uses[op.inputs[0]] == 1 and op.inputs[0] not in graph_outputs):
            src.act = 1
            out.append(_Alias(op.inputs[0], op.outputs[0]))
        else:
            out.append(op)
    return out


@dataclass
class _Plan:
    inputs: list  # buffers, in self.inputs order
    steps: list  # (kernel, gsize, lsize)
    outputs: list  # (name, buffer, shape)
    nbytes: int
    keep: list  # every buffer the kernels use: OpenCL does not keep kernel arguments alive for us


def cl_device(info: DeviceInfo):
    import pyopencl as cl

    if info.platform_index is None or info.device_index is None:
        raise DeviceNotFoundError(f"{info.name} is not an OpenCL device")
    try:
        return cl.get_platforms()[info.platform_index].get_devices()[info.device_index]
    except (IndexError, cl.Error) as e:
        raise DeviceNotFoundError(f"OpenCL device {info.name} is not present") from e


class OpenCLBackend(Backend):
    """Options: kernel_binary (path to a prebuilt program binary), build_options (str), plan_cache (int),
    fuse_relu (bool)."""

    def __init__(self, path: str, device: DeviceInfo, kernel_binary: str | None = None, build_options: str = "",
                 plan_cache: int = 16, fuse_relu: bool = True):
        import pyopencl as cl

        self._cl, self.device = cl, device
        self.graph = parse_model(path, fuse_relu)
        self.inputs, self.outputs = self.graph.inputs, self.graph.outputs
        dev = cl_device(device)
        self.ctx = cl.Context([dev])
        self.queue = cl.CommandQueue(self.ctx)
        self.program = build_program(self.ctx, dev, device.name, kernel_binary, build_options)
        self._allocated = 0
        self._const_bufs = {n: self._upload(self.graph.consts[n]) for n in self.graph.device_consts}
        self._weights_bytes = self._allocated
        self._plans: OrderedDict[tuple, _Plan] = OrderedDict()
        self._plan_cache = plan_cache
        self._lock = threading.Lock()

    # ------------------------------------------------------------ buffers
    def _upload(self, arr: np.ndarray):
        cl = self._cl
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        self._allocated += max(arr.nbytes, 4)
        if arr.nbytes == 0:
            return cl.Buffer(self.ctx, cl.mem_flags.READ_ONLY, 4)
        return cl.Buffer(self.ctx, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=arr)

    def _alloc(self, shape: tuple) -> tuple:
        n = max(math.prod(shape) * 4, 4)
        return self._cl.Buffer(self.ctx, self._cl.mem_flags.READ_WRITE, n), n

    # ------------------------------------------------------------ plans
    def _build_plan(self, in_shapes: tuple) -> _Plan:
        cl, g = self._cl, self.graph
        shapes = {n: tuple(g.consts[n].shape) for n in g.device_consts}
        bufs = dict(self._const_bufs)
        nbytes, inputs, steps, keep = 0, [], [], []
        for spec, shape in zip(self.inputs, in_shapes):
            bufs[spec.name], n = self._alloc(shape)
            shapes[spec.name] = shape
            inputs.append(bufs[spec.name])
            nbytes += n
        for op in g.ops:
            ins = [shapes[n] for n in op.inputs]
            try:
                outs = op.infer(ins)
            except ValueError as e:
                raise InvalidInputError(f"input shapes {list(in_shapes)} do not fit the model: {e}") from e
            for name, shp in zip(op.outputs, outs):
                shapes[name] = tuple(int(d) for d in shp)
            if op.view:
                bufs[op.outputs[0]] = bufs[op.inputs[0]]
                continue
            for name in op.outputs:
                bufs[name], n = self._alloc(shapes[name])
                nbytes += n
            for launch in op.launches([bufs[n] for n in op.inputs], [bufs[n] for n in op.outputs], ins, outs):
                if math.prod(launch.gsize) == 0:
                    continue
                k = cl.Kernel(self.program, launch.kernel)
                args = []
                for a in launch.args:
                    if isinstance(a, Meta):
                        a = cl.Buffer(self.ctx, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR,
                                      hostbuf=np.asarray(a.values, dtype=np.int32))
                        keep.append(a)
                    args.append(a)
                k.set_args(*args)
                steps.append((k, launch.gsize, launch.lsize))
        outputs = [(o.name, bufs[o.name], shapes[o.name]) for o in self.outputs]
        keep.extend(bufs.values())
        return _Plan(inputs, steps, outputs, nbytes, keep)

    def _plan(self, key: tuple) -> _Plan:
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        plan = self._build_plan(key)
        self._plans[key] = plan
        self._allocated += plan.nbytes
        while len(self._plans) > self._plan_cache:
            _, old = self._plans.popitem(last=False)
            self._allocated -= old.nbytes
        return plan

    # ------------------------------------------------------------ Backend
    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cl = self._cl
        arrays = [np.ascontiguousarray(inputs[s.name], dtype=np.float32) for s in self.inputs]
        with self._lock:
            plan = self._plan(tuple(a.shape for a in arrays))
            for buf, arr in zip(plan.inputs, arrays):
                if arr.size:
                    cl.enqueue_copy(self.queue, buf, arr, is_blocking=False)
            for k, gsize, lsize in plan.steps:
                cl.enqueue_nd_range_kernel(self.queue, k, gsize, lsize)
            result = {}
            for name, buf, shape in plan.outputs:
                out = np.empty(shape, np.float32)
                if out.size:
                    cl.enqueue_copy(self.queue, out, buf, is_blocking=False)
                result[name] = out
            self.queue.finish()
        return result

    def memory(self) -> MemoryInfo:
        return MemoryInfo(self._allocated, self.device.memory_bytes,
                          {"weights_bytes": self._weights_bytes, "cached_plans": len(self._plans)})

    def providers(self) -> list[str]:
        return [f"OpenCL:{self.device.platform}:{self.device.description}"]

    def close(self) -> None:
        self._plans.clear()
        self._const_bufs.clear()


def build_program(ctx, dev, device_name: str, kernel_binary: str | None = None, build_options: str = ""):
    """Build the kernels from source, or load a prebuilt binary (FPGA flow); check every kernel is present."""
    import pyopencl as cl

    if kernel_binary:
        data = Path(kernel_binary).read_bytes()
        try:
            program = cl.Program(ctx, [dev], [data]).build(options=build_options)
        except cl.Error as e:
            raise UnsupportedModelError(f"cannot load kernel binary {kernel_binary} on {device_name}: {e}") from e
    else:
        if not dev.compiler_available:
            raise UnsupportedModelError(
                f"OpenCL device {device_name} cannot compile kernels at run time (usual on FPGA boards); pass "
                f"backend_options={{'kernel_binary': path}} built offline from openscore.accelerators.opencl_kernels")
        program = cl.Program(ctx, KERNEL_SOURCE).build(options=build_options)
    have = set(program.get_info(cl.program_info.KERNEL_NAMES).split(";"))
    missing = [k for k in KERNEL_NAMES if k not in have]
    if missing:
        raise UnsupportedModelError(f"kernel program for {device_name} lacks kernels: {', '.join(missing)}")
    return program


def build_kernel_binary(device: DeviceInfo, path: str | Path, build_options: str = "") -> Path:
    """Compile the kernels for `device` and save the program binary (what an FPGA flow produces offline)."""
    import pyopencl as cl

    dev = cl_device(device)
    ctx = cl.Context([dev])
    program = build_program(ctx, dev, device.name, None, build_options)
    path = Path(path)
    path.write_bytes(program.get_info(cl.program_info.BINARIES)[0])
    return path
