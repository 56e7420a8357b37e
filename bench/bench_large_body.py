"""Worst /healthz latency while the scoring server takes a large body: a 95 MB V2 BYTES tensor, an 85 MB
no-code JSON tensor and a 1 MB gzip bomb inflating to 1 GiB, plus the worker's peak RSS during the bomb.

    python bench/bench_large_body.py            # prints one line per case

Starts its own `openscore serve --model` on 127.0.0.1 (a small MLP), sends each body once while a prober asks
/healthz back to back, and prints the worst and median probe latency. Figures only, no thresholds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import requests

from openscore.accelerators.sample_models import mlp, save


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return -1.0


def _bomb(inflated: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join(c.compress(zeros) for _ in range(inflated >> 20)) + c.flush()


def _case(url: str, name: str, path: str, body: bytes, headers: dict[str, str], worker: int) -> None:
    lat: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            requests.get(url + "/healthz", timeout=120)
            lat.append(time.perf_counter() - t)
            time.sleep(0.005)

    th = threading.Thread(target=probe)
    th.start()
    t = time.perf_counter()
    r = requests.post(url + path, data=body, headers=headers, timeout=300)
    took = time.perf_counter() - t
    stop.set()
    th.join()
    print(f"{name:<34} {len(body) / 1e6:7.1f} MB -> {r.status_code}  request {took:6.2f} s  /healthz worst "
          f"{max(lat) * 1000:8.1f} ms  median {statistics.median(lat) * 1000:6.1f} ms  ({len(lat)} probes)  "
          f"worker peak RSS {_hwm_mib(worker):7.0f} MiB", flush=True)


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-large-body-"))
    model = save(mlp(in_features=64, hidden=16, layers=1, classes=4), tmp / "mlp.onnx")
    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "openscore", "serve", "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "--no-access-log"], cwd=tmp, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        worker = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
        js = {"Content-Type": "application/json"}
        n = 95_000_000 // 14
        v2 = json.dumps({"inputs": [{"name": "x", "shape": [n], "datatype": "BYTES", "data": ["abcdefghij"] * n}]})
        _case(url, "V2 BYTES tensor", "/v2/models/mlp/infer", v2.encode(), js, worker)
        del v2
        rows = 85_000_000 // (64 * 5)
        nocode = json.dumps({"data": [[0.5] * 64] * rows}).encode()
        _case(url, "no-code JSON tensor", "/score", nocode, js, worker)
        del nocode
        _case(url, "gzip bomb (1 GiB inflated)", "/score", _bomb(1 << 30), {**js, "Content-Encoding": "gzip"}, worker)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


if __name__ == "__main__":
    main()
