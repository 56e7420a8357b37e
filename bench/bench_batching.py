"""Dynamic batching on a compute-heavy model with onnxruntime CPU: in-process and through the real server.

Prints, side by side in one run, for one MLP (default 1536 wide, 6 layers, 16 classes; --width/--layers):
  * direct onnxruntime at batch 1, 16 and 32 (the batch-32 rows/s is "the limit"; batch 16 is the most a closed
    loop of 16 callers can ever batch);
  * in-process (load_model + threads calling model.predict): batching off (max_batch_size=1) vs on (32),
    p50 with 1 caller and rows/s at 16 and 64 callers;
  * the real server, `openscore serve --model mlp.onnx --max-batch-size 32` vs `--max-batch-size 1` (128 slots
    both, both servers up at once), one row per request over keep-alive connections from wrk (closed loop) at
    1, 16 and 64 in flight, in three placements on the machine's cores:
      - shared: nothing pinned, onnxruntime's default threads; JSON (POST /score {"data": [[...]]}) and the Open
        Inference Protocol's binary tensor extension (V2 binary);
      - pinned: the whole server (event loop and one onnxruntime thread) on core 0, wrk on core 1 (V2 binary);
      - device core: the model's dispatcher thread, which runs onnxruntime with one thread, on core 0, the
        server's event loop and wrk on core 1 (V2 binary): the CPU analogue of an accelerator, whose compute
        does not compete with the HTTP work; this is how a replica with a few cores to spare runs.
    Pinned and device-core runs are judged against the limit of one onnxruntime thread on core 0.
    The 1-in-flight p50s alternate on and off in short rounds (median of the rounds), so drift on a shared
    machine does not land on one side.
  * CPU per request at 64 in flight (the server's threads, its dispatcher thread, wrk) and the rows/s the cores
    allow from it: where the HTTP work shares a core with onnxruntime, that bound, not batching, caps rows/s.
Targets (issue): with 1 in flight batching adds <= 5 % to p50 vs batching off; at 16+ in flight throughput
>= 1.5x unbatched and >= 70 % of the in-process batch-32 limit.

Why this model by default: on a 2-core machine the load generator, the HTTP server (one event loop) and
onnxruntime share the same cores, so every request's HTTP work (~150-250 us of CPU) is taken from the model.
The issue's example, a 1024x4 MLP, costs only ~100 us of CPU per row at batch 32, so there the server's
per-request cost, not batching, bounds rows/s; --width 1024 --layers 4 shows that case.
Usage: python bench/bench_batching.py [--seconds 3] [--width 1536 --layers 6] [--no-server] [--no-pin] (~4 min)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
from openscore.accelerators import load_model, sample_models  # noqa: E402

LUA = """wrk.method = "POST"
local f = io.open("%s", "rb")
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "%s"
%s
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format('WRKJSON {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "errors": %%d}\\n',
      summary.requests, summary.duration, latency:percentile(50),
      e.connect + e.read + e.write + e.status + e.timeout))
end
"""


# ------------------------------------------------------------------ in-process
def timed_loop(fn, seconds: float) -> list[float]:
    fn()
    lat, end = [], time.perf_counter() + seconds
    while (t := time.perf_counter()) < end:
        fn()
        lat.append(time.perf_counter() - t)
    return lat


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
    time.sleep(min(1.0, seconds * 0.3))  # warm up
    c0, t0 = sum(counts), time.perf_counter()
    time.sleep(seconds)
    c1, t1 = sum(counts), time.perf_counter()
    stop.set()
    for t in threads:
        t.join()
    return (c1 - c0) / (t1 - t0)


# ------------------------------------------------------------------ server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`openscore serve --model` in its own process group (only this PID's group is ever signalled)."""

    def __init__(self, model: str, max_batch_size: int, logdir: Path, pin: list[str] | None = None,
                 extra: list[str] | None = None):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENSCORE_", "AZUREML_", "AML_"))}
        self.log = logdir / f"serve-mbs{max_batch_size}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [*(pin or []), sys.executable, "-m", "openscore", "serve", "--model", model,
                 "--max-batch-size", str(max_batch_size),
                 # the same slots on and off, so 64 in flight never overflows the queue when batching is off
                 "--max-concurrent-requests", "128",
                 "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log", *(extra or [])],
                cwd=logdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def wait_ready(self, body: bytes, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log.read_text()[-2000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                c.request("POST", "/score", body=body, headers={"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def wrk(port: int, lua: Path, path: str, conns: int, seconds: float, pin: list[str] | None = None) -> dict:
    out = subprocess.run([*(pin or []), "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(seconds))}s", "--latency",
                          "--timeout", "10s", "-s", str(lua), f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    r = json.loads(line[len("WRKJSON "):])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def _cpu_ticks(stat_path: str) -> int:
    """utime + stime from a /proc .../stat file (a process's counts all its threads)."""
    return sum(map(int, Path(stat_path).read_text().rsplit(")", 1)[1].split()[11:13]))


def server_pids(server: Server) -> list[str]:
    return subprocess.run(["pgrep", "-g", str(server.proc.pid)], capture_output=True, text=True).stdout.split()


def dispatcher_tasks(pid: str) -> list[str]:
    """/proc task folders of a process's model dispatcher threads (OS name osc-batch*: accelerators.os_threads)."""
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if Path(f"/proc/{pid}/task/{tid}/comm").read_text().startswith("osc-batch"):
                found.append(f"/proc/{pid}/task/{tid}")
        except OSError:
            continue
    return found


def pin_dispatchers(server: Server, cpu: int) -> None:
    """Pin the server's model dispatcher threads to `cpu`."""
    tasks = [t for pid in server_pids(server) for t in dispatcher_tasks(pid)]
    if not tasks:
        raise RuntimeError("no model dispatcher thread found to pin")
    for task in tasks:
        os.sched_setaffinity(int(Path(task).name), {cpu})


def server_cpu_s(server: Server) -> tuple[float, float]:
    """CPU seconds used so far by the server's processes, and by its model dispatcher threads among them."""
    total = dispatch = 0
    for pid in server_pids(server):
        try:
            total += _cpu_ticks(f"/proc/{pid}/stat")
            dispatch += sum(_cpu_ticks(f"{task}/stat") for task in dispatcher_tasks(pid))
        except OSError:
            continue
    tick = os.sysconf("SC_CLK_TCK")
    return total / tick, dispatch / tick


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def rows_per_s(sess, x: np.ndarray, seconds: float) -> float:
    return len(x) / statistics.median(timed_loop(lambda: sess.run(None, {"x": x}), seconds))


# ------------------------------------------------------------------ main
class Placement:
    """Where the server, its dispatcher thread and wrk run, and the limit its figures are judged against."""

    def __init__(self, name: str, title: str, formats: tuple[str, ...], limit: float, ceiling16: float,
                 server_pin: list[str] | None = None, wrk_pin: list[str] | None = None,
                 dispatcher_cpu: int | None = None, extra: list[str] | None = None):
        self.name, self.title, self.formats, self.limit, self.ceiling16 = name, title, formats, limit, ceiling16
        self.server_pin, self.wrk_pin, self.dispatcher_cpu, self.extra = server_pin, wrk_pin, dispatcher_cpu, extra
        self.p50: dict = {}  # (fmt, label) -> ms
        self.rate: dict = {}  # (fmt, label, conns) -> rows/s
        self.cpu: dict = {}  # fmt -> CPU µs per request at 64 in flight, batching on: server, dispatcher, wrk

    def bound(self, fmt: str) -> float:
        """Rows/s the cores allow at 64 in flight, from the CPU each request took where it ran."""
        server, dispatch, load = (v / 1e6 for v in self.cpu[fmt])
        if self.dispatcher_cpu is not None:  # dispatcher alone on one core; the rest of the server with wrk
            return min(1 / dispatch, 1 / (server - dispatch + load))
        if self.server_pin:  # the server on one core, wrk on the other
            return min(1 / server, 1 / load)
        return (os.cpu_count() or 1) / (server + load)


def measure(pl: Placement, model: str, tmp: Path, body: bytes, s: float, rounds: int) -> None:
    requests = {"json": (tmp / "post-json.lua", "/score"), "v2": (tmp / "post-v2.lua", "/v2/models/mlp/infer")}
    servers = {label: Server(model, mbs, tmp, pin=pl.server_pin, extra=pl.extra) for label, mbs in (("off", 1),
                                                                                                    ("on", 32))}
    try:
        for srv in servers.values():
            srv.wait_ready(body)
            if pl.dispatcher_cpu is not None:
                pin_dispatchers(srv, pl.dispatcher_cpu)
        for fmt in pl.formats:
            lua, url = requests[fmt]
            for srv in servers.values():
                wrk(srv.port, lua, url, 16, min(2.0, s), pl.wrk_pin)  # warm up
            p50s: dict = {"off": [], "on": []}
            for _ in range(rounds):  # alternate: drift on a shared machine lands on both sides
                for label, srv in servers.items():
                    p50s[label].append(wrk(srv.port, lua, url, 1, 1, pl.wrk_pin)["p50_us"] / 1e3)
            for label in servers:
                pl.p50[fmt, label] = statistics.median(p50s[label])
            for label, srv in servers.items():
                for conns in (16, 64):
                    before, load0 = server_cpu_s(srv), children_cpu_s()
                    r = wrk(srv.port, lua, url, conns, s, pl.wrk_pin)
                    after, load1 = server_cpu_s(srv), children_cpu_s()
                    if label == "on" and conns == 64:
                        pl.cpu[fmt] = tuple((b - a) / r["requests"] * 1e6 for a, b in
                                            ((before[0], after[0]), (before[1], after[1]), (load0, load1)))
                    if r["errors"]:
                        print(f"  warning: {pl.name} {fmt} batching {label}, {conns} in flight: {r['errors']} "
                              "wrk errors")
                    pl.rate[fmt, label, conns] = r["rps"]
    finally:
        for srv in servers.values():
            srv.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--width", type=int, default=1536)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds for the 1-in-flight p50s")
    ap.add_argument("--no-server", action="store_true", help="in-process figures only")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="skip the pinned and device-core placements")
    args = ap.parse_args()
    s = args.seconds
    tmp = Path(tempfile.mkdtemp(prefix="bench-batching-"))
    path = str(sample_models.save(sample_models.mlp(args.width, args.width, args.layers, 16), tmp / "mlp.onnx"))
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, args.width)).astype(np.float32)
    x16 = rng.standard_normal((16, args.width)).astype(np.float32)
    x32 = rng.standard_normal((32, args.width)).astype(np.float32)
    print(f"model: MLP {args.width} wide x {args.layers} layers ({args.width * args.width * args.layers / 1e6:.1f} M "
          f"weights), onnxruntime {ort.__version__} CPU, {os.cpu_count()} CPUs; {s:.0f} s per figure")
    print(f"note: on {os.cpu_count()} cores the callers (threads or wrk), the HTTP server and onnxruntime share "
          f"the same cores; every figure below includes that contention")

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    direct_p50 = statistics.median(timed_loop(partial(sess.run, None, {"x": x1}), s))
    batch16, limit = rows_per_s(sess, x16, s), rows_per_s(sess, x32, s)
    del sess
    can_pin = bool(args.pin and not args.no_server and (os.cpu_count() or 1) >= 2 and shutil.which("taskset")
                   and os.path.isdir("/proc/self/task"))
    limit1 = batch16_1 = 0.0
    if can_pin:  # one onnxruntime thread on core 0: the limit the pinned placements are judged against
        mask = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {0})
        try:
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            one = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            batch16_1, limit1 = rows_per_s(one, x16, s), rows_per_s(one, x32, s)
            del one
        finally:
            os.sched_setaffinity(0, mask)

    inproc: dict = {}
    models = {label: load_model(path, "cpu", max_batch_size=mbs, name=f"bench-{label}", metrics=False)
              for label, mbs in (("off", 1), ("on", 32))}
    try:
        lat: dict = {"off": [], "on": []}
        for _ in range(args.rounds):  # alternate, as for the server
            for label, m in models.items():
                lat[label] += timed_loop(partial(m.predict, x1), s / args.rounds)
        for label, m in models.items():
            inproc[label, 1] = statistics.median(lat[label])
            for callers in (16, 64):
                inproc[label, callers] = closed_loop(partial(m.predict, x1), callers, s)
    finally:
        for m in models.values():
            m.close()

    placements: list[Placement] = []
    server_note = ""
    if args.no_server:
        server_note = "server: skipped (--no-server)"
    elif shutil.which("wrk") is None:
        server_note = "server: skipped, wrk not found (apt-get install wrk)"
    else:
        body = json.dumps({"data": x1.tolist()}, separators=(",", ":")).encode()
        (tmp / "score.json").write_bytes(body)
        (tmp / "post-json.lua").write_text(LUA % (tmp / "score.json", "application/json", ""))
        # the Open Inference Protocol's binary tensor extension: a JSON header, then the raw float32 row
        header = json.dumps({"inputs": [{"name": "x", "shape": list(x1.shape), "datatype": "FP32",
                                         "parameters": {"binary_data_size": x1.nbytes}}],
                             "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
        (tmp / "infer.bin").write_bytes(header + x1.tobytes())
        (tmp / "post-v2.lua").write_text(LUA % (tmp / "infer.bin", "application/octet-stream",
                                                f'wrk.headers["Inference-Header-Content-Length"] = "{len(header)}"'))
        placements.append(Placement("shared", "shared: nothing pinned, onnxruntime's default threads",
                                    ("json", "v2"), limit, batch16))
        if can_pin:
            one = ["--intra-op-threads", "1"]
            placements.append(Placement(
                "pinned", "pinned: server (event loop + 1 onnxruntime thread) on core 0, wrk on core 1",
                ("v2",), limit1, batch16_1, ["taskset", "-c", "0"], ["taskset", "-c", "1"], extra=one))
            placements.append(Placement(
                "device core", "device core: dispatcher thread (1 onnxruntime thread) on core 0, event loop and "
                "wrk on core 1", ("v2",), limit1, batch16_1, ["taskset", "-c", "1"], ["taskset", "-c", "1"],
                dispatcher_cpu=0, extra=one))
        for pl in placements:
            measure(pl, path, tmp, body, s, args.rounds)

    # ------------------------------------------------------------------ report
    print()
    print(f"direct onnxruntime batch 1 : {1 / direct_p50:8.0f} rows/s  p50 {direct_p50 * 1e3:7.3f} ms")
    print(f"direct onnxruntime batch 16: {batch16:8.0f} rows/s  ({batch16 / limit * 100:.0f} % of the limit: the "
          f"most 16 callers in a closed loop can reach)")
    print(f"direct onnxruntime batch 32: {limit:8.0f} rows/s  (the batch-32 limit)")
    if limit1:
        print(f"1 thread on core 0: batch 16 {batch16_1:.0f} rows/s ({batch16_1 / limit1 * 100:.0f} %), batch 32 "
              f"{limit1:.0f} rows/s (the limit of the pinned and device-core placements)")
    print()
    titles = {"json": "JSON POST /score", "v2": "V2 binary infer"}
    columns = [("in-process (threads)", {(lbl, n): v for (lbl, n), v in inproc.items()},
                {lbl: inproc[lbl, 1] * 1e3 for lbl in ("off", "on")})]
    for pl in placements:
        for f in pl.formats:
            columns.append((f"{pl.name}: {titles[f]}", {(lbl, n): pl.rate[f, lbl, n] for lbl in ("off", "on")
                                                           for n in (16, 64)},
                            {lbl: pl.p50[f, lbl] for lbl in ("off", "on")}))
    for block in range(0, len(columns), 3):
        cols = columns[block:block + 3]
        print(f"{'':22s}" + "".join(f"{c[0]:>30s}" for c in cols))
        print(f"{'':22s}" + f"{'batching off':>18s}{'on':>12s}" * len(cols))
        print(f"{'1 in flight, p50 ms':22s}" + "".join(f"{c[2]['off']:18.3f}{c[2]['on']:12.3f}" for c in cols))
        for n in (16, 64):
            print(f"{f'{n} in flight, rows/s':22s}" + "".join(f"{c[1]['off', n]:18.0f}{c[1]['on', n]:12.0f}"
                                                              for c in cols))
        print()
    if server_note:
        print(server_note)
    for pl in placements[1:]:
        print(pl.title)

    if placements:
        print("CPU per request at 64 in flight, batching on (server: all its threads; dispatcher: the thread that "
              "runs onnxruntime and the batches), and what the cores allow from it:")
        for pl in placements:
            per_row = (os.cpu_count() or 1) / pl.limit if pl.dispatcher_cpu is None and not pl.server_pin \
                else 1 / pl.limit
            for f in pl.formats:
                server, dispatch, load = pl.cpu[f]
                bound = pl.bound(f)
                print(f"  {pl.name} {f}: server {server:4.0f} us (dispatcher {dispatch:4.0f}), wrk {load:3.0f} us; "
                      f"the model alone needs {per_row * 1e6:3.0f} us per row at its limit -> at most "
                      f"{bound:5.0f} rows/s = {bound / pl.limit * 100:3.0f} % of the limit (measured "
                      f"{pl.rate[f, 'on', 64] / pl.limit * 100:3.0f} %)")
    print()
    print("targets: 1 in flight p50 +<= 5 %; 16/64 in flight >= 1.5x unbatched and >= 70 % of the batch-32 limit "
          "(in brackets: share of the batch-16 rate, the most a closed loop of 16 can reach)")
    verdicts = []

    def judge(where: str, p50: dict, rate: dict, lim: float, ceiling16: float) -> None:
        over = (p50["on"] / p50["off"] - 1) * 100
        ok = over <= 5
        verdicts.append(ok)
        print(f"{where:23s}  1 in flight: p50 {over:+5.1f} % with batching         -> {'met' if ok else 'NOT met'}")
        for n in (16, 64):
            x, pct = rate["on", n] / rate["off", n], rate["on", n] / lim * 100
            ok = x >= 1.5 and pct >= 70
            verdicts.append(ok)
            extra = f" [{rate['on', n] / ceiling16 * 100:3.0f} %]" if n == 16 else " " * 8
            print(f"{where:23s} {n:2d} in flight: {x:4.2f}x unbatched, {pct:3.0f} % of the limit{extra} -> "
                  f"{'met' if ok else 'NOT met'}")
    judge("in-process", columns[0][2], columns[0][1], limit, batch16)
    k = 1
    for pl in placements:
        for f in pl.formats:
            judge(f"{pl.name} {f}", columns[k][2], columns[k][1], pl.limit, pl.ceiling16)
            k += 1
    print(f"overall: {'all targets met' if all(verdicts) else 'some targets NOT met'} in this run "
          f"({os.cpu_count()} CPUs)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
