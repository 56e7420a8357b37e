"""Helpers that start real `python -m openscore router` processes (which start real replicas) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"
ADMIN_KEY = "test-admin-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replica_secret(pid: int) -> dict[str, str]:
    """The header a replica started by the router demands (read from the replica's own environment, as any
    process of the same user could): for tests that talk to a replica directly, e.g. its /metrics."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    for item in environ:
        if item.startswith(b"OPENSCORE_REPLICA_SECRET="):
            return {"x-openscore-replica-secret": item.split(b"=", 1)[1].decode()}
    return {}


def service(script: str, **keys: Any) -> dict[str, Any]:
    """An aks deploymentconfig for a script in tests/router/scripts (fixed replicas unless autoscaled)."""
    doc: dict[str, Any] = {"computeType": "aks", "entryScript": str(SCRIPTS / script)}
    if "autoScaler" not in keys:
        doc["numReplicas"] = 1
    doc.update(keys)
    return doc


class RouterProcess:
    def __init__(self, workspace: Path, services: dict[str, Any], extra: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workspace = workspace
        cfg = workspace.parent / f"services-{self.port}.json"
        cfg.write_text(json.dumps({"services": services}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AZUREML_", "AML_", "OPENSCORE_"))}
        env["PYTHONUNBUFFERED"] = "1"
        self._log = tempfile.NamedTemporaryFile("w+b", prefix="router-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "openscore", "router", "--workspace", str(workspace), "--config", str(cfg),
             "--port", str(self.port), "--admin-key", ADMIN_KEY, *extra],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.admin = requests.Session()
        self.admin.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
        self.seen_pids: set[int] = set()

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    # ------------------------------------------------------------------ admin helpers
    def status(self, name: str) -> dict[str, Any]:
        r = self.admin.get(f"{self.url}/admin/v1/services")
        r.raise_for_status()
        for s in r.json()["services"]:
            for v in s["versions"].values():
                self.seen_pids.update(p["pid"] for p in v["replicas"] if p.get("pid"))
            if s["name"] == name:
                return s
        raise KeyError(name)

    def keys(self, name: str) -> dict[str, str]:
        r = self.admin.post(f"{self.url}/admin/v1/services/{name}/listkeys")
        r.raise_for_status()
        return r.json()

    def wait_ready(self, name: str | None = None, replicas: int = 1, timeout: float = 30.0,
                   version: str | None = None) -> RouterProcess:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"router exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if name is None:
                    if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                        return self
                else:
                    last = self.status(name)
                    vs = [last["versions"][version]] if version else list(last["versions"].values())
                    if all(v["readyReplicas"] >= replicas for v in vs):
                        return self
            except (requests.RequestException, KeyError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"not ready after {timeout}s: {last}\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:  # remember every replica pid, to prove they are all gone afterwards
                for s in self.admin.get(f"{self.url}/admin/v1/services", timeout=2).json()["services"]:
                    for v in s["versions"].values():
                        self.seen_pids.update(p["pid"] for p in v["replicas"] if p.get("pid"))
            except (requests.RequestException, ValueError, KeyError):
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        leftovers = []
        for pid in self.seen_pids:  # safety net: never leave a replica behind
            # a live member, not a zombie (a SIGKILLed replica's worker may wait, unreaped, for PID 1), still
            # there after a moment (one that got its parent-death signal as the router exited is going)
            if wait_for(lambda pgid=pid: not group_members(pgid), 5.0):
                continue
            leftovers.append(pid)
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.leftovers = leftovers

    def close(self) -> None:
        self.stop()
        self._log.close()
        os.unlink(self._log.name)


class RouterStarter:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.started: list[RouterProcess] = []

    def __call__(self, services: dict[str, Any], *extra: str, wait: bool = True,
                 timeout: float = 30.0) -> RouterProcess:
        return self.start_on(self.tmp / f"ws{len(self.started)}", services, *extra, wait=wait, timeout=timeout)

    def start_on(self, workspace: Path, services: dict[str, Any], *extra: str, wait: bool = True,
                 timeout: float = 30.0) -> RouterProcess:
        """A router on `workspace`, tracked for stop_all; with `wait`, once it and every service are ready."""
        r = RouterProcess(workspace, services, list(extra))
        self.started.append(r)
        if wait:
            r.wait_ready(None, timeout=timeout)
            for name in services:
                r.wait_ready(name, timeout=timeout)
        return r

    def stop_all(self) -> list[int]:
        leftovers: list[int] = []
        for r in self.started:
            r.close()
            leftovers += r.leftovers
        return leftovers




# ---------------------------------------------------------------------- helpers for the security tests
def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a killed replica may wait, unreaped, for its new parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group: a replica's supervisor and its workers."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(d.name))
    return out


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """A bounded wait: True as soon as predicate() is true, False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


async def until(cond: Any, timeout_s: float = 30.0, what: str = "") -> None:
    """In a test's own event loop: wait for `cond()`, or fail saying what did not happen."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def restart_on(starter: RouterStarter, previous: RouterProcess, services: dict[str, Any], *extra: str,
               wait: bool = True, timeout: float = 30.0) -> RouterProcess:
    """A new router on `previous`'s workspace (as after a crash or an upgrade), tracked by `starter`."""
    return starter.start_on(previous.workspace, services, *extra, wait=wait, timeout=timeout)


def hand_edit(workspace: Path, kind: str, name: str, content: bytes) -> int:
    """Replace a stored object's file with `content` the way another writer on the same workspace does
    (the file, then a journal line the watchers follow); returns the journal revision used."""
    store = workspace / "store"
    folder = "secrets" if kind in ("service-keys", "signing-keys") else "objects"
    journal = store / "journal"
    lines = [json.loads(x) for x in journal.read_text().splitlines() if x.strip().startswith("{")]
    rev = max(int(x["rev"]) for x in lines) + 1
    path = store / folder / kind / f"{name}.json"
    path.write_bytes(content.replace(b"@REV@", str(rev).encode()))
    with open(journal, "a") as f:
        f.write(json.dumps({"rev": rev, "kind": kind, "name": name, "op": "put"}) + "\n")
    return rev
