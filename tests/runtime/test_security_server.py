"""The scoring server as a process: workers that must not outlive their supervisor, the per-replica secret that
keeps a replica's port from being a side door around the router, exits refused in every thread of a worker, a
log that stays bounded when run() fails the same way at every request, and an install with a broken pyopencl.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import requests

HTTP_TIMEOUT = 30  # only keeps a broken server from hanging the test


def _worker_pids(server: Any) -> list[int]:
    pid = server.proc.pid
    return sorted(int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for whoever reaps it, serving nothing)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def _wait(predicate: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


# ---------------------------------------------------------------------------------------------- supervisor death

def test_workers_die_with_a_sigkilled_supervisor(serve):
    server = serve("fault_actions.py", "--workers", "2")
    workers = _worker_pids(server)
    assert len(workers) == 2 and all(_running(p) for p in workers)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    try:
        _wait(lambda: not any(_running(p) for p in workers), "the workers to die with their supervisor")
        _wait(lambda: not _answers(server.port), "the port to stop answering")
    finally:
        for p in workers:  # never leave an orphan behind, even when the test fails
            if _running(p):
                os.kill(p, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------- replica secret

SECRET_SCRIPT = '''
import os
runs = 0

def init():
    pass

def run(raw_data):
    global runs
    runs += 1
    with open(os.path.join(os.environ["AML_APP_ROOT"], "runs.txt"), "a") as f:
        f.write("run\\n")
    return {"secret_seen": os.environ.get("OPENSCORE_REPLICA_SECRET"), "runs": runs}
'''


def test_with_a_replica_secret_only_requests_that_carry_it_reach_run(serve, tmp_path):
    script = tmp_path / "score.py"
    script.write_text(SECRET_SCRIPT)
    secret = "s3cret-Only-the-router-knows-9f2c"
    server = serve(str(script), env={"OPENSCORE_REPLICA_SECRET": secret}, cwd=tmp_path)
    url = server.url
    body = json.dumps({"data": 1})

    for headers in ({}, {"x-openscore-replica-secret": "wrong"}, {"x-openscore-replica-secret": secret[:-1]},
                    {"x-openscore-replica-secret": secret + "x"}, {"x-openscore-replica-secret": "é" * 8},
                    {"Authorization": f"Bearer {secret}"}):
        r = requests.post(url + "/score", data=body, headers=headers, timeout=HTTP_TIMEOUT)
        assert r.status_code == 403, headers
        assert "x-openscore-replica-secret" in r.json()["message"]
    for method, path in (("GET", "/score"), ("GET", "/metrics"), ("GET", "/swagger.json"), ("GET", "/devices"),
                         ("POST", "/healthz"), ("GET", "/nowhere"), ("OPTIONS", "/score")):
        assert requests.request(method, url + path, timeout=HTTP_TIMEOUT).status_code == 403, (method, path)
    assert not (tmp_path / "runs.txt").exists(), "a refused request reached run()"

    for path in ("/", "/healthz", "/readyz", "/slots"):  # probes stay open
        assert requests.get(url + path, timeout=HTTP_TIMEOUT).status_code == 200, path
        assert requests.head(url + path, timeout=HTTP_TIMEOUT).status_code == 200, path

    r = requests.post(url + "/score", data=body, headers={"x-openscore-replica-secret": secret}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    assert r.json() == {"secret_seen": None, "runs": 1}  # the entry script cannot read it from its environment
    assert (tmp_path / "runs.txt").read_text() == "run\n"
    assert secret not in server.log()


def test_without_a_replica_secret_nothing_is_checked(serve):
    server = serve("plain_echo.py")
    r = requests.post(server.url + "/score", json={"a": 1}, timeout=HTTP_TIMEOUT)
    assert (r.status_code, r.json()) == (200, {"echo": {"a": 1}})


# ---------------------------------------------------------------------------------------------- exits and logs

EXIT_SCRIPT = '''
import json
import os
import sys
import threading

def init():
    pass

def run(raw_data):
    what = json.loads(raw_data)["do"]
    if what == "os_exit_in_thread":
        t = threading.Thread(target=os._exit, args=(7,), name="user-thread")
        t.start()
        t.join()
    elif what == "sys_exit":
        sys.exit(2)
    return {"pid": os.getpid()}
'''


@pytest.fixture
def exit_server(serve, tmp_path):
    script = tmp_path / "score.py"
    script.write_text(EXIT_SCRIPT)
    return serve(str(script), cwd=tmp_path)


def _do(server: Any, what: str) -> requests.Response:
    return requests.post(server.url + "/score", json={"do": what}, timeout=HTTP_TIMEOUT)


def test_os_exit_from_a_thread_that_run_started_is_refused(exit_server):
    pid = _do(exit_server, "pid").json()["pid"]
    for _ in range(3):
        assert _do(exit_server, "os_exit_in_thread").status_code == 200
    assert _do(exit_server, "pid").json()["pid"] == pid, "the worker was replaced: os._exit() got through"
    log = exit_server.log()
    assert "os._exit called from a thread (user-thread) with(7); refused" in log
    assert "died" not in log


def test_repeated_identical_tracebacks_are_logged_once_then_counted(exit_server):
    size_before = len(exit_server.log())
    for _ in range(200):
        assert _do(exit_server, "sys_exit").status_code == 500
    assert _do(exit_server, "pid").status_code == 200
    log = exit_server.log()[size_before:]
    assert log.count("run() raised SystemExit") <= 3, log  # the first in full, then one line per 10 s at most
    assert log.count("Traceback (most recent call last)") == 1, log
    assert len(log) < 200 * 200, f"{len(log)} bytes of log for 200 identical failures"


# ---------------------------------------------------------------------------------------------- broken pyopencl

def test_nocode_serving_works_with_an_empty_pyopencl_package(serve, tmp_path):
    from openscore.accelerators.sample_models import mlp, save
    model = save(mlp(in_features=8, hidden=8, layers=1, classes=2), tmp_path / "m.onnx")
    fake = tmp_path / "site"
    (fake / "pyopencl").mkdir(parents=True)
    (fake / "pyopencl" / "__init__.py").write_text("")  # what the PoCL package leaves without the opencl extra
    server = serve(None, "--model", str(model), env={"PYTHONPATH": str(fake)})
    r = requests.post(server.url + "/score", json={"data": [[0.1] * 8]}, timeout=HTTP_TIMEOUT)
    assert r.status_code == 200 and len(r.json()["y"][0]) == 2
    devices = requests.get(server.url + "/devices", timeout=HTTP_TIMEOUT).json()
    assert "opencl" not in {d["kind"] for d in devices["devices"]}
    log = server.log()
    assert log.count("has no attribute 'get_platforms'); treating it as no OpenCL devices") == 1, log
    assert "Traceback" not in log
