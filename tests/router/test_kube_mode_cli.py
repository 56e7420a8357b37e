"""`openscore router --kubernetes` start-up failures are one line and exit 1 (no cluster needed)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: "https://127.0.0.1:{port}", insecure-skip-tls-verify: true}}
users:
- name: u
  user: {{token: not-a-real-token}}
contexts:
- name: x
  context: {{cluster: c, user: u, namespace: ns1}}
current-context: x
"""


def closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def router(*args: str, kubeconfig: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSCORE_")}
    env["OPENSCORE_ROUTER_ADMIN_KEY"] = "k" * 40
    return subprocess.run([sys.executable, "-m", "openscore", "router", "--kubernetes", "--kubeconfig",
                           str(kubeconfig), "--port", "0", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_an_api_server_that_does_not_answer_is_one_line_and_exit_1(tmp_path: Path) -> None:
    port = closed_port()
    kc = tmp_path / "kubeconfig"
    kc.write_text(KUBECONFIG.format(port=port))
    r = router(kubeconfig=kc)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the API server" in lines[0] and "namespace ns1" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_a_missing_kubeconfig_is_one_line_and_exit_1(tmp_path: Path) -> None:
    r = router(kubeconfig=tmp_path / "nope")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "nope" in r.stderr, r.stderr
