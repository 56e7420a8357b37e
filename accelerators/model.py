"""The entry-script API: `load_model(path, device=..., max_batch_size=...)` and the Model facade whose
`predict` (threads) and `predict_async` (coroutines) calls are batched together on the device."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .backend import Backend, MemoryInfo, TensorSpec
from .batcher import BatcherOptions, DynamicBatcher
from .devices import DeviceInfo
from .loader import open_backend, open_on
from .metrics import ModelMetrics
from .replica_device import current_device
from .tensors import Tensors, batch_key, batch_rows, normalize, split, stack


class Model:
    """A model on one device with `instances` backends behind one dynamic batcher."""

    def __init__(self, backends: Sequence[Backend], options: BatcherOptions, name: str,
                 metrics: ModelMetrics | None = None):
        self.backends, self.name = list(backends), name
        first = self.backends[0]
        self.inputs: list[TensorSpec] = first.inputs
        self.outputs: list[TensorSpec] = first.outputs
        self.device: DeviceInfo = first.device
        self.batchable = first.batchable
        if not self.batchable and options.max_batch_size > 1:  # one request per device call
            options = BatcherOptions(1, (), 0.0, options.max_queue_size, options.queue_timeout_s)
        self.options, self.metrics = options, metrics
        self._batcher = DynamicBatcher(
            [self._worker(b) for b in self.backends], options, name=name, metrics=metrics,
            size=(lambda t: batch_rows(t)) if self.batchable else (lambda t: 1), key=batch_key)

    def _worker(self, backend: Backend):
        def run(requests: list[Tensors]) -> list[Tensors]:
            sizes = [batch_rows(r) for r in requests] if self.batchable and len(requests) > 1 else [1]
            out = split(backend.run(stack(requests)), sizes)
            if self.metrics and self.metrics.memory_due():  # asking the backend may cost a driver call
                mem = backend.memory()
                self.metrics.memory(mem.used_bytes, mem.total_bytes)
            return out
        return run

    # ------------------------------------------------------------ predict
    def prepare(self, inputs: Any) -> Tensors:
        """Validate and normalise one request (raises InvalidInputError; counted as a failure)."""
        try:
            tensors = normalize(inputs, self.inputs)
            if self.batchable:
                batch_rows(tensors)
            return tensors
        except ValueError:
            if self.metrics:
                self.metrics.failure("invalid_input")
            raise

    def submit(self, inputs: Any, timeout: float | None = None) -> cf.Future:
        return self._batcher.submit(self.prepare(inputs), timeout)

    def predict(self, inputs: Any, timeout: float | None = None) -> dict[str, np.ndarray]:
        """Run one request (a dict by input name, a list in input order, or an array for one-input models);
        returns outputs by name. Safe to call from many threads: concurrent calls share device calls."""
        return self._batcher.call(self.prepare(inputs), timeout)

    async def predict_async(self, inputs: Any, timeout: float | None = None, *,
                            inline_below_s: float = 0.0) -> dict[str, np.ndarray]:
        """`predict` for coroutines: the event loop is not blocked by the device, except that with
        `inline_below_s` a model whose calls average less than that runs on the loop thread when an instance is
        idle (for tiny models the thread handoff costs more than the call)."""
        return await self._batcher.call_async(self.prepare(inputs), timeout, inline_below_s=inline_below_s)

    # ------------------------------------------------------------ introspection and lifecycle
    def memory(self) -> MemoryInfo:
        return self.backends[0].memory()

    def providers(self) -> list[str]:
        return self.backends[0].providers()

    @property
    def queue_depth(self) -> int:
        return self._batcher.queue_depth

    def describe(self) -> dict:
        return {"name": self.name, "device": self.device.name, "providers": self.providers(),
                "inputs": [t.to_dict() for t in self.inputs], "outputs": [t.to_dict() for t in self.outputs],
                "instances": len(self.backends), "batchable": self.batchable,
                "max_batch_size": self.options.max_batch_size}

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting requests, finish (or fail, drain=False) queued ones, release the devices."""
        self._batcher.close(drain, timeout)
        for b in self.backends:
            b.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_model(path: str | Path, device: str | None = None, *, max_batch_size: int = 32,
               preferred_batch_sizes: Sequence[int] = (), max_queue_delay_ms: float = 0.0,
               max_queue_size: int = 1024, queue_timeout_s: float | None = None, instances: int = 1,
               name: str | None = None, backend_options: dict | None = None, metrics: bool = True) -> Model:
    """Load an ONNX model on `device` (default: the replica's device from OPENSCORE_DEVICE, else `auto`)
    behind a dynamic batcher. Devices: cpu, cuda[:N], opencl[:P:D], fpga[:N], auto."""
    if instances < 1:
        raise ValueError("instances must be >= 1")
    if device is None:
        given = current_device()
        device = given.name if given else "auto"
    first = open_backend(path, device, backend_options)
    backends = [first] + [open_on(str(path), first.device, dict(backend_options or {}))
                          for _ in range(instances - 1)]
    name = name or Path(path).stem
    options = BatcherOptions(max_batch_size, tuple(preferred_batch_sizes), max_queue_delay_ms / 1000.0,
                             max_queue_size, queue_timeout_s)
    return Model(backends, options, name, ModelMetrics(name, first.device.name) if metrics else None)
