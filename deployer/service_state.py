"""A service's Azure state, from what the router reports and what the replicas' log files say.

Azure's states (WebServiceState): Transitioning, Healthy, Unhealthy, Failed, Unschedulable. The router knows
replica phases (starting, ready, unready, crashed, stopping); a replica that crashed is replaced with a new
instance id at once, so a crash is seen here as a log file of this operation whose instance is no longer
listed. The log files are the local target's: `<router workspace>/logs/<service>/<version>/<replica id>.log`.

Only a replica this operation started can fail it: its last run began (the server's "serving <deployment>/..."
line, else its first line) at or after the operation's start, in one of the deployments it rolled out. A
replaced replica keeps writing its log while it drains (so a file's mtime says nothing), and a run that ended
by draining ("Worker N draining" ... "Server stopped") is a normal stop, never a crash. A replica id can be
reused after a router restart (the log is appended to), hence "last run" rather than the file's first line.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRANSITIONING, HEALTHY, UNHEALTHY, FAILED, UNSCHEDULABLE = (
    "Transitioning", "Healthy", "Unhealthy", "Failed", "Unschedulable")
STATES = (TRANSITIONING, HEALTHY, UNHEALTHY, FAILED, UNSCHEDULABLE)
FINAL = (HEALTHY, FAILED)
LOG_TAIL_LINES = 30
_READY_LINE = re.compile(r"Worker \d+ ready: init\(\) took")
_EXCEPTION_LINE = re.compile(r"^(\w+\.)*\w*(Error|Exception|Interrupt|Exit)\b.*")
# Azure's line format (openscore/log_lines.py), UTC: "2026-12-02 15:10:28,591 I [23580] name - message"
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")
_SERVING_LINE = re.compile(r" - openscore \S+ serving (\S+)")
_DRAINING_LINE = re.compile(r"Worker \d+ draining")
_BOOT_FAILED = ("failed to boot", "failed to initialize", "failed to load")


@dataclass(frozen=True)
class ReplicaLog:
    service: str
    version: str
    replica: str
    path: Path
    mtime: float
    running: bool


def replica_logs(log_root: Path, service: str, listed: set[str] | None = None) -> list[ReplicaLog]:
    """Every replica log of a service, oldest first; `listed` = replica ids the router reports now."""
    out: list[ReplicaLog] = []
    base = log_root / service
    if not base.is_dir():
        return out
    for vdir in sorted(p for p in base.iterdir() if p.is_dir()):
        for f in vdir.glob("*.log"):
            try:
                mtime = f.stat().st_mtime
            except OSError:
                continue
            rid = f.name[:-len(".log")]
            out.append(ReplicaLog(service, vdir.name, rid, f, mtime, listed is not None and rid in listed))
    out.sort(key=lambda r: (r.mtime, r.replica))
    return out


def tail(path: Path, lines: int) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:] if lines > 0 else []


def init_part(path: Path, limit: int) -> list[str]:
    """The lines up to the end of init(): through the first worker-ready line, else all (init never ended)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    out: list[str] = []
    for line in text.splitlines():
        out.append(line)
        if _READY_LINE.search(line):
            break
    return out[:limit] if limit > 0 else out


def exception_line(lines: list[str]) -> str | None:
    """The last `SomeError: message` line of a traceback in the log, if any."""
    for line in reversed(lines):
        s = line.strip()
        if _EXCEPTION_LINE.match(s) and ":" in s:
            return s
    return None


def line_time(line: str) -> float | None:
    """The epoch time of a log line's UTC timestamp (None for a line without one: print output, tracebacks)."""
    m = _STAMP.match(line)
    if m is None:
        return None
    try:
        return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) + int(m.group(2)) / 1000
    except ValueError:
        return None


@dataclass(frozen=True)
class LastRun:
    """The latest run of a replica in its log: when it started, what it served, how it ended."""
    started: float | None
    serving: str | None
    lines: list[str]

    @property
    def stopped_normally(self) -> bool:
        """Drained and stopped as the router stops a replica it replaces or scales away (not init failing)."""
        text = [ln for ln in self.lines if ln.strip()]
        return (bool(text) and "Server stopped" in text[-1] and any(_DRAINING_LINE.search(ln) for ln in text)
                and not any(b in ln for ln in text for b in _BOOT_FAILED))


def last_run(path: Path) -> LastRun:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return LastRun(None, None, [])
    start = 0
    for i in range(len(lines) - 1, -1, -1):
        if _SERVING_LINE.search(lines[i]):
            start = i
            break
    run = lines[start:]
    m = _SERVING_LINE.search(run[0]) if run else None
    started = next((t for t in map(line_time, run) if t is not None), None)
    return LastRun(started, m.group(1) if m else None, run)


def started_by_operation(log: ReplicaLog, since: float, deployments: set[str] | None) -> bool:
    """True when the replica's latest run began with the operation (at or after `since`, to the log's ms
    precision) and, when `deployments` is given, serves one of them (a run whose serving line is missing
    crashed before it: time alone decides)."""
    run = last_run(log.path)
    started = run.started if run.started is not None else log.mtime
    if started < int(since * 1000) / 1000:
        return False
    if deployments and run.serving is not None:
        parts = Path(run.serving).parts
        if not any(d in parts for d in deployments):
            return False
    return True


MTIME_SLACK_S = 1.0


def crashed_replicas(log_root: Path, service: str, listed: set[str], since: float,
                     deployments: set[str] | None = None) -> list[ReplicaLog]:
    """Replicas this operation started that are gone from the router's list without a normal stop."""
    out = []
    for rl in replica_logs(log_root, service, listed):
        # file times come from the kernel's coarse clock, a tick behind time.time(): the mtime is only a cheap
        # first filter, so allow it a second; the run's own start line decides (started_by_operation)
        if rl.running or rl.mtime < since - MTIME_SLACK_S or not started_by_operation(rl, since, deployments):
            continue
        if last_run(rl.path).stopped_normally:
            continue
        out.append(rl)
    return out


def listed_replicas(status: Mapping[str, Any]) -> set[str]:
    return {r["id"] for v in status.get("versions", {}).values() for r in v.get("replicas", [])}


def crash_error(service: str, crashed: list[ReplicaLog]) -> dict[str, Any]:
    """Azure's error object for replicas that crash at start (CrashLoopBackOff), with the exception and the
    last log lines of the latest crashed replica (Azure's users lose these: azure-docs#51226)."""
    last = crashed[-1]
    lines = tail(last.path, LOG_TAIL_LINES)
    exc = exception_line(lines)
    init_failed = any("failed to initialize" in ln or "failed to load" in ln or "failed to boot" in ln
                      for ln in lines)
    what = "init() failed" if init_failed else "the replica exited"
    message = (f"Your container application crashed ({what}"
               + (f": {exc}" if exc else "") + f"). {len(crashed)} replica start(s) failed; the last lines of "
               f"replica {last.replica}'s log ({last.path}):\n" + "\n".join(lines))
    return {"code": "KubernetesDeploymentFailed", "statusCode": 400, "message": "Kubernetes Deployment failed",
            "details": [{"code": "CrashLoopBackOff", "message": message}]}


def live_state(stored_state: str, status: Mapping[str, Any] | None, log_root: Path, service: str,
               since: float, deployments: set[str] | None = None) -> tuple[str, dict[str, Any] | None]:
    """(state, error) now. `stored_state`: the state the last finished operation left (Transitioning while
    one runs); `status`: the router's status of the service (None: the router does not know it or is down);
    `since`: when the current operation began (crashes before it belong to an older one); `deployments`:
    the deployment ids the service's versions run now (a replica of another one is not this operation's)."""
    if status is None:
        return UNHEALTHY, {"code": "ServiceNotRunning", "message": f"the router does not serve {service}: run "
                           "`openscore service show` (it starts the workspace's router) or redeploy"}
    versions: Mapping[str, Any] = status.get("versions", {})
    reasons = [r.get("reason", "") for v in versions.values() for r in v.get("replicas", [])]
    if any("unschedulable" in (x or "").lower() for x in reasons):
        return UNSCHEDULABLE, {"code": "PodUnschedulable", "message": next(x for x in reasons if x)}
    healthy = bool(versions)
    for v in versions.values():
        current = [r for r in v.get("replicas", []) if not r.get("outdated")]
        ready = sum(1 for r in current if r.get("phase") == "ready")
        if ready < max(1, int(v.get("desiredReplicas") or 0)):
            healthy = False
    if healthy:
        return HEALTHY, None
    listed = listed_replicas(status)
    crashed = crashed_replicas(log_root, service, listed, since, deployments)
    if stored_state in (TRANSITIONING, FAILED) and crashed:
        return FAILED, crash_error(service, crashed)
    if stored_state == TRANSITIONING:
        return TRANSITIONING, None
    why = "; ".join(sorted({x for x in reasons if x})) or "no replica is ready"
    return UNHEALTHY, {"code": "ReplicasNotReady", "message": why}
