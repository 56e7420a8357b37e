"""/metrics of a fresh process has every family README.md lists (HELP and TYPE, the type the README says),
before any event: a dashboard or alert on `openscore_rejected_requests_total` works from the first scrape.

The expected families are read from README.md's Metrics tables, so the README cannot name a metric that is
not exported (or under another name, or another type).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

from openscore.accelerators import sample_models
from tests.conftest import ROOT, free_port

ROW = re.compile(r"^\| `(openscore_[a-z_]+)` \| (counter|gauge|histogram) \|", re.M)


def readme_metrics() -> dict[str, str]:
    """name (as exported) -> type, from every Metrics table row of README.md."""
    found = dict(ROW.findall((ROOT / "README.md").read_text()))
    assert len(found) > 30, f"README.md's Metrics tables were not found (or lost rows): {sorted(found)}"
    return found


def _families(kind: str) -> dict[str, str]:
    rows = readme_metrics()
    if kind == "router":
        return {n: t for n, t in rows.items() if n.startswith("openscore_router_")}
    if kind == "model":
        return {n: t for n, t in rows.items() if n.startswith("openscore_model_")}
    return {n: t for n, t in rows.items() if not n.startswith(("openscore_router_", "openscore_model_"))}


def _missing(text: str, families: dict[str, str]) -> list[str]:
    return [f"{name} ({kind})" for name, kind in families.items()
            if not re.search(rf"^# HELP {name} \S", text, re.M) or f"\n# TYPE {name} {kind}\n" not in text]


def _first_answer(url: str, proc: subprocess.Popen) -> requests.Response:
    """The first response of a server that has answered nothing yet (refused connections are not requests)."""
    for _ in range(600):
        assert proc.poll() is None, f"the server exited with {proc.returncode}"
        try:
            return requests.get(url, timeout=10)
        except requests.ConnectionError:
            time.sleep(0.05)
    pytest.fail(f"{url} never answered")


def test_fresh_scoring_server_exports_every_family_the_readme_lists(serve):
    srv = serve("plain_echo.py", "--workers", "2", wait=False)
    first = _first_answer(srv.url + "/metrics", srv.proc)  # the first request this server answers
    assert first.status_code == 200, first.text
    text = first.text
    assert _missing(text, _families("server")) == [], text
    # the reason counters start at zero for every reason the code records, so rate() works from the start
    for reason in ("overloaded", "initializing"):
        assert f'openscore_rejected_requests_total{{reason="{reason}"}} 0.0' in text
    for reason in ("exit", "signal", "recycled"):
        assert f'openscore_worker_restarts_total{{reason="{reason}"}} 0.0' in text
    # a family without samples yet gets HELP and TYPE only; once it has some, they are real (and summed)
    assert "\nopenscore_requests_total{" not in text
    srv.wait_ready()
    text = requests.get(srv.url + "/metrics", timeout=10).text
    assert 'openscore_requests_total{route="metrics",status="200"} 1.0' in text
    assert text.count("# TYPE openscore_requests_total counter") == 1  # never listed twice


def test_fresh_model_server_exports_every_model_family(serve, tmp_path):
    model = sample_models.save(sample_models.mlp(), tmp_path / "mlp.onnx")
    srv = serve(None, "--model", str(model), "--device", "cpu")
    text = requests.get(srv.url + "/metrics", timeout=10).text
    assert _missing(text, {**_families("server"), **_families("model")}) == [], text


def test_fresh_router_exports_every_router_family(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSCORE_")}
    log = open(tmp_path / "router.log", "w+b")
    proc = subprocess.Popen([sys.executable, "-m", "openscore", "router", "--workspace", str(tmp_path / "ws"),
                             "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            assert proc.poll() is None, (tmp_path / "router.log").read_text()
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.05)
        else:
            pytest.fail("router not up:\n" + (tmp_path / "router.log").read_text())
        text = requests.get(url + "/metrics", timeout=10).text
        assert _missing(text, _families("router")) == [], text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
