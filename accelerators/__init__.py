"""openscore.accelerators: CPU, CUDA and OpenCL/FPGA backends behind a dynamic batcher, and `load_model`.
May import `openscore` (shared pieces) only: the runtime, router and entry scripts build on it, not it on them.

    from openscore.accelerators import load_model
    model = load_model("model.onnx", device="auto", max_batch_size=32)
    outputs = model.predict({"x": x})          # from run() threads
    outputs = await model.predict_async(x)     # from coroutines

The names below are imported on first use (PEP 562): importing a light submodule (the `devices` command's
registration, `tensors` in a decode process) does not import numpy, onnxruntime and the batcher with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import Backend, MemoryInfo, TensorSpec
    from .batcher import BatcherOptions, DynamicBatcher
    from .devices import DeviceInfo, inventory, parse_device, resolve_device
    from .errors import (
        AcceleratorError,
        BatcherClosedError,
        DeviceNotFoundError,
        ExecutionError,
        InvalidDeviceNameError,
        InvalidInputError,
        QueueFullError,
        QueueTimeoutError,
        UnsupportedModelError,
    )
    from .model import Model, load_model
    from .replica_device import ReplicaDevice, current_device, set_current_device

_SUBMODULE = {name: module for module, names in (
    ('backend', ('Backend', 'MemoryInfo', 'TensorSpec')),
    ('batcher', ('BatcherOptions', 'DynamicBatcher')),
    ('devices', ('DeviceInfo', 'inventory', 'parse_device', 'resolve_device')),
    ('errors', ('AcceleratorError', 'BatcherClosedError', 'DeviceNotFoundError', 'ExecutionError',
                'InvalidDeviceNameError', 'InvalidInputError', 'QueueFullError', 'QueueTimeoutError',
                'UnsupportedModelError')),
    ('model', ('Model', 'load_model')),
    ('replica_device', ('ReplicaDevice', 'current_device', 'set_current_device')),
) for name in names}

__all__ = [
    "AcceleratorError",
    "Backend",
    "BatcherClosedError",
    "BatcherOptions",
    "DeviceInfo",
    "DeviceNotFoundError",
    "DynamicBatcher",
    "ExecutionError",
    "InvalidDeviceNameError",
    "InvalidInputError",
    "MemoryInfo",
    "Model",
    "QueueFullError",
    "QueueTimeoutError",
    "ReplicaDevice",
    "TensorSpec",
    "UnsupportedModelError",
    "current_device",
    "inventory",
    "load_model",
    "parse_device",
    "resolve_device",
    "set_current_device",
]


def __getattr__(name: str) -> Any:
    module = _SUBMODULE.get(name)
    if module is None:  # `from openscore.accelerators import metrics` then imports the submodule
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
