"""Open Inference Protocol overhead: a trivial ONNX model (x + 1 on a [1, 4] vector) over V2 JSON infer through
`openscore serve --model`, side by side with a bare aiohttp handler doing the same work (bare_v2_aiohttp.py).

Primary figure: server CPU-µs per request (utime + stime from /proc of every process of the server, master and
workers) while `wrk` drives it; then req/s and p50/p99 at 1 and 16 requests in flight. The server is pinned to
core 0 and wrk to core 1 (taskset). Issue target: openscore <= 350 CPU-µs/request (MLServer ~730, KServe ~850).
Usage: python bench/bench_v2.py [--seconds 5]   (about 60 s)
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import requests
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
BODY = ('{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1.0,2.0,3.0,4.0]}]}')
LUA = f"""wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


def trivial_model(path: Path) -> Path:
    one = numpy_helper.from_array(np.ones(4, np.float32), "one")
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "add1",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_cpu_s(sid: int) -> float:
    """utime + stime of every live process in session `sid` (the server and its workers)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 (session id), counted after the ")" of the command
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def wrk(url: str, lua: str, conns: int, seconds: float) -> dict:
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency",
                          "-s", lua, url], capture_output=True, text=True, check=True).stdout
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    pct = {m.group(1): float(m.group(2)) * units[m.group(3)]
           for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": pct.get("50"), "p99": pct.get("99"), "errors": int(errors.group(1)) if errors else 0}


def measure(name: str, argv: list[str], url: str, ready: str, lua: str, seconds: float) -> list[dict]:
    env = dict(os.environ)
    proc = subprocess.Popen(["taskset", "-c", "0", *argv], env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(ready, timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.1)
        rows = []
        for conns in (1, 16):
            wrk(url, lua, conns, 1)  # warm up
            c0 = session_cpu_s(proc.pid)
            r = wrk(url, lua, conns, seconds)
            cpu = session_cpu_s(proc.pid) - c0
            r.update(name=name, conns=conns, cpu_us=cpu * 1e6 / max(1, r["requests"]))
            rows.append(r)
            print(f"{name:28s} {conns:3d} in flight  {r['cpu_us']:7.0f} CPU-µs/req  {r['rps']:8.0f} req/s  "
                  f"p50 {r['p50']:.3f} ms  p99 {r['p99']:.3f} ms" + (f"  ERRORS {r['errors']}" if r["errors"] else ""),
                  flush=True)
        return rows
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(15)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-v2-"))
    model = trivial_model(tmp / "add1.onnx")
    lua = tmp / "post.lua"
    lua.write_text(LUA)
    py = sys.executable
    print(f"trivial model x + 1 on [1, 4], V2 JSON infer, {args.seconds:.0f} s per figure; server on core 0, "
          f"wrk on core 1")
    for name, extra in (("openscore --model", []), ("openscore --no-access-log", ["--no-access-log"])):
        port = free_port()
        measure(name, [py, "-m", "openscore", "serve", "--model", str(model), "--host", "127.0.0.1", "--port",
                       str(port), *extra], f"http://127.0.0.1:{port}/v2/models/add1/infer",
                f"http://127.0.0.1:{port}/v2/health/ready", str(lua), args.seconds)
    port = free_port()
    measure("bare aiohttp (V2 JSON)", [py, str(ROOT / "bench" / "bare_v2_aiohttp.py"), str(port), str(model)],
            f"http://127.0.0.1:{port}/v2/models/add1/infer", f"http://127.0.0.1:{port}/v2/health/ready",
            str(lua), args.seconds)


if __name__ == "__main__":
    main()
