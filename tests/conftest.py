"""Fixtures that start real `openscore serve` processes on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "scripts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One `python -m openscore serve` process group; output goes to a log file."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = tempfile.NamedTemporaryFile("w+b", prefix="openscore-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "openscore", "serve", *args],
            cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0, path: str = "/readyz") -> ServerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + path, timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log()}")

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        else:
            # reap anything the process group left behind
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Stop, then remove the log file (the log stays readable after stop())."""
        self.stop()
        self._log.close()
        try:
            os.unlink(self._log.name)
        except FileNotFoundError:
            pass


class Starter:
    """serve(entry_script, *args, env=None, cwd=None, wait=True) -> ServerProcess.

    `entry_script` is a path (absolute, or relative to tests/scripts/) or None for no --entry-script.
    The server runs with cwd = `cwd` (default: a fresh tmp dir, as AML_APP_ROOT) and is stopped at teardown.
    """

    def __init__(self, default_cwd: Path):
        self.default_cwd = default_cwd
        self.started: list[ServerProcess] = []

    def __call__(self, entry_script: str | Path | None, *args: str, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None, wait: bool = True, timeout: float = 30.0) -> ServerProcess:
        port = free_port()
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("AZUREML_", "AML_", "SCORING_", "WORKER_", "SERVICE_", "OPENSCORE_"))}
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.update(env or {})
        argv: list[str] = []
        if entry_script is not None:
            p = Path(entry_script)
            if not p.is_absolute():
                p = SCRIPTS / p
            argv += ["--entry-script", str(p)]
        argv += ["--port", str(port), "--host", "127.0.0.1", *args]
        server = ServerProcess(argv, full_env, Path(cwd) if cwd else self.default_cwd, port)
        self.started.append(server)
        if wait:
            server.wait_ready(timeout)
        return server

    def stop_all(self) -> None:
        for s in self.started:
            s.close()


@pytest.fixture
def serve(tmp_path):
    starter = Starter(tmp_path)
    yield starter
    starter.stop_all()


@pytest.fixture(scope="module")
def module_serve(tmp_path_factory):
    """Like `serve`, but the servers live for the whole test module (for read-only wire tests)."""
    starter = Starter(tmp_path_factory.mktemp("app"))
    yield starter
    starter.stop_all()
