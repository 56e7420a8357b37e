"""The one interface every device backend implements, and the tensor descriptions they share."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .devices import DeviceInfo
from .errors import UnsupportedModelError


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: `shape` uses None for dynamic dimensions (the batch one included)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    @property
    def batched(self) -> bool:
        """True when the first dimension is dynamic, so requests can be stacked along it."""
        return len(self.shape) >= 1 and self.shape[0] is None

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": np.dtype(self.dtype).name,
                "shape": [-1 if d is None else d for d in self.shape]}


@dataclass(frozen=True)
class MemoryInfo:
    """What a backend knows about device memory; None fields are unknown to it."""

    used_bytes: int | None = None
    total_bytes: int | None = None
    details: dict = field(default_factory=dict)


class Backend(abc.ABC):
    """A loaded model on one device. One instance is driven by one thread at a time (the batcher's)."""

    device: DeviceInfo
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @abc.abstractmethod
    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one (possibly batched) call; inputs already have the model's dtypes."""

    def memory(self) -> MemoryInfo:
        """Device memory as far as this backend can tell."""
        return MemoryInfo()

    def providers(self) -> list[str]:
        """The execution providers / engines really in use (for logs and metadata)."""
        return []

    def close(self) -> None:  # noqa: B027  (not abstract: a backend with nothing to release needs no close)
        """Release device resources; the default has nothing to release."""

    @property
    def batchable(self) -> bool:
        """Whether requests may be concatenated along the first dimension of every input and output."""
        return bool(self.inputs) and all(t.batched for t in self.inputs) and all(t.batched for t in self.outputs)


def onnx_dtype_to_numpy(elem_type: int, where: str) -> np.dtype:
    """Map an ONNX TensorProto element type to numpy, naming the tensor when it has no numpy equivalent."""
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, TypeError, ValueError) as e:
        raise UnsupportedModelError(f"{where}: ONNX element type {elem_type} has no numpy equivalent") from e


def _dim(d) -> int | None:
    return d.dim_value if d.HasField("dim_value") else None


def specs_from_onnx(values, where: str) -> list[TensorSpec]:
    """TensorSpecs from onnx ValueInfoProtos (graph inputs/outputs)."""
    out = []
    for v in values:
        tt = v.type.tensor_type
        shape = tuple(_dim(d) for d in tt.shape.dim) if tt.HasField("shape") else ()
        out.append(TensorSpec(v.name, onnx_dtype_to_numpy(tt.elem_type, f"{where} {v.name!r}"), shape))
    return out

