"""quickstart.sh, run for real (QUICKSTART_SETUP=0: no venv or pip, this interpreter).

Its first command is the deploy journey: register the sample model, deploy it with entry_scripts/deploy's
inferenceconfig.json and deploymentconfig.json, show it, get its keys, score it through the workspace's router
with the key, print the next steps, and leave the service running. It scores only its own router: a port held by
another process, or a service that fails, ends it with exit code 1, the failing step's output and the logs.
`serve` is the older path (one sample under `openscore serve`, scored and stopped); `stop` stops the router.

Each test uses a workspace in its tmp folder and stops the router the script started by the pid in the
workspace's router record (deployer/local_router.py).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from openscore.deployer.local_router import LocalRouter, pid_alive
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "quickstart.sh"
DATA = json.loads((ROOT / "entry_scripts" / "deploy" / "data.json").read_text())


def _quickstart(port: int, *args: str, ws: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("AZUREML_", "AML_", "SCORING_", "WORKER_", "SERVICE_", "OPENSCORE_", "QUICKSTART_"))}
    clean.update(QUICKSTART_SETUP="0", OPENSCORE_PYTHON=sys.executable, PORT=str(port), **env)
    if ws is not None:
        clean["QUICKSTART_WORKSPACE"] = str(ws)
    return subprocess.run(["bash", str(QUICKSTART), *args], cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=240)


def _router_pid(ws: Path) -> int | None:
    rec = LocalRouter(ws).record()
    return rec.pid if rec is not None and pid_alive(rec.pid) else None


@pytest.fixture
def ws(tmp_path) -> Iterator[Path]:
    """A workspace folder for the script; afterwards the router it started is stopped by its recorded pid."""
    folder = tmp_path / "ws"
    yield folder
    LocalRouter(folder).stop()


def _held_port() -> socket.socket:
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen()
    return other


def _never_contacted(other: socket.socket) -> None:
    other.setblocking(False)
    with pytest.raises(BlockingIOError):
        other.accept()  # quickstart never connected to the other process


# ====================================================================== the deploy journey
@pytest.mark.slow
def test_quickstart_deploys_the_sample_scores_it_and_prints_the_next_steps(ws):
    port = free_port()
    r = _quickstart(port, ws=ws)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for step in ("== register the model", "== deploy it: diabetes-model:1 as service diabetes",
                 "== show the service", "== get its keys", "== score it through the router with its key"):
        assert step in out, out
    assert "$ openscore model deploy -n diabetes -m diabetes-model:1 --ic entry_scripts/deploy/inferenceconfig.json" \
        in out
    assert 'service creation operation finished, operation "Succeeded"' in out
    assert '"state": "Healthy"' in out
    assert re.search(r"^\[189\.8\d*, 83\.07\d*\]$", out, re.M), out  # the two diabetes predictions
    assert "HTTP 401 " in out  # the same request without the key

    uri = f"http://127.0.0.1:{port}/api/v1/service/diabetes/score"
    key = re.search(r'"primaryKey": "([^"]+)"', out).group(1)  # what get-keys printed
    pid = _router_pid(ws)
    assert pid is not None, "the router should keep running"
    steps = out[out.index("== next steps"):]
    assert f"scoring URI:  {uri}" in steps
    assert f"primary key:  {key}" in steps
    assert f'curl -H "Authorization: Bearer {key}"' in steps
    assert f"OPENSCORE_WORKSPACE={ws} " in steps and "service delete -n diabetes" in steps
    assert f"QUICKSTART_WORKSPACE={ws} ./quickstart.sh stop" in steps and f"kill {pid}" in steps
    assert f"workspace: {ws}" in r.stderr

    # what it printed works: the service keeps answering with that key, and refuses a wrong one
    ok = requests.post(uri, json=DATA, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert ok.status_code == 200 and len(ok.json()) == 2, ok.text
    assert requests.post(uri, json=DATA, headers={"Authorization": "Bearer nope"}, timeout=30).status_code == 401

    stop = _quickstart(port, "stop", ws=ws)
    assert stop.returncode == 0, stop.stderr
    assert f"stopped the router of workspace {ws} (pid {pid})" in stop.stderr
    assert not pid_alive(pid)
    with pytest.raises(requests.ConnectionError):
        requests.post(uri, json=DATA, headers={"Authorization": f"Bearer {key}"}, timeout=5)
    again = _quickstart(port, "stop", ws=ws)
    assert again.returncode == 0 and "no router of workspace" in again.stderr


def test_quickstart_refuses_a_port_held_by_another_process(ws):
    with _held_port() as other:
        port = other.getsockname()[1]
        r = _quickstart(port, ws=ws)
        _never_contacted(other)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "== score it" not in r.stdout
    assert "error: step 'deploy it: diabetes-model:1 as service diabetes' failed (exit code 1)" in r.stderr
    assert f"cannot start the workspace's router on port {port}: the port is in use by another program" in r.stderr
    assert f"port {port} is taken by another process (it was not contacted): run PORT=<a free port> " \
           "./quickstart.sh" in r.stderr
    assert _router_pid(ws) is None  # nothing left running


@pytest.mark.slow
def test_quickstart_shows_the_replica_log_of_a_service_that_fails_and_stops_its_router(ws, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "score.py").write_text("def init():\n    raise ValueError('quickstart_init_failure: no model')\n\n"
                                  "def run(data):\n    return data\n")
    (app / "inferenceconfig.json").write_text('{"entryScript": "score.py"}')
    r = _quickstart(free_port(), ws=ws, QUICKSTART_INFERENCE_CONFIG=str(app / "inferenceconfig.json"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "== score it" not in r.stdout
    assert "failed (exit code 1)" in r.stderr
    assert "current service state: Failed" in r.stderr  # the deploy step's own output
    assert "the router's log" in r.stderr
    assert "=== replica diabetes.diabetes.1 (version diabetes, exited)" in r.stderr  # service get-logs
    assert "ValueError: quickstart_init_failure: no model" in r.stderr
    assert "stopped the router this run had started" in r.stderr
    assert _router_pid(ws) is None


def test_quickstart_refuses_a_port_that_is_not_a_number(tmp_path):
    r = subprocess.run(["bash", str(QUICKSTART)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "QUICKSTART_SETUP": "0", "OPENSCORE_PYTHON": sys.executable,
                            "PORT": "80a", "QUICKSTART_WORKSPACE": str(tmp_path / "ws")})
    assert r.returncode == 1
    assert "PORT must be a port number (1-65535), got '80a'" in r.stderr
    assert not (tmp_path / "ws").exists()  # refused before anything was made


def test_quickstart_stop_without_a_router_says_so_and_makes_nothing(tmp_path):
    r = _quickstart(free_port(), "stop", ws=tmp_path / "ws")
    assert r.returncode == 0, r.stderr
    assert f"no router of workspace {tmp_path / 'ws'} is running" in r.stderr
    assert not (tmp_path / "ws").exists()


def test_quickstart_rejects_an_unknown_command():
    r = _quickstart(free_port(), "deplyo")
    assert r.returncode == 1
    assert "unknown command 'deplyo' (use: ./quickstart.sh [deploy|serve|stop])" in r.stderr


# ====================================================================== `serve`: one sample, directly
def _log_path(stderr: str) -> Path:
    m = re.search(r"quickstart: server log: (\S+)", stderr)
    assert m, f"the log's path is not printed:\n{stderr}"
    return Path(m.group(1))


def test_quickstart_serve_serves_and_scores_the_sample():
    port = free_port()
    r = _quickstart(port, "serve")
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


def test_quickstart_serve_refuses_a_port_held_by_another_process():
    with _held_port() as other:
        port = other.getsockname()[1]
        r = _quickstart(port, "serve")
        _never_contacted(other)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "== POST /score" not in r.stdout
    assert "the server exited with code 1 before it was ready" in r.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in r.stderr  # the log, printed
    assert f"port {port} is taken by another process: run PORT=<a free port> ./quickstart.sh serve" in r.stderr
    _log_path(r.stderr).unlink()


def test_quickstart_serve_prints_the_log_of_a_server_that_fails_to_start():
    r = _quickstart(free_port(), "serve", WORKER_COUNT="0")  # a bad Azure variable in the environment
    assert r.returncode == 1, r.stdout + r.stderr
    assert "== POST /score" not in r.stdout
    assert "the server exited with code 1 before it was ready" in r.stderr
    assert "WORKER_COUNT must be between 1 and 256, got 0" in r.stderr
    _log_path(r.stderr).unlink()
