"""Dynamic batching on a compute-heavy model (1024-wide MLP, 4 layers) with onnxruntime CPU, in-process.

Prints, side by side in one run: direct onnxruntime at batch 1 and 32 (the batch-32 rows/s is the limit),
p50 with one request in flight (batching off vs on), and rows/s at 16 and 64 concurrent callers (off vs on).
Targets (issue): p50 overhead <= 5 %; at 16+ in flight >= 1.5x unbatched and >= 70 % of the batch-32 limit.
Usage: python bench/bench_batching.py [--seconds 2]   (about 30 s on 2 cores)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from accelerators import load_model, sample_models  # noqa: E402


def timed_loop(fn, seconds: float) -> tuple[int, list[float]]:
    fn()
    lat, end = [], time.perf_counter() + seconds
    while (t := time.perf_counter()) < end:
        fn()
        lat.append(time.perf_counter() - t)
    return len(lat), lat


def closed_loop(fn, callers: int, seconds: float) -> float:
    """Requests per second with `callers` threads each calling fn back to back."""
    counts, stop = [0] * callers, threading.Event()

    def caller(i):
        while not stop.is_set():
            fn()
            counts[i] += 1
    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for t in threads:
        t.start()
    time.sleep(seconds * 0.2)  # warm up
    c0, t0 = sum(counts), time.perf_counter()
    time.sleep(seconds)
    c1, t1 = sum(counts), time.perf_counter()
    stop.set()
    for t in threads:
        t.join()
    return (c1 - c0) / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()
    s = args.seconds
    path = str(sample_models.save(sample_models.mlp(args.width, args.width, args.layers, 16),
                                  Path(tempfile.mkdtemp()) / "mlp.onnx"))
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, args.width)).astype(np.float32)
    x32 = rng.standard_normal((32, args.width)).astype(np.float32)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    print(f"model: MLP {args.width}x{args.layers} layers, onnxruntime {ort.__version__} CPU, "
          f"{s:.1f} s per figure")

    n1, lat1 = timed_loop(lambda: sess.run(None, {"x": x1}), s)
    n32, lat32 = timed_loop(lambda: sess.run(None, {"x": x32}), s)
    direct_p50 = statistics.median(lat1)
    limit = 32 / statistics.median(lat32)
    print(f"direct onnxruntime  batch 1 : {1 / direct_p50:8.0f} rows/s  p50 {direct_p50 * 1e3:.3f} ms")
    print(f"direct onnxruntime  batch 32: {limit:8.0f} rows/s  (the batch-32 limit)")

    off = load_model(path, "cpu", max_batch_size=1, name="bench-off", metrics=False)
    on = load_model(path, "cpu", max_batch_size=32, name="bench-on", metrics=False)
    _, l_off = timed_loop(lambda: off.predict(x1), s)
    _, l_on = timed_loop(lambda: on.predict(x1), s)
    p_off, p_on = statistics.median(l_off), statistics.median(l_on)
    print(f"1 in flight p50: batching off {p_off * 1e3:.3f} ms, on {p_on * 1e3:.3f} ms -> "
          f"+{(p_on / p_off - 1) * 100:.1f} % (vs direct call: +{(p_on / direct_p50 - 1) * 100:.1f} %)")
    for callers in (16, 64):
        r_off = closed_loop(lambda: off.predict(x1), callers, s)
        r_on = closed_loop(lambda: on.predict(x1), callers, s)
        print(f"{callers:2d} in flight: off {r_off:7.0f} rows/s, on {r_on:7.0f} rows/s -> {r_on / r_off:.2f}x "
              f"unbatched, {r_on / limit * 100:.0f} % of the batch-32 limit")
    off.close()
    on.close()


if __name__ == "__main__":
    main()
