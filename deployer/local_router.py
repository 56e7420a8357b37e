"""The workspace's own router: found when it runs, started when it does not.

`<ws>/router/` is the router's `--workspace` (its store, replica logs and `admin.key`); `<ws>/router.json`
records the one the deployer started (pid, port, start time). A recorded router is reused only when its pid is
alive AND it proves it holds this workspace's admin key (router_client.py: the key is sent only after
that): a port some other server owns never sees the key. A router
the user runs as a service of its own (`openscore router --workspace <ws>/router --port N`) is found through
`router.json`'s `port` or `OPENSCORE_ROUTER_PORT`. Starting is serialised by a lock file, so two CLI
processes never start two routers for one workspace.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from openscore.deployer.errors import DeployError
from openscore.deployer.router_client import NotThisRouter, RouterClient, RouterUnreachable

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
# Variables that would point a started router at another key, folder, address or scheme than the record says.
_STRIP = ("OPENSCORE_ROUTER_ADMIN_KEY", "OPENSCORE_ROUTER_ADMIN_KEY_FILE", "OPENSCORE_ROUTER_WORKSPACE",
          "OPENSCORE_ROUTER_PORT", "OPENSCORE_ROUTER_HOST", "OPENSCORE_ROUTER_CONFIG", "OPENSCORE_ROUTER_TLS_CERT",
          "OPENSCORE_ROUTER_TLS_KEY")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def pid_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass(frozen=True)
class RouterRecord:
    port: int
    pid: int | None
    started: float | None


class LocalRouter:
    def __init__(self, ws_root: Path):
        self.ws_root = Path(ws_root)
        self.folder = self.ws_root / "router"
        self.record_path = self.ws_root / "router.json"
        self.key_path = self.folder / "admin.key"
        self.log_path = self.folder / "router.log"
        self._client: RouterClient | None = None

    # ------------------------------------------------------------------ record and key
    def admin_key(self) -> str:
        """The workspace's admin key (created 0600 on first use; the router reads the same file)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            return self.key_path.read_text().strip()
        except FileNotFoundError:
            pass
        key = secrets.token_urlsafe(32)
        try:
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self.key_path.read_text().strip()
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        return key

    def record(self) -> RouterRecord | None:
        try:
            doc = json.loads(self.record_path.read_text())
            return RouterRecord(int(doc["port"]), doc.get("pid"), doc.get("started"))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write_record(self, rec: RouterRecord) -> None:
        tmp = self.record_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"pid": rec.pid, "port": rec.port, "started": rec.started}, indent=1) + "\n")
        os.replace(tmp, self.record_path)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.ws_root.mkdir(parents=True, exist_ok=True)
        with open(self.ws_root / "router.lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ find / start
    def running(self) -> RouterClient | None:
        """A client for this workspace's router if one answers now (never starts one)."""
        if self._client is not None and self._client.ping():
            return self._client
        key = self.admin_key()
        rec = self.record()
        candidates: list[int] = []
        if rec is not None and (rec.pid is None or pid_alive(rec.pid)):
            candidates.append(rec.port)
        env_port = os.environ.get("OPENSCORE_ROUTER_PORT", "").strip()
        if env_port.isdigit() and int(env_port) not in candidates:
            candidates.append(int(env_port))
        for port in candidates:
            client = RouterClient(HOST, port, key)
            try:
                if client.identify():
                    self._client = client
                    return client
            except NotThisRouter as e:
                client.close()
                if port == (int(env_port) if env_port.isdigit() else None):
                    raise DeployError(f"OPENSCORE_ROUTER_PORT={port}: {e}; stop that program or point "
                                      "OPENSCORE_ROUTER_PORT at this workspace's router") from None
                continue  # a stale record: another program owns the port now; a new router starts elsewhere
            except RouterUnreachable:
                pass
            client.close()
        return None

    def ensure(self, port: int | None = None) -> RouterClient:
        """The running router, else a new one started detached (in its own session, logging to
        <ws>/router/router.log). `port`: where to start it (a deploymentconfig's local `port`)."""
        client = self.running()
        if client is not None:
            return client
        with self._lock():
            client = self.running()  # another process may have started it while this one waited
            if client is not None:
                return client
            return self._start(port)

    def _start(self, port: int | None) -> RouterClient:
        key = self.admin_key()
        rec = self.record()
        if port is not None:
            if not port_is_free(port):
                raise DeployError(f"cannot start the workspace's router on port {port}: the port is in use by "
                                  "another program (change the deploymentconfig's port, or remove it)")
            chosen = port
        elif rec is not None and port_is_free(rec.port):
            chosen = rec.port  # the same scoring URIs as before a restart
        else:
            chosen = free_port()
        env = {k: v for k, v in os.environ.items() if k not in _STRIP}
        env["PYTHONUNBUFFERED"] = "1"
        argv = [sys.executable, "-m", "openscore", "router", "--workspace", str(self.folder), "--host", HOST,
                "--port", str(chosen), "--admin-key-file", str(self.key_path)]
        with open(self.log_path, "ab") as logf:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                    env=env, cwd=str(self.folder), start_new_session=True)
        client = RouterClient(HOST, chosen, key)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DeployError(f"the workspace's router did not start (exit code {proc.returncode}); the last "
                                  f"lines of {self.log_path}:\n{self.log_tail()}")
            if client.ping():
                self._write_record(RouterRecord(chosen, proc.pid, time.time()))
                self._client = client
                return client
            time.sleep(0.05)
        _terminate(proc.pid)
        raise DeployError(f"the workspace's router did not answer within {START_TIMEOUT_S:g} s; the last lines "
                          f"of {self.log_path}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the router this workspace started (by its recorded pid); False if none was running."""
        rec = self.record()
        if self._client is not None:
            self._client.close()
            self._client = None
        if rec is None or not pid_alive(rec.pid):
            return False
        assert rec.pid is not None
        _terminate(rec.pid, timeout_s)
        return True

    def url(self) -> str | None:
        client = self.running()
        return client.base_url if client is not None else None


def _terminate(pid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM (the router drains and stops its replicas), SIGKILL to the group after `timeout_s`."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
