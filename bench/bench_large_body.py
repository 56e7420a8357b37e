"""Worst /healthz latency while the scoring server takes a large body: a 95 MB V2 BYTES tensor, an 85 MB
no-code JSON tensor and a 1 MB gzip bomb inflating to 1 GiB, plus the peak RSS of the server's processes.

    python bench/bench_large_body.py                          # this tree: one line per case
    python bench/bench_large_body.py --tree /tmp/old --tree .  # two trees back to back, then a table

Starts a fresh `openscore serve --model` on 127.0.0.1 (a small MLP) per case, sends the body once while a
prober asks /healthz back to back, and prints the worst and median probe latency and the peak RSS (VmHWM) of
the worker and of any helper process it started. `--tree` runs the server from that checkout's code (its
packages mapped as its pyproject's package-dir says, put first on PYTHONPATH) with this interpreter and
installed dependencies. Figures only, no thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import zlib
from pathlib import Path

import requests

from openscore.accelerators.sample_models import mlp, save


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _hwm_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _bomb(inflated: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join(c.compress(zeros) for _ in range(inflated >> 20)) + c.flush()


def _tree_path(tree: Path, tmp: Path) -> str:
    """A folder laid out as the installed package: openscore/ holding links to the tree's package folders."""
    dirs = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    root = tmp / "pkg" / "openscore"
    root.mkdir(parents=True)
    for f in (tree / dirs["openscore"]).iterdir():
        (root / f.name).symlink_to(f.resolve())
    for name, folder in dirs.items():
        parts = name.split(".")
        if len(parts) == 2:
            (root / parts[1]).symlink_to((tree / folder).resolve())
    return str(tmp / "pkg")


def _serve(model: Path, tmp: Path, pythonpath: str | None) -> tuple[subprocess.Popen, str, int]:
    port = _port()
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-m", "openscore", "serve", "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "--no-access-log"], cwd=tmp, start_new_session=True, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.1)
    else:
        raise SystemExit("the server did not become ready")
    return proc, url, _children(proc.pid)[0]


def _case(url: str, name: str, path: str, body: bytes, headers: dict[str, str], worker: int) -> dict:
    lat: list[float] = []
    stop = threading.Event()
    peak: dict[int, float] = {}

    def probe() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            requests.get(url + "/healthz", timeout=120)
            lat.append(time.perf_counter() - t)
            for pid in _children(worker):  # a helper's peak, read while it is alive
                peak[pid] = _hwm_mib(pid)
            time.sleep(0.005)

    th = threading.Thread(target=probe)
    th.start()
    t = time.perf_counter()
    r = requests.post(url + path, data=body, headers=headers, timeout=300)
    took = time.perf_counter() - t
    stop.set()
    th.join()
    row = {"case": name, "mb": len(body) / 1e6, "status": r.status_code, "took_s": took, "worst_ms": max(lat) * 1000,
           "median_ms": statistics.median(lat) * 1000, "probes": len(lat), "worker_mib": _hwm_mib(worker),
           "helper_mib": max(peak.values(), default=0.0)}
    print(f"{name:<28} {row['mb']:6.1f} MB -> {r.status_code}  request {took:6.2f} s  /healthz worst "
          f"{row['worst_ms']:8.1f} ms  median {row['median_ms']:6.1f} ms  ({len(lat)} probes)  peak RSS worker "
          f"{row['worker_mib']:5.0f} MiB, helper {row['helper_mib']:5.0f} MiB", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", action="append", type=Path, default=[],
                    help="run the server from this checkout (repeat to compare trees; default: as installed)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-large-body-"))
    try:
        _run(args.tree, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(trees: list[Path], tmp: Path) -> None:
    model = save(mlp(in_features=64, hidden=16, layers=1, classes=4), tmp / "mlp.onnx")
    js = {"Content-Type": "application/json"}
    n = 95_000_000 // 14
    v2 = json.dumps({"inputs": [{"name": "x", "shape": [n], "datatype": "BYTES", "data": ["abcdefghij"] * n}]})
    rows = 85_000_000 // (64 * 5)
    cases = [("V2 BYTES tensor", "/v2/models/mlp/infer", v2.encode(), js),
             ("no-code JSON tensor", "/score", json.dumps({"data": [[0.5] * 64] * rows}).encode(), js),
             ("gzip bomb (1 GiB inflated)", "/score", _bomb(1 << 30), {**js, "Content-Encoding": "gzip"})]
    del v2
    results: dict[str, list[dict]] = {}
    for i, tree in enumerate(trees or [None]):
        label = str(tree) if tree else "installed"
        print(f"== {label}", flush=True)
        pythonpath = _tree_path(tree, tmp / f"tree{i}") if tree else None
        for name, path, body, headers in cases:
            proc, url, worker = _serve(model, tmp, pythonpath)  # a fresh server: each case's own peak RSS
            try:
                results.setdefault(label, []).append(_case(url, name, path, body, headers, worker))
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
    if len(results) > 1:
        labels = list(results)
        print("\n| case | " + " | ".join(f"{lb}: status, worst /healthz ms, peak RSS MiB (worker+helper)"
                                         for lb in labels) + " |")
        print("| --- |" + " --- |" * len(labels))
        for k, (name, *_rest) in enumerate(cases):
            cells = [f"{r['status']}, {r['worst_ms']:.0f}, {r['worker_mib']:.0f}+{r['helper_mib']:.0f}"
                     for r in (results[lb][k] for lb in labels)]
            print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
