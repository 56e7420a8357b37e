"""onnxruntime on the CPU (CPUExecutionProvider), with thread and memory-arena options exposed."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .backend import Backend, TensorSpec
from .devices import DeviceInfo, cpu_device
from .errors import UnsupportedModelError


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise UnsupportedModelError("onnxruntime is not installed (pip install 'openscore[cpu]')") from e
    return ort


_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_, "tensor(string)": np.object_,
}


def ort_specs(args) -> list[TensorSpec]:
    """TensorSpecs from onnxruntime NodeArgs (symbolic and unknown dims become None)."""
    out = []
    for a in args:
        if a.type not in _ORT_TYPES:
            raise UnsupportedModelError(f"tensor {a.name!r} has type {a.type}, which openscore cannot feed")
        out.append(TensorSpec(a.name, np.dtype(_ORT_TYPES[a.type]),
                              tuple(d if isinstance(d, int) else None for d in (a.shape or ()))))
    return out


def session_options(intra_op_num_threads: int | None = None, inter_op_num_threads: int | None = None,
                    enable_cpu_mem_arena: bool = True, enable_mem_pattern: bool = True,
                    graph_optimization_level: str = "all", allow_spinning: bool = False):
    """onnxruntime SessionOptions from plain keyword options (what load_model's backend_options pass)."""
    ort = _ort()
    so = ort.SessionOptions()
    if intra_op_num_threads is not None:
        so.intra_op_num_threads = intra_op_num_threads
    if inter_op_num_threads is not None:
        so.inter_op_num_threads = inter_op_num_threads
    so.enable_cpu_mem_arena = enable_cpu_mem_arena
    so.enable_mem_pattern = enable_mem_pattern
    if not allow_spinning:  # idle pool threads sleep instead of spinning: better when callers share the cores
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    levels = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, levels[graph_optimization_level])
    return so


class OrtBackend(Backend):
    """Shared onnxruntime session handling; subclasses choose providers and check them."""

    def __init__(self, path: str, device: DeviceInfo, providers: list, **options):
        ort = _ort()
        self.device = device
        self.session = ort.InferenceSession(str(path), sess_options=session_options(**options), providers=providers)
        self.inputs = ort_specs(self.session.get_inputs())
        self.outputs = ort_specs(self.session.get_outputs())
        self._output_names = [o.name for o in self.outputs]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._output_names, self.session.run(self._output_names, dict(inputs))))

    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def close(self) -> None:
        self.session = None


class CpuBackend(OrtBackend):
    """onnxruntime CPUExecutionProvider. Options: intra_op_num_threads, inter_op_num_threads,
    enable_cpu_mem_arena, enable_mem_pattern, graph_optimization_level, allow_spinning (default off: spinning
    pool threads starve the Python threads that feed the batcher on small machines)."""

    def __init__(self, path: str, **options):
        super().__init__(path, cpu_device(), ["CPUExecutionProvider"], **options)
