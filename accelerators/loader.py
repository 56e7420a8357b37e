"""Open a backend for a device string, `auto` included: the best device this model really runs on.

`auto` prefers a CUDA device that onnxruntime really uses, then an OpenCL GPU/ACCELERATOR that supports every
operator of the model, then the CPU (a CPU-type OpenCL device never beats onnxruntime on the same cores).
Explicit devices never fall back: absent or unusable is an error.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .backend import Backend
from .devices import DeviceInfo, cuda_devices, opencl_devices, parse_device, resolve_device
from .errors import AcceleratorError, InvalidDeviceNameError

log = logging.getLogger("openscore.accelerators")

CPU_OPTIONS = {"intra_op_num_threads", "inter_op_num_threads", "enable_cpu_mem_arena", "enable_mem_pattern",
               "graph_optimization_level", "allow_spinning"}
CUDA_OPTIONS = CPU_OPTIONS | {"tensorrt", "io_binding", "cuda_options"}
OPENCL_OPTIONS = {"kernel_binary", "build_options", "plan_cache", "fuse_relu"}


def _subset(options: dict, allowed: set[str]) -> dict:
    return {k: v for k, v in options.items() if k in allowed}


def open_backend(path: str | Path, device: str = "auto", options: dict | None = None) -> Backend:
    """A backend for `device`; options not understood by any backend are an error naming them."""
    options = dict(options or {})
    unknown = set(options) - CUDA_OPTIONS - OPENCL_OPTIONS
    if unknown:
        raise InvalidDeviceNameError(f"unknown backend_options {sorted(unknown)}; known: "
                                     f"{sorted(CUDA_OPTIONS | OPENCL_OPTIONS)}")
    path = str(path)
    req = parse_device(device)
    if req.kind == "auto":
        return _auto(path, options)
    if req.kind == "cpu":
        return _cpu(path, options)
    return open_on(path, resolve_device(req), options)


def open_on(path: str, info: DeviceInfo, options: dict) -> Backend:
    """A backend on an already-resolved device (what extra instances of an `auto` model reuse)."""
    if info.kind == "cpu":
        return _cpu(path, options)
    if info.kind == "cuda":
        from .cuda_backend import CudaBackend
        return CudaBackend(path, info, **_subset(options, CUDA_OPTIONS))
    from .opencl_backend import OpenCLBackend
    return OpenCLBackend(path, info, **_subset(options, OPENCL_OPTIONS))


def _cpu(path: str, options: dict) -> Backend:
    from .cpu_backend import CpuBackend
    return CpuBackend(path, **_subset(options, CPU_OPTIONS))


def _auto(path: str, options: dict) -> Backend:
    skipped = []
    cuda, why = cuda_devices()
    for info in cuda:
        try:
            return open_on(path, info, options)
        except AcceleratorError as e:
            skipped.append(f"{info.name}: {e}")
    if why:
        skipped.append(f"cuda: {why}")
    ocl, why = opencl_devices()
    for info in ocl:
        if info.type not in ("GPU", "ACCELERATOR"):
            continue
        try:
            return open_on(path, info, options)
        except (AcceleratorError, ImportError) as e:
            skipped.append(f"{info.name}: {e}")
    backend = _cpu(path, options)
    if skipped:
        log.info("device auto chose cpu for %s; skipped: %s", path, "; ".join(skipped))
    return backend
