"""onnxruntime-gpu with CUDAExecutionProvider (optionally TensorRT), refusing silent CPU fallback.

onnxruntime-gpu logs "Failed to create CUDAExecutionProvider" and runs on the CPU when CUDA is unusable, while
get_device() still says GPU: only `session.get_providers()` tells the truth, so it is checked after loading.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .backend import MemoryInfo
from .cpu_backend import OrtBackend, _ort
from .devices import DeviceInfo
from .errors import DeviceNotFoundError


def check_providers(requested: str, active: list[str], device: str) -> None:
    """Raise when the provider the caller asked for is not the one the session really uses."""
    if requested not in active:
        raise DeviceNotFoundError(
            f"device {device} requested but onnxruntime is not using {requested} (session providers: "
            f"{active}); onnxruntime-gpu fell back to the CPU - check the CUDA/cuDNN libraries and "
            f"that the 'onnxruntime-gpu' (not 'onnxruntime') package is installed")


class CudaBackend(OrtBackend):
    """CUDAExecutionProvider on `device`. Options: tensorrt (bool), io_binding (bool: keep outputs on the GPU
    side of the copy, worth it for large outputs), cuda_options (dict passed to the provider), plus the
    CPU session options."""

    def __init__(self, path: str, device: DeviceInfo, tensorrt: bool = False, io_binding: bool = False,
                 cuda_options: dict | None = None, **options):
        ort = _ort()
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise DeviceNotFoundError(
                f"device {device.name} requested but this onnxruntime build has no CUDAExecutionProvider "
                f"(available: {available}); install the 'cuda' extra (onnxruntime-gpu)")
        cuda = ("CUDAExecutionProvider", {"device_id": device.index or 0, **(cuda_options or {})})
        providers = [cuda, "CPUExecutionProvider"]
        if tensorrt:
            providers.insert(0, ("TensorrtExecutionProvider", {"device_id": device.index or 0}))
        super().__init__(path, device, providers, **options)
        active = self.session.get_providers()
        check_providers("CUDAExecutionProvider", active, device.name)
        if tensorrt:
            check_providers("TensorrtExecutionProvider", active, device.name)
        self._io_binding = io_binding

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._io_binding:
            return super().run(inputs)
        binding = self.session.io_binding()
        for name, arr in inputs.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(arr))
        for name in self._output_names:
            binding.bind_output(name, "cuda", self.device.index or 0)
        self.session.run_with_iobinding(binding)
        return dict(zip(self._output_names, binding.copy_outputs_to_cpu()))

    def memory(self) -> MemoryInfo:
        """Free/total memory of the device from the driver (cuMemGetInfo needs a context; use NVML)."""
        try:
            import pynvml  # optional: nvidia-ml-py
            pynvml.nvmlInit()
            h = pynvml.nvmlDeviceGetHandleByIndex(self.device.index or 0)
            info = pynvml.nvmlDeviceGetMemoryInfo(h)
            return MemoryInfo(int(info.used), int(info.total))
        except Exception:
            return MemoryInfo(None, self.device.memory_bytes)
