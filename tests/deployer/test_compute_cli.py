"""`openscore compute ...` on bad input, without a cluster: each mistake is one line on stderr, exit 1, and
nothing recorded in the workspace."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openscore.deployer.workspace import Workspace

CLI = [sys.executable, "-m", "openscore.deployer.compute_cli"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "only",
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "only", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


def _cli(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args, "-w", str(ws)], capture_output=True, text=True, timeout=120)


def _refused(ws: Path, *args: str) -> str:
    proc = _cli(ws, *args)
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    listed = _cli(ws, "compute", "list")
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed
    return lines[0]


@pytest.fixture
def unreachable(tmp_path) -> Path:
    return _kubeconfig(tmp_path / "kubeconfig", f"https://127.0.0.1:{_closed_port()}")


def test_a_missing_kubeconfig_is_refused(tmp_path):
    line = _refused(tmp_path / "ws", "compute", "attach", "-n", "myaks", "--kubeconfig", str(tmp_path / "nope"))
    assert "kubeconfig" in line and "does not exist" in line


def test_an_unknown_context_is_refused(tmp_path, unreachable):
    line = _refused(tmp_path / "ws", "compute", "attach", "-n", "myaks", "--kubeconfig", str(unreachable),
                    "--context", "elsewhere")
    assert "elsewhere" in line


def test_an_unreachable_server_is_refused(tmp_path, unreachable):
    line = _refused(tmp_path / "ws", "compute", "attach", "-n", "myaks", "--kubeconfig", str(unreachable))
    assert "cannot be reached" in line


@pytest.mark.parametrize(("content", "expect"), [
    ("instanceTypes: [unclosed", "not YAML or JSON"),
    ("- metadata: {name: big}\n  spec: {resources: {requests: {cpu: lots}}}", "cpu"),
    ("- metadata: {name: a}\n  spec: {}\n  colour: red", "colour"),
    ("42", "InstanceType"),
])
def test_a_bad_instance_types_file_is_refused(tmp_path, unreachable, content, expect):
    bad = tmp_path / "types.yaml"
    bad.write_text(content)
    line = _refused(tmp_path / "ws", "compute", "attach", "-n", "myaks", "--kubeconfig", str(unreachable),
                    "--instance-types", str(bad))
    assert "instance types file" in line and expect in line


@pytest.mark.parametrize(("flag", "value"), [("-n", "9lives"), ("--namespace", "Not_DNS"),
                                             ("--registry", "http://host/")])
def test_bad_names_are_refused(tmp_path, unreachable, flag, value):
    args = {"-n": "myaks", "--namespace": "openscore", "--registry": "127.0.0.1:5000", flag: value}
    line = _refused(tmp_path / "ws", "compute", "attach", "--kubeconfig", str(unreachable),
                    *[x for kv in args.items() for x in kv])
    assert value in line


def test_show_detach_and_install_of_an_unknown_compute(tmp_path):
    for verb in (("compute", "show"), ("compute", "detach"), ("cluster", "install"), ("cluster", "uninstall")):
        line = _refused(tmp_path / "ws", *verb, "-n", "ghost")
        assert "no compute ghost" in line


def test_detach_is_refused_while_services_are_deployed_there(tmp_path):
    ws = Workspace(tmp_path / "ws")
    now = time.time()
    with ws.transaction() as db:  # a recorded compute and two services deployed to it
        db.execute("INSERT INTO computes VALUES ('myaks', 'AKS', ?, '[]', 'v1.20.2', ?)",
                   (json.dumps({"kubeconfig": "/nowhere", "namespace": "openscore"}), now))
        for name in ("svc-b", "svc-a"):
            db.execute("INSERT INTO services VALUES (?, 'AKS', 'myaks', '{}', 'Healthy', NULL, ?, ?)",
                       (name, now, now))
    ws.close()
    proc = _cli(tmp_path / "ws", "compute", "detach", "-n", "myaks")
    assert proc.returncode == 1 and "svc-a, svc-b" in proc.stderr, proc
    shown = _cli(tmp_path / "ws", "compute", "show", "-n", "myaks")
    assert shown.returncode == 0 and json.loads(shown.stdout)["namespace"] == "openscore"
    assert [t["metadata"]["name"] for t in json.loads(shown.stdout)["instanceTypes"]] == ["defaultinstancetype"]
