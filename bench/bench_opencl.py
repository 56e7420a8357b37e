"""OpenCL backend (PoCL's CPU device in CI) vs onnxruntime CPU on the same models, as a ratio.

Models: the 1024-wide MLP (4 layers) and the small CNN from openscore.accelerators.sample_models, batch 1 and 32.
Usage: python bench/bench_opencl.py [--seconds 1.5] [--device opencl:0:0]   (about 30 s on 2 cores)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from openscore.accelerators import sample_models
from openscore.accelerators.cpu_backend import CpuBackend
from openscore.accelerators.devices import resolve_device
from openscore.accelerators.opencl_backend import OpenCLBackend


def p50(fn, seconds: float) -> float:
    fn()
    lat, end = [], time.perf_counter() + seconds
    while (t := time.perf_counter()) < end:
        fn()
        lat.append(time.perf_counter() - t)
    return statistics.median(lat)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--device", default="opencl")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    tmp = Path(tempfile.mkdtemp())
    models = {"mlp1024x4": (sample_models.mlp(1024, 1024, 4, 16), (1024,)),
              "cnn3x32x32": (sample_models.cnn(3, 32, 10), (3, 32, 32))}
    print(f"OpenCL device {dev.name}: {dev.description} [{dev.platform}] vs onnxruntime CPUExecutionProvider")
    for name, (model, shape) in models.items():
        path = str(sample_models.save(model, tmp / f"{name}.onnx"))
        t = time.perf_counter()
        ocl = OpenCLBackend(path, dev)
        load = time.perf_counter() - t
        cpu = CpuBackend(path, allow_spinning=True)
        for batch in (1, 32):
            x = {"x": np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)}
            err = max(float(np.abs(ocl.run(x)[k] - v).max()) for k, v in cpu.run(x).items())
            t_ocl, t_cpu = p50(partial(ocl.run, x), args.seconds), p50(partial(cpu.run, x), args.seconds)
            print(f"{name:11s} batch {batch:2d}: opencl {t_ocl * 1e3:8.3f} ms  onnxruntime {t_cpu * 1e3:7.3f} ms  "
                  f"ratio {t_ocl / t_cpu:6.1f}x slower  ({batch / t_ocl:7.0f} vs {batch / t_cpu:7.0f} rows/s, "
                  f"max abs err {err:.1e}, load {load:.2f} s)")


if __name__ == "__main__":
    main()
