"""Per-request cost of openscore's data plane, side by side with bare aiohttp handlers doing the same work.

One run measures, alternating the servers (ABBA order over the repeats, so machine noise hits all alike):
  openscore /score with an entry script (bench/trivial_score.py)  vs  bare /score (bench/bare_aiohttp.py)
  openscore no-code /score (--model, {"data": X})                 vs  bare /score + onnxruntime (bare_v2_aiohttp.py)
  openscore V2 JSON infer (--model)                               vs  bare V2 + onnxruntime (bare_v2_aiohttp.py)
The model is trivial (x + 1 on [1, 4]), so the figure is the framework's cost. Primary figure: server CPU-µs per
request (utime + stime of every process of the server's session, from /proc) while `wrk` keeps 16 requests in
flight; servers pinned to core 0, wrk to core 1. openscore runs with default settings (access log on, to a file).
Targets: openscore/bare <= 1.5x for each pair, and /score <= 150, V2 <= 160 CPU-µs/request.
Usage: python bench/bench_v2.py [--quick] [--seconds S] [--repeats N]   (default about 2 minutes, --quick 1)
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
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
V2_BODY = '{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1.0,2.0,3.0,4.0]}]}'
NOCODE_BODY = '{"data":[[1.0,2.0,3.0,4.0]]}'
SCORE_BODY = '{"data": [21]}'
RATIO_TARGET = 1.5
ABSOLUTE_TARGET = {"score": 150.0, "v2": 160.0}


def lua(body: str) -> str:
    return f"""wrk.method = "POST"
wrk.body = '{body}'
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


class Server:
    """One server process in its own session, pinned to core 0."""

    def __init__(self, argv: list[str], ready: str, log: Path, ready_status: int = 200):
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(["taskset", "-c", "0", *argv], cwd=ROOT, start_new_session=True,
                                         stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(ready, timeout=1).status_code == ready_status:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{argv} did not start:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def measure(server: Server, url: str, lua_path: str, seconds: float) -> dict:
    c0 = session_cpu_s(server.proc.pid)
    r = wrk(url, lua_path, 16, seconds)
    r["cpu_us"] = (session_cpu_s(server.proc.pid) - c0) * 1e6 / max(1, r["requests"])
    return r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=None, help="seconds per figure (default 4, --quick 2)")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per figure (default 3, --quick 2)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    seconds = args.seconds or (2.0 if args.quick else 4.0)
    repeats = args.repeats or (2 if args.quick else 3)
    tmp = Path(tempfile.mkdtemp(prefix="bench-v2-"))
    model = trivial_model(tmp / "add1.onnx")
    luas = {}
    for name, body in (("score", SCORE_BODY), ("nocode", NOCODE_BODY), ("v2", V2_BODY)):
        luas[name] = tmp / f"{name}.lua"
        luas[name].write_text(lua(body))
    py = sys.executable
    ports = {k: free_port() for k in ("entry", "nocode", "bare", "bare_model")}
    serve = [py, "-m", "openscore", "serve", "--host", "127.0.0.1", "--workers", "1"]
    base = "http://127.0.0.1:{}"
    servers: dict[str, Server] = {}
    try:
        servers["entry"] = Server([*serve, "--entry-script", str(ROOT / "bench" / "trivial_score.py"), "--port",
                                   str(ports["entry"])], base.format(ports["entry"]) + "/readyz", tmp / "entry.log")
        servers["nocode"] = Server([*serve, "--model", str(model), "--port", str(ports["nocode"])],
                                   base.format(ports["nocode"]) + "/readyz", tmp / "nocode.log")
        servers["bare"] = Server([py, str(ROOT / "bench" / "bare_aiohttp.py"), str(ports["bare"])],
                                 base.format(ports["bare"]) + "/score", tmp / "bare.log", ready_status=405)
        servers["bare_model"] = Server([py, str(ROOT / "bench" / "bare_v2_aiohttp.py"), str(ports["bare_model"]),
                                        str(model)], base.format(ports["bare_model"]) + "/v2/health/ready",
                                       tmp / "bare_model.log")
        # (row, server, path, lua)
        figures = [
            ("openscore /score (entry script)", "entry", "/score", "score"),
            ("bare /score", "bare", "/score", "score"),
            ("openscore no-code /score", "nocode", "/score", "nocode"),
            ("bare /score + onnxruntime", "bare_model", "/score", "nocode"),
            ("openscore V2 infer", "nocode", "/v2/models/add1/infer", "v2"),
            ("bare V2 + onnxruntime", "bare_model", "/v2/models/add1/infer", "v2"),
        ]
        print(f"trivial model x + 1 on [1, 4]; 16 in flight; {seconds:.0f} s per figure, {repeats} repeats; "
              f"servers on core 0, wrk on core 1; load avg {os.getloadavg()[0]:.2f}", flush=True)
        for _row, key, path, lk in figures:  # warm up
            wrk(base.format(ports[key]) + path, str(luas[lk]), 16, 1)
        got: dict[str, list[float]] = {row: [] for row, *_ in figures}
        for rep in range(repeats):
            order = figures if rep % 2 == 0 else figures[::-1]
            for row, key, path, lk in order:
                r = measure(servers[key], base.format(ports[key]) + path, str(luas[lk]), seconds)
                if r["errors"]:
                    print(f"  {row}: {r['errors']} non-2xx responses", flush=True)
                got[row].append(r["cpu_us"])
                print(f"  rep {rep + 1} {row:34s} {r['cpu_us']:7.1f} CPU-µs/req {r['rps']:8.0f} req/s", flush=True)
    finally:
        for s in servers.values():
            s.stop()
    med = {row: statistics.median(v) for row, v in got.items()}
    ok_all = True
    print()
    print(f"{'openscore':34s} {'CPU-µs':>8s}   {'bare':28s} {'CPU-µs':>8s} {'ratio':>7s}  verdict")
    for (row, *_), (bare_row, *_), kind in zip(figures[::2], figures[1::2], ("score", "score", "v2")):
        ratio = med[row] / med[bare_row]
        ok = ratio <= RATIO_TARGET
        ok_all &= ok
        absolute = ABSOLUTE_TARGET[kind]
        print(f"{row:34s} {med[row]:8.1f}   {bare_row:28s} {med[bare_row]:8.1f} {ratio:6.2f}x  "
              f"{'PASS' if ok else 'FAIL'} (<= {RATIO_TARGET}x; absolute {med[row]:.0f} "
              f"{'<=' if med[row] <= absolute else '>'} {absolute:.0f})")
    print(f"{'PASS' if ok_all else 'FAIL'}: every openscore path within {RATIO_TARGET}x of its bare handler")
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
