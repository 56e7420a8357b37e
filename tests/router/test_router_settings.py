"""Router settings (flags, OPENSCORE_ROUTER_* variables) and what the router accepts at start and at its admin
API: one error line naming the key for a bad value, a warning naming the nearest key for a misspelt one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from routerkit import ADMIN_KEY, ROOT, SCRIPTS

from openscore.router.settings import RouterSettingsError, load_router_settings, unknown_variables


def run_router(tmp_path, *flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENSCORE_", "AZUREML_", "AML_"))}
    return subprocess.run([sys.executable, "-m", "openscore", "router", *flags], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**clean, **(env or {})})


@pytest.mark.parametrize("flags,env,key", [
    ([], {"OPENSCORE_ROUTER_PORT": "abc"}, "OPENSCORE_ROUTER_PORT"),
    (["--port", "abc"], {}, "--port"),
    (["--scale-down-window-s", "-1"], {}, "--scale-down-window-s"),
    ([], {"OPENSCORE_ROUTER_TOKEN_LIFETIME_S": "0"}, "OPENSCORE_ROUTER_TOKEN_LIFETIME_S"),
    ([], {"OPENSCORE_ROUTER_LOG_LEVEL": "loud"}, "OPENSCORE_ROUTER_LOG_LEVEL"),
    (["--probe-interval-s", "nan"], {}, "--probe-interval-s"),
])
def test_a_bad_value_is_one_line_naming_the_key(tmp_path, flags, env, key):
    p = run_router(tmp_path, "--workspace", str(tmp_path / "ws"), *flags, env=env)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"openscore router: error: {key}: "), p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "ws").exists()  # nothing written before the settings are known to be good


def test_flags_win_over_variables_and_variables_over_defaults(monkeypatch):
    monkeypatch.setenv("OPENSCORE_ROUTER_PORT", "9001")
    monkeypatch.setenv("OPENSCORE_ROUTER_SCALE_DOWN_WINDOW_S", "5")
    monkeypatch.setenv("OPENSCORE_ROUTER_ACCESS_LOG", "false")
    s = load_router_settings({"port": "9002", "access_log": None})
    assert (s.port, s.scale_down_window_s, s.access_log, s.token_lifetime_s) == (9002, 5.0, False, 3600)
    monkeypatch.setenv("OPENSCORE_ROUTER_ADMIN_KEY", "from-the-environment-1")
    assert load_router_settings({}).admin_key.get_secret_value() == "from-the-environment-1"
    assert "from-the-environment-1" not in repr(load_router_settings({}))  # a secret is never printed


def test_tls_flags_go_together():
    with pytest.raises(RouterSettingsError) as e:
        load_router_settings({"tls_key": "/k.pem"})
    assert e.value.key == "--tls-cert" and "go together" in e.value.rule


def test_a_misspelt_variable_is_named_with_the_nearest():
    lines = unknown_variables({"OPENSCORE_ROUTER_PROT": "1", "OPENSCORE_ROUTER_PORT": "2", "HOME": "/"})
    assert lines == ["ignoring unknown environment variable OPENSCORE_ROUTER_PROT "
                     "(did you mean OPENSCORE_ROUTER_PORT?)"]


@pytest.mark.parametrize("doc,key,text", [
    ({"computeType": "aks", "entryScript": "missing.py"}, "services.svc-a.entryScript", "missing.py"),
    ({"computeType": "aks", "sourceDirectory": "nodir", "entryScript": "echo.py"},
     "services.svc-a.sourceDirectory", "nodir"),
])
def test_config_with_a_missing_file_is_one_line(tmp_path, doc, key, text):
    cfg = tmp_path / "services.json"
    cfg.write_text(json.dumps({"services": {"svc-a": doc}}))
    p = run_router(tmp_path, "--workspace", str(tmp_path / "ws"), "--config", str(cfg), "--admin-key", ADMIN_KEY)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{key}: {tmp_path / text} is not a" in lines[0], p.stderr
    assert not (tmp_path / "ws").exists()


def test_paths_misspelt_keys_and_admin_puts_through_a_real_router(start_router, tmp_path):
    # RouterStarter writes the services file into tmp_path and runs the router from the repository root:
    # the relative sourceDirectory resolves against the file's folder, not the router's cwd
    app = tmp_path / "app"
    app.mkdir()
    (app / "echo.py").write_text((SCRIPTS / "echo.py").read_text())
    r = start_router({"rel-svc": {"computeType": "aks", "sourceDirectory": "app", "entryScript": "echo.py",
                                  "numReplicas": 1, "numReplicaz": 2, "autoScaler": {"minReplica": 1}}})
    assert r.status("rel-svc")["versions"]["rel-svc"]["readyReplicas"] == 1  # accepted: the service runs
    log = r.log()
    assert "ignoring unknown key services.rel-svc.numReplicaz (did you mean numReplicas?)" in log
    assert "ignoring unknown key services.rel-svc.autoScaler.minReplica (did you mean minReplicas?)" in log

    url = f"{r.url}/admin/v1/services/"
    # the admin API has no folder: relative paths are refused naming the key; nothing is created
    for doc, key in [({"computeType": "aks", "entryScript": "echo.py"}, "entryScript"),
                     ({"computeType": "aks", "sourceDirectory": "app", "entryScript": "echo.py"}, "sourceDirectory"),
                     ({"computeType": "aks", "entryScript": str(app / "echo.py"), "modelDir": "models"}, "modelDir")]:
        resp = r.admin.put(url + "put-svc", json={**doc, "numReplicas": 1})
        assert resp.status_code == 400, resp.text
        assert resp.json()["key"] == f"services.put-svc.{key}" and "relative" in resp.json()["rule"]
    missing = str(app / "nope.py")
    resp = r.admin.put(url + "put-svc", json={"computeType": "aks", "entryScript": missing, "numReplicas": 1})
    assert resp.status_code == 400 and resp.json()["key"] == "services.put-svc.entryScript"
    assert missing in resp.json()["message"]
    assert r.admin.get(url + "put-svc").status_code == 404
    # an absolute, existing script with a misspelt key is accepted, and the log says which key
    resp = r.admin.put(url + "put-svc", json={"computeType": "aks", "entryScript": str(app / "echo.py"),
                                              "numReplicas": 1, "scoringTimeoutMS": 1000})
    assert resp.status_code == 201, resp.text
    r.wait_ready("put-svc")
    assert ("PUT services/put-svc: ignoring unknown key services.put-svc.scoringTimeoutMS "
            "(did you mean scoringTimeoutMs?)") in r.log()
