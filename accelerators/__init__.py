"""openscore.accelerators: CPU, CUDA and OpenCL/FPGA backends behind a dynamic batcher, and `load_model`.
May import `openscore` (shared pieces) only: the runtime, router and entry scripts build on it, not it on them.

    from openscore.accelerators import load_model
    model = load_model("model.onnx", device="auto", max_batch_size=32)
    outputs = model.predict({"x": x})          # from run() threads
    outputs = await model.predict_async(x)     # from coroutines
"""

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
