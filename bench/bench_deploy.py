"""How long the deployer takes on the embedded local target (issue 11's performance figures).

    python bench/bench_deploy.py [--runs 3] [--services 200] [--keep]

Prints, for the scikit-learn sample (entry_scripts/sklearn_json), each as the `openscore` CLI's wall time (a
real process, start-up included) and as the in-process call's time (openscore.deployer.lifecycle):

- `model deploy` to Healthy with a cached environment: an inference config without packages (the current
  interpreter) and one whose pip environment was built before (its venv reused); target <= 5 s;
- `model deploy` to Healthy with a new environment (a pip package, `six`, from the configured index; each run
  spells it differently, `six>=1.N`, so its hash and venv are new): the total, the venv build alone (pip
  included, from the build marker) and the rest; target: the build plus <= 5 s;
- `service list` with 200 services: 1 deployed for real, the other 199 written through the deployer's own
  store (ServiceManager._save, the row a deploy writes, copied from the real one) rather than 199 real
  deploys. `list` runs the same code for each row (one database read for all, one router call for every
  state); the copies are not in the router, so they show Unhealthy ("the router does not serve"), a branch
  as cheap as the Healthy one. Target <= 0.3 s.
- the CLI's start-up alone (`openscore --version`, wall and CPU), the slowest imports of `openscore service
  list` (`python -X importtime`), and the sample's own import cost (`import joblib, sklearn.linear_model`, what
  its init() does first), so a figure can be split into start-up, openscore's work and the entry script's;
- where each kind of deploy's time goes, from the router's and the replica's log lines: the router has the
  service, the replica's first line (its interpreter and `openscore serve` imported), listening, the worker
  ready (init() done), the command back. Each measured deploy creates a new service (deleted after, not timed).

On a shared machine the figures move with its load: run it on an idle one, and read the CPU figures beside
the wall times.

Everything runs in a temporary workspace (never ~/.openscore); the router it starts is stopped by its pid.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "entry_scripts" / "sklearn_json" / "azureml-models" / "sklearn_json" / "1" / "model.pkl"
SCORE_PY = ROOT / "entry_scripts" / "sklearn_json" / "score.py"
DATA = {"data": [[0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.020, -0.018]]}
LOCAL_DC = {"computeType": "local", "numReplicas": 1}


CPU = {"last": 0.0}   # user+sys seconds of the last `cli()` process


def cli(ws: Path, *args: str, timeout: float = 600) -> tuple[float, str]:
    """`openscore ARGS` as a real process on the workspace: (wall seconds, stdout); its CPU seconds go to
    CPU["last"]. Fails loudly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZUREML_", "AML_", "OPENSCORE_"))}
    env["OPENSCORE_WORKSPACE"] = str(ws)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "openscore", *args], capture_output=True, text=True, env=env,
                       timeout=timeout, cwd=ws.parent)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU["last"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode != 0:
        raise SystemExit(f"openscore {' '.join(args)} failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
    return wall, r.stdout


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, indent=1))
    return path


def inference_config(folder: Path, name: str, pip: Sequence[str] = ()) -> Path:
    doc: dict[str, Any] = {"entryScript": str(SCORE_PY)}
    if pip:
        doc["environment"] = {"name": name, "python": {"condaDependencies": {
            "dependencies": ["python=3.11", {"pip": list(pip)}]}}}
    return write_json(folder / f"{name}.inferenceconfig.json", doc)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def fmt(values: Sequence[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


class Bench:
    def __init__(self, ws: Path, runs: int):
        self.ws, self.runs = ws, runs
        self.files = ws.parent / "files"
        self.files.mkdir(parents=True, exist_ok=True)
        self.dc = write_json(self.files / "deploymentconfig.json", LOCAL_DC)
        self.rows: list[tuple[str, str, str, str]] = []   # figure, how, seconds, target
        self.breakdowns: dict[str, list[dict[str, float | None]]] = {}   # kind of deploy -> one per deploy
        self.kind = ""
        self.serial = 0

    def add(self, figure: str, how: str, values: Sequence[float], target: str) -> None:
        self.rows.append((figure, how, fmt(values), target))
        print(f"  {figure} [{how}]: {fmt(values)} s", flush=True)

    # ------------------------------------------------------------------ deploys
    # Each measured deploy creates a new service and deletes it afterwards (not timed): `--overwrite` of a
    # running service is not what the figure is about, and it can be reported Failed (see the report).
    def cli_deploy(self, ic: Path) -> float:
        self.serial += 1
        service = f"bench-{self.serial}"
        t0 = time.time()
        wall, out = cli(self.ws, "model", "deploy", "-n", service, "-m", "bench-model:1", "--ic", str(ic),
                        "--dc", str(self.dc))
        doc = json.loads(out[out.index("\n{") + 1:] if not out.startswith("{") else out)
        if doc["state"] != "Healthy":
            raise SystemExit(f"{service} is {doc['state']} after deploy:\n{out}")
        self.breakdown(service, t0, t0 + wall, cpu=CPU["last"])
        cli(self.ws, "service", "delete", "-n", service)
        return wall

    def api_deploy(self, ic_path: Path) -> float:
        from openscore.deployer.deployment_config import load_deployment_config
        from openscore.deployer.inference_config import load_inference_config
        from openscore.deployer.lifecycle import ServiceManager
        from openscore.deployer.workspace import Workspace

        self.serial += 1
        service = f"bench-{self.serial}"

        def quiet(_line: str) -> None:
            pass

        def deploy() -> str:
            ws = Workspace(self.ws)
            try:
                mgr = ServiceManager(ws)
                model = ws.models.resolve("bench-model:1")
                mgr.deploy(service, [model], load_inference_config(ic_path), load_deployment_config(self.dc),
                           log=quiet)
                return mgr.wait(service, timeout_s=600, log=quiet).state
            finally:
                ws.close()
        t0 = time.time()
        seconds, state = timed(deploy)
        if state != "Healthy":
            raise SystemExit(f"{service} is {state} after an in-process deploy")
        self.breakdown(service, t0, t0 + seconds)
        cli(self.ws, "service", "delete", "-n", service)
        return seconds

    def breakdown(self, service: str, start: float, end: float, cpu: float | None = None) -> None:
        """Where one deploy's time went, from the replica's log (UTC timestamps to the millisecond)."""
        logs = sorted((self.ws / "router" / "logs" / service).glob("*/*.log"))
        if not logs:
            return
        marks: dict[str, float] = {}
        init_s = None
        for line in (self.ws / "router" / "router.log").read_text(errors="replace").splitlines():
            ts = _stamp(line)
            if ts is not None and ts >= start - 1 and f"applied service {service} at revision" in line:
                marks["the router has it (PUT applied)"] = ts
                break
        for line in logs[0].read_text(errors="replace").splitlines():
            ts = _stamp(line)
            if ts is None:
                continue
            marks.setdefault("first log line (supervisor imported)", ts)
            if "Listening on" in line:
                marks.setdefault("listening (workers forked)", ts)
            ready = re.search(r"ready: init\(\) took ([\d.]+) s", line)
            if ready:
                marks.setdefault("worker ready", ts)
                init_s = float(ready.group(1))
        row: dict[str, float | None] = {"until " + k: round(v - start, 3) for k, v in marks.items()}
        row |= {"init() alone": init_s, "until the command returned": round(end - start, 3),
                "the deploy command's own CPU (user+sys)": cpu}
        self.breakdowns.setdefault(self.kind, []).append(row)

    def print_breakdowns(self) -> None:
        """Per kind of deploy, the median seconds from the deploy's start to each mark."""
        kinds = list(self.breakdowns)
        if not kinds:
            return
        keys = list(dict.fromkeys(k for runs in self.breakdowns.values() for b in runs for k in b))
        print("\nwhere a deploy's time goes (median seconds from the deploy's start, from the router's and the "
              "replica's logs):")
        print(f"| mark | {' | '.join(kinds)} |")
        print(f"|---|{'---|' * len(kinds)}")
        for k in keys:
            cells = []
            for kind in kinds:
                vals = [float(v) for b in self.breakdowns[kind] if (v := b.get(k)) is not None]
                cells.append(f"{statistics.median(vals):.2f}" if vals else "-")
            print(f"| {k} | {' | '.join(cells)} |")

    def env_build_s(self, name: str) -> float:
        """The venv build time (pip included) the builder recorded for the environment named `name`."""
        for marker in (self.ws / "envs").glob("*/openscore-env.json"):
            doc = json.loads(marker.read_text())
            if doc.get("name") == name:
                return float(doc["build_s"])
        raise SystemExit(f"no built environment named {name}")

    # ------------------------------------------------------------------ the figures
    def deploys(self) -> None:
        ic_plain = inference_config(self.files, "plain")
        cli(self.ws, "model", "register", "-n", "bench-model", "-p", str(MODEL))
        print("first deploy (starts the workspace's router):", flush=True)
        wall, _ = cli(self.ws, "model", "deploy", "-n", "bench", "-m", "bench-model:1", "--ic", str(ic_plain),
                      "--dc", str(self.dc))
        self.add("first deploy, router start included", "CLI", [wall], "-")  # `bench` stays, for the list

        print("cached environment (no packages: this interpreter):", flush=True)
        self.kind = "no packages, CLI"
        self.add("deploy -> Healthy, no packages", "CLI", [self.cli_deploy(ic_plain) for _ in range(self.runs)],
                 "<= 5 s")
        self.kind = "no packages, in-process"
        self.add("deploy -> Healthy, no packages", "in-process",
                 [self.api_deploy(ic_plain) for _ in range(self.runs)], "<= 5 s")

        print("cached environment (a pip environment built before):", flush=True)
        ic_cached = inference_config(self.files, "cached-six", ["six"])
        self.kind = "(venv build)"
        self.cli_deploy(ic_cached)  # builds it once
        self.kind = "cached venv, CLI"
        self.add("deploy -> Healthy, cached venv", "CLI", [self.cli_deploy(ic_cached) for _ in range(self.runs)],
                 "<= 5 s")
        self.kind = "cached venv, in-process"
        self.add("deploy -> Healthy, cached venv", "in-process",
                 [self.api_deploy(ic_cached) for _ in range(self.runs)], "<= 5 s")

        print("new environment (six>=1.N: a new hash each run, so a new venv):", flush=True)
        for how, deploy, offset in (("CLI", self.cli_deploy, 0), ("in-process", self.api_deploy, 10)):
            totals, builds = [], []
            self.kind = f"new venv, {how}"
            for i in range(self.runs):
                name = f"new-{how}-{i}"
                totals.append(deploy(inference_config(self.files, name, [f"six>=1.{offset + i}"])))
                builds.append(self.env_build_s(name))
            self.add("deploy -> Healthy, new venv: total", how, totals, "build + 5 s")
            self.add("  of which the venv build (pip)", how, builds, "-")
            self.add("  the rest (total - build)", how, [t - b for t, b in zip(totals, builds, strict=True)],
                     "<= 5 s")

    def listing(self, services: int) -> None:
        from openscore.deployer.lifecycle import ServiceManager
        from openscore.deployer.workspace import Workspace

        ws = Workspace(self.ws)
        try:
            mgr = ServiceManager(ws)
            real = mgr._row("bench")
            assert real is not None, "the real service is missing"
            for i in range(services - 1):
                mgr._save(f"copy-{i:03d}", real["compute_type"], real["record"], real["state"],
                          models=real["record"]["versions"]["bench"]["models"])
        finally:
            ws.close()
        print(f"service list with {services} services (1 real, {services - 1} rows through the store):",
              flush=True)
        walls, table_walls, cpus = [], [], []
        for _ in range(self.runs + 2):
            wall, out = cli(self.ws, "service", "list")
            walls.append(wall)
            cpus.append(CPU["last"])
            assert len(json.loads(out)) == services, "service list did not list every service"
            table_walls.append(cli(self.ws, "service", "list", "-o", "table")[0])
        self.add(f"service list, {services} services", "CLI (json)", walls, "<= 0.3 s")
        self.add(f"service list, {services} services", "CLI (table)", table_walls, "<= 0.3 s")
        self.add(f"service list, {services} services", "CLI's CPU (user+sys)", cpus, "-")
        calls = []
        for _ in range(self.runs + 2):
            def listed() -> int:
                w = Workspace(self.ws)
                try:
                    return len(ServiceManager(w).list())
                finally:
                    w.close()
            seconds, n = timed(listed)
            assert n == services
            calls.append(seconds)
        self.add(f"service list, {services} services", "in-process (open + list)", calls, "<= 0.3 s")
        walls, cpus = [], []
        for _ in range(self.runs + 2):
            walls.append(cli(self.ws, "--version")[0])
            cpus.append(CPU["last"])
        self.add("openscore --version (start-up alone)", "CLI", walls, "-")
        self.add("openscore --version (start-up alone)", "CLI's CPU (user+sys)", cpus, "-")
        walls = []
        for _ in range(self.runs + 2):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import joblib, sklearn.linear_model"], check=True)
            walls.append(time.perf_counter() - t0)
        self.add("python -c 'import joblib, sklearn.linear_model' (the sample's init())", "process", walls, "-")

    def import_profile(self, top: int = 12) -> list[tuple[float, str]]:
        """The slowest imports (cumulative) of `openscore service list`, from python -X importtime."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AZUREML_", "AML_", "OPENSCORE_"))}
        env["OPENSCORE_WORKSPACE"] = str(self.ws)
        r = subprocess.run([sys.executable, "-X", "importtime", "-m", "openscore", "service", "list"],
                           capture_output=True, text=True, env=env, timeout=120)
        rows = []
        for line in r.stderr.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
            if m and len(m.group(2)) <= 3:   # top-level imports and their direct children
                rows.append((int(m.group(1)) / 1e6, m.group(2) + m.group(3)))
        rows.sort(reverse=True)
        return rows[:top]

    def report(self, imports: list[tuple[float, str]]) -> None:
        print("\n| figure | measured as | seconds (median of runs) | target |")
        print("|---|---|---|---|")
        for figure, how, seconds, target in self.rows:
            print(f"| {figure} | {how} | {seconds} | {target} |")
        print("\nslowest imports of `openscore service list` (cumulative seconds, -X importtime):")
        for seconds, name in imports:
            print(f"  {seconds:7.3f}  {name}")
        self.print_breakdowns()


def _stamp(line: str) -> float | None:
    """The UTC time a log line of openscore's format starts with (to the millisecond)."""
    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ", line)
    if not m:
        return None
    return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000


def stop_router(ws: Path) -> None:
    from openscore.deployer.local_router import LocalRouter
    LocalRouter(ws).stop()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="repetitions of each figure (3)")
    ap.add_argument("--services", type=int, default=200, help="services for the list figure (200)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary workspace (its path is printed)")
    args = ap.parse_args(argv)
    if not MODEL.is_file():
        subprocess.run([sys.executable, str(ROOT / "entry_scripts" / "make_models.py"), "sklearn_json"], check=True)
    tmp = Path(tempfile.mkdtemp(prefix="openscore-bench-deploy."))
    ws = tmp / "ws"
    print(f"workspace: {ws}", flush=True)
    bench = Bench(ws, args.runs)
    try:
        bench.deploys()
        bench.listing(args.services)
        imports = bench.import_profile()
    finally:
        stop_router(ws)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    bench.report(imports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
