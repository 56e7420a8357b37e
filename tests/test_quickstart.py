"""quickstart.sh's serve-and-score part, run for real (QUICKSTART_SETUP=0: no venv or pip, this interpreter).

It scores only its own server: a port held by another process, or a server that exits before it is ready,
ends the script with exit code 1, the reason and the server log, and nothing is sent to the other process.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "quickstart.sh"


def _quickstart(port: int, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("AZUREML_", "AML_", "SCORING_", "WORKER_", "SERVICE_", "OPENSCORE_"))}
    clean.update(QUICKSTART_SETUP="0", OPENSCORE_PYTHON=sys.executable, PORT=str(port), **env)
    return subprocess.run(["bash", str(QUICKSTART)], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=180)


def _log_path(stderr: str) -> Path:
    m = re.search(r"quickstart: server log: (\S+)", stderr)
    assert m, f"the log's path is not printed:\n{stderr}"
    return Path(m.group(1))


def test_quickstart_serves_and_scores_the_sample():
    port = free_port()
    r = _quickstart(port)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("HTTP/1.1 200 OK") == 2, r.stdout
    assert re.search(r"\[1\d\d\.\d+, \d+\.\d+\]", r.stdout), r.stdout  # two diabetes predictions
    assert "Expected 2D array" in r.stdout  # the bad request: the script's error string, as a 200
    log = _log_path(r.stderr)
    text = log.read_text()
    assert f"Listening on http://127.0.0.1:{port}" in text
    assert text.count("POST /score 200") == 2
    assert "Server stopped" in text  # stopped, not left running
    log.unlink()


def test_quickstart_refuses_a_port_held_by_another_process():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        r = _quickstart(port)
        other.setblocking(False)
        with pytest.raises(BlockingIOError):
            other.accept()  # quickstart never connected to the other process
    assert r.returncode == 1, r.stdout + r.stderr
    assert "== POST /score" not in r.stdout
    assert "the server exited with code 1 before it was ready" in r.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in r.stderr  # the log, printed
    assert f"port {port} is taken by another process: run PORT=<a free port> ./quickstart.sh" in r.stderr
    _log_path(r.stderr).unlink()


def test_quickstart_prints_the_log_of_a_server_that_fails_to_start():
    r = _quickstart(free_port(), WORKER_COUNT="0")  # a bad Azure variable in the environment
    assert r.returncode == 1, r.stdout + r.stderr
    assert "== POST /score" not in r.stdout
    assert "the server exited with code 1 before it was ready" in r.stderr
    assert "WORKER_COUNT must be between 1 and 256, got 0" in r.stderr
    _log_path(r.stderr).unlink()
