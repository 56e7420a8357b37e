"""The embedded compute target: replicas are `python -m openscore serve` processes on loopback ports.

What a replica runs comes from `replica_plan()` (router/replica_plan.py), as for every target; this module
only turns a plan into a process: the plan's argv, its environment over the router's own (minus the
variables that would configure the replica behind the plan's back), its working dir and port.

Each replica instance has its own supervising task: spawn on a free port, probe `GET /slots` until ready
(and keep probing, so a replica that turns unready leaves routing), and on an unexpected exit report it
and start a replacement (a new instance id, like a new pod) with exponential back-off, so a script whose
`init()` fails does not spin. Stopping is SIGTERM to the replica's process group (the runtime drains its
in-flight requests), then SIGKILL after the grace period.

A replica never outlives its router as an unguarded server: it listens on 127.0.0.1 only, answers only
requests that carry its own random secret (`OPENSCORE_REPLICA_SECRET`, sent by the router as
`x-openscore-replica-secret`), gets SIGKILL when the router dies (PR_SET_PDEATHSIG, set in the child
before exec, with a re-check that the router is still its parent), and runs in its own process group. Each
replica's PID and kernel start time are recorded in `<workspace>/run/replicas/`; a router starting on a
workspace first stops what a killed predecessor left there (only a process whose start time still matches
the record: a reused PID is never signalled).
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import aiohttp

from openscore.router.config import VersionSpec
from openscore.router.replica_plan import ReplicaPlan, replica_plan
from openscore.router.targets import (
    CRASHED,
    READY,
    STARTING,
    STOPPING,
    UNREADY,
    ChangeCallback,
    ComputeTarget,
    ReplicaInfo,
    VersionKey,
)

log = logging.getLogger("openscore.router.target")
_STRIP_ENV = ("AZUREML_", "AML_", "SCORING_", "WORKER_", "SERVICE_", "OPENSCORE_", "PROMETHEUS_MULTIPROC")
SECRET_ENV = "OPENSCORE_REPLICA_SECRET"
_PR_SET_PDEATHSIG = 1
# resolved now, in the router, so the child between fork and exec only makes one foreign call
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def die_with_parent(parent: int) -> Callable[[], None]:
    """A preexec function: the child gets SIGKILL when the router (the thread running the event loop)
    dies, and exits at once if the router died before that was in place. What a replica computes for a
    dead router nobody can receive, so there is nothing to drain."""
    def child() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)
    return child


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), None if it is gone;
    with the PID it names one process for good (a PID is reused, a (PID, start) pair is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        return int(fields[19])  # field 22; fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


class ReplicaRecords:
    """`<workspace>/run/replicas/<pid>.json`: the replicas this router started, so a successor can stop
    them if this router is killed before it could."""

    def __init__(self, workspace: str | Path):
        self.dir = Path(workspace) / "run" / "replicas"

    def add(self, pid: int, rid: str, port: int) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        doc = {"pid": pid, "start": start_ticks(pid), "replica": rid, "port": port, "router": os.getpid()}
        tmp = self.dir / f".{pid}.tmp"
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.dir / f"{pid}.json")

    def remove(self, pid: int) -> None:
        (self.dir / f"{pid}.json").unlink(missing_ok=True)

    def stop_leftovers(self, wait_s: float = 5.0) -> list[int]:
        """SIGKILL the process group of every recorded replica still running as the same process; returns
        their PIDs. Records of processes that are gone (or a PID now used by another process) are dropped."""
        stopped = []
        for path in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            try:
                doc = json.loads(path.read_text())
                pid, start = int(doc["pid"]), doc.get("start")
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.error("ignoring the unreadable replica record %s: %s", path, e)
                path.unlink(missing_ok=True)
                continue
            if start is not None and start_ticks(pid) == start:
                log.warning("stopping replica %s (pid %d, port %s) left running by a router that did not stop "
                            "it", doc.get("replica"), pid, doc.get("port"))
                try:
                    pgid = os.getpgid(pid)
                    if pgid == pid:
                        os.killpg(pid, signal.SIGKILL)
                    else:
                        os.kill(pid, signal.SIGKILL)
                    stopped.append(pid)
                except (ProcessLookupError, PermissionError):
                    pass
            path.unlink(missing_ok=True)
        deadline = time.monotonic() + wait_s
        while any(start_ticks(p) is not None and _alive(p) for p in stopped) and time.monotonic() < deadline:
            time.sleep(0.02)
        return stopped


def _alive(pid: int) -> bool:
    """Running and not a zombie (a killed process not yet reaped by its new parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:stat.rfind(")") + 3] != "Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class _Instance:
    info: ReplicaInfo
    fingerprint: tuple
    proc: asyncio.subprocess.Process | None = None
    task: asyncio.Task | None = None
    stop_requested: bool = False


@dataclass
class _Version:
    key: VersionKey
    spec: VersionSpec
    wanted: int
    instances: dict[str, _Instance] = field(default_factory=dict)
    failures: int = 0               # consecutive crashes, for back-off
    next_start_at: float = 0.0


class LocalProcessTarget(ComputeTarget):
    def __init__(self, workspace: str | Path, *, probe_interval_s: float = 0.1, ready_probe_interval_s: float = 1.0,
                 graceful_s: float = 10.0, max_backoff_s: float = 10.0, python: str = sys.executable):
        self.log_dir = Path(workspace) / "logs"
        self.probe_interval_s = probe_interval_s
        self.ready_probe_interval_s = ready_probe_interval_s
        self.graceful_s = graceful_s
        self.max_backoff_s = max_backoff_s
        self.python = python
        self.records = ReplicaRecords(workspace)
        self._versions: dict[VersionKey, _Version] = {}
        self._seq = itertools.count(1)
        self._on_change: ChangeCallback = lambda key: None
        self._session: aiohttp.ClientSession | None = None
        self._reconciler: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._kicks: dict[str, asyncio.Event] = {}

    # ------------------------------------------------------------------ interface
    async def start(self, on_change: ChangeCallback) -> None:
        await asyncio.to_thread(self.records.stop_leftovers)  # before any replica of ours exists
        self._on_change = on_change
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0),
                                              connector=aiohttp.TCPConnector(limit=0, force_close=True))
        self._reconciler = asyncio.create_task(self._reconcile_loop(), name="local-target-reconcile")

    async def stop(self) -> None:
        self._stopping = True
        if self._reconciler is not None:
            self._reconciler.cancel()
            await asyncio.gather(self._reconciler, return_exceptions=True)
        insts = [i for v in self._versions.values() for i in v.instances.values()]
        await asyncio.gather(*(self._stop_instance(i) for i in insts), return_exceptions=True)
        self._versions.clear()
        if self._session is not None:
            await self._session.close()

    async def deploy(self, key: VersionKey, spec: VersionSpec, replicas: int) -> None:
        v = self._versions.get(key)
        if v is None:
            self._versions[key] = _Version(key, spec, replicas)
        else:
            if spec.launch_fingerprint() != v.spec.launch_fingerprint():
                v.failures, v.next_start_at = 0, 0.0
            v.spec, v.wanted = spec, replicas
            fp = spec.launch_fingerprint()
            changed = False
            for inst in v.instances.values():
                outdated = inst.fingerprint != fp
                if outdated != inst.info.outdated:
                    inst.info = replace(inst.info, outdated=outdated)
                    changed = True
            if changed:
                self._on_change(key)
        self._wake.set()

    async def scale(self, key: VersionKey, replicas: int) -> None:
        v = self._versions.get(key)
        if v is not None and v.wanted != replicas:
            v.wanted = replicas
            self._wake.set()

    async def remove_replica(self, key: VersionKey, replica_id: str) -> None:
        v = self._versions.get(key)
        inst = v.instances.get(replica_id) if v else None
        if v is None or inst is None:
            return
        if not inst.info.outdated and v.wanted > 0:
            v.wanted -= 1
        await self._stop_instance(inst)

    async def delete(self, key: VersionKey) -> None:
        v = self._versions.pop(key, None)
        if v is not None:
            await asyncio.gather(*(self._stop_instance(i) for i in list(v.instances.values())),
                                 return_exceptions=True)
            self._on_change(key)

    def replicas(self, key: VersionKey) -> list[ReplicaInfo]:
        v = self._versions.get(key)
        return [i.info for i in v.instances.values()] if v else []

    def wanted(self, key: VersionKey) -> int:
        v = self._versions.get(key)
        return v.wanted if v else 0

    def keys(self) -> set[VersionKey]:
        return set(self._versions)

    def report_unreachable(self, replica_id: str) -> None:
        ev = self._kicks.get(replica_id)
        if ev is not None:
            ev.set()

    def pids(self) -> dict[str, int]:
        """Replica id -> process id (for tests and `status`)."""
        return {i.info.id: i.proc.pid for v in self._versions.values() for i in v.instances.values()
                if i.proc is not None and i.proc.returncode is None}

    # ------------------------------------------------------------------ reconcile: count current instances
    async def _reconcile_loop(self) -> None:
        while True:
            now = time.monotonic()
            next_wake = 1.0
            for v in list(self._versions.values()):
                fp = v.spec.launch_fingerprint()
                current = [i for i in v.instances.values() if i.fingerprint == fp and not i.stop_requested]
                missing = v.wanted - len(current)
                if missing > 0:
                    if now >= v.next_start_at:
                        for _ in range(missing):
                            self._spawn(v)
                    else:
                        next_wake = min(next_wake, v.next_start_at - now)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.01, next_wake))
            except TimeoutError:
                pass

    def _spawn(self, v: _Version) -> None:
        rid = f"{v.key[0]}.{v.key[1]}.{next(self._seq)}"
        port = free_port()
        info = ReplicaInfo(id=rid, key=v.key, address=f"http://127.0.0.1:{port}", phase=STARTING,
                           secret=secrets.token_urlsafe(32))
        inst = _Instance(info, v.spec.launch_fingerprint())
        v.instances[rid] = inst
        inst.task = asyncio.create_task(self._run_instance(v, inst, port), name=f"replica-{rid}")
        self._on_change(v.key)

    def _set(self, v: _Version, inst: _Instance, phase: str, **kw: Any) -> None:
        new = replace(inst.info, phase=phase, **kw)
        if new != inst.info:
            inst.info = new
            self._on_change(v.key)

    # ------------------------------------------------------------------ one replica instance
    def plan(self, v: _Version, port: int) -> ReplicaPlan:
        return replica_plan(v.spec, service=v.key[0], port=port, python=self.python, graceful_s=self.graceful_s,
                            readiness_period_s=self.ready_probe_interval_s)

    @staticmethod
    def _environment(plan: ReplicaPlan, secret: str) -> dict[str, str]:
        env = {k: val for k, val in os.environ.items() if not k.startswith(_STRIP_ENV)}
        env.update(plan.environment)
        env[SECRET_ENV] = secret  # last: a service's environment cannot set it
        return env

    def _log_file(self, v: _Version, rid: str) -> IO[bytes]:
        d = self.log_dir / v.key[0] / v.key[1]
        d.mkdir(parents=True, exist_ok=True)
        old = sorted(d.glob("*.log"), key=lambda p: p.stat().st_mtime)
        for p in old[:-9]:  # keep the last ten instances' logs
            p.unlink(missing_ok=True)
        return open(d / f"{rid}.log", "ab")

    async def _run_instance(self, v: _Version, inst: _Instance, port: int) -> None:
        rid = inst.info.id
        kick = self._kicks[rid] = asyncio.Event()
        plan = self.plan(v, port)
        try:
            with self._log_file(v, rid) as logf:
                inst.proc = await asyncio.create_subprocess_exec(
                    *plan.argv, cwd=plan.working_dir, env=self._environment(plan, inst.info.secret),
                    stdin=asyncio.subprocess.DEVNULL, stdout=logf, stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True, preexec_fn=die_with_parent(os.getpid()))
            self.records.add(inst.proc.pid, rid, port)
            log.info("replica %s started (pid %d) on port %d", rid, inst.proc.pid, port)
            started = time.monotonic()
            waiter = asyncio.create_task(inst.proc.wait())
            try:
                while not waiter.done():
                    if not inst.stop_requested:
                        await self._probe(v, inst, plan)
                    interval = plan.readiness.period_s if inst.info.ready else self.probe_interval_s
                    kick.clear()
                    kicked = asyncio.create_task(kick.wait())
                    await asyncio.wait([waiter, kicked], timeout=interval, return_when=asyncio.FIRST_COMPLETED)
                    kicked.cancel()
            finally:
                if not waiter.done():
                    waiter.cancel()
            code = inst.proc.returncode
            if inst.stop_requested:
                return
            ran = time.monotonic() - started
            v.failures = 0 if ran > 30 else v.failures + 1
            delay = 0.0 if v.failures <= 1 else min(self.max_backoff_s, 0.25 * 2 ** (v.failures - 1))
            v.next_start_at = time.monotonic() + delay
            reason = f"exited with code {code}" + (" (init() failed)" if code == 3 else "")
            log.warning("replica %s %s after %.1f s; replacing it in %.2f s", rid, reason, ran, delay)
            self._set(v, inst, CRASHED, reason=reason)
            v.instances.pop(rid, None)
            self._on_change(v.key)
            self._wake.set()
        except asyncio.CancelledError:
            raise
        except Exception:  # a spawn failure must not kill the supervisor
            log.exception("replica %s could not be supervised", rid)
            v.instances.pop(rid, None)
            v.failures += 1
            v.next_start_at = time.monotonic() + min(self.max_backoff_s, 0.25 * 2 ** v.failures)
            self._on_change(v.key)
            self._wake.set()
        finally:
            self._kicks.pop(rid, None)
            if inst.proc is not None and inst.proc.returncode is not None:
                self.records.remove(inst.proc.pid)

    async def _probe(self, v: _Version, inst: _Instance, plan: ReplicaPlan) -> None:
        assert self._session is not None
        try:
            async with self._session.get(inst.info.address + plan.readiness.path,
                                         headers={"x-openscore-replica-secret": inst.info.secret},
                                         timeout=aiohttp.ClientTimeout(total=plan.readiness.timeout_s)) as r:
                body = await r.json(content_type=None)
            ready = bool(body.get("ready")) and r.status == 200
            slots = int(body.get("total") or 0) or None
        except (TimeoutError, aiohttp.ClientError, ValueError, AttributeError):
            ready, slots = False, inst.info.slots
        if ready:
            self._set(v, inst, READY, slots=slots, reason="")
        elif inst.info.phase == READY:
            self._set(v, inst, UNREADY, reason="readiness probe failed")
        if ready and inst.info.phase == READY and slots is not None and slots != inst.info.slots:
            self._set(v, inst, READY, slots=slots)

    async def _stop_instance(self, inst: _Instance) -> None:
        if inst.stop_requested and inst.proc is None:
            return
        inst.stop_requested = True
        if inst.info.phase != STOPPING:
            inst.info = replace(inst.info, phase=STOPPING)
            self._on_change(inst.info.key)
        proc = inst.proc
        if proc is None and inst.task is not None:
            # still spawning: let it create the process, then stop that
            for _ in range(100):
                await asyncio.sleep(0.01)
                if inst.proc is not None or inst.task.done():
                    break
            proc = inst.proc
        if proc is not None and proc.returncode is None:
            _killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.graceful_s + 2)
            except TimeoutError:
                log.warning("replica %s did not stop in %.0f s: killing it", inst.info.id, self.graceful_s + 2)
                _killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if proc is not None:
            _killpg(proc.pid, signal.SIGKILL)  # reap anything the group left behind
            self.records.remove(proc.pid)
        if inst.task is not None and not inst.task.done():
            inst.task.cancel()
            await asyncio.gather(inst.task, return_exceptions=True)
        v = self._versions.get(inst.info.key)
        if v is not None:
            v.instances.pop(inst.info.id, None)
        self._on_change(inst.info.key)
        self._wake.set()


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
