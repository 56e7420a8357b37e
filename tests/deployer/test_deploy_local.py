"""The docs' journey on the embedded local target, as real processes: `openscore model register`, `model
deploy` (router started for the workspace, replicas as `openscore serve`), `service show/get-keys/run`,
scoring with the key, a failing init(), the 409 lock, update while running, keys, tokens, logs, delete."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import deploykit as kit
import pytest
import requests

from openscore.deployer.errors import ConflictError, DeployError
from openscore.deployer.inference_config import InferenceConfigSpec
from openscore.deployer.lifecycle import ServiceManager
from openscore.deployer.workspace import Workspace

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def journey(tmp_path_factory):
    """The docs' CLI lines, run as written: one deployed service the module's tests share."""
    folder = kit.journey(tmp_path_factory.mktemp("journey"))
    ws = folder / "ws"
    reg = kit.cli(ws, "model", "register", "-n", "mymodel", "-p", "sklearn_regression_model.pkl", cwd=folder)
    assert reg.returncode == 0, reg.stderr
    dep = kit.cli(ws, "model", "deploy", "-n", "myservice", "-m", "mymodel:1", "--ic", "inferenceconfig.json",
                  "--dc", "deploymentconfig.json", cwd=folder)
    try:
        assert dep.returncode == 0, dep.stdout + dep.stderr
        yield {"folder": folder, "ws": ws, "deploy": dep}
    finally:
        kit.stop_router(ws)


def test_the_docs_journey_scores_through_the_router_with_the_key(journey):
    ws, folder, dep = journey["ws"], journey["folder"], journey["deploy"]
    assert "Warning: no Kubernetes cluster is attached" in dep.stdout
    assert 'AKS service creation operation finished, operation "Succeeded"' in dep.stdout
    show = kit.cli_json(ws, "service", "show", "-n", "myservice")
    assert show["state"] == "Healthy"
    assert show["scoringUri"].endswith("/api/v1/service/myservice/score")
    assert show["swaggerUri"] == show["scoringUri"][: -len("score")] + "swagger.json"
    assert show["models"] == ["mymodel:1"]
    keys = kit.cli_json(ws, "service", "get-keys", "-n", "myservice")
    # curl -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d @data.json $SCORING_URI
    r = requests.post(show["scoringUri"], data=(folder / "data.json").read_bytes(),
                      headers={"Authorization": f"Bearer {keys['primaryKey']}", "Content-Type": "application/json"},
                      timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()[0] == pytest.approx(189.8, abs=0.5)
    assert kit.score(show["scoringUri"], None).status_code == 401
    assert kit.score(show["scoringUri"], keys["secondaryKey"]).status_code == 200
    assert requests.get(show["swaggerUri"], headers={"Authorization": f"Bearer {keys['primaryKey']}"},
                        timeout=30).status_code == 200


def test_service_run_posts_with_the_key_also_from_a_file(journey):
    ws, folder = journey["ws"], journey["folder"]
    out = kit.cli_json(ws, "service", "run", "-n", "myservice", "-d", json.dumps(kit.DATA))
    assert out[0] == pytest.approx(189.8, abs=0.5)
    assert kit.cli_json(ws, "service", "run", "-n", "myservice", "-d", f"@{folder / 'data.json'}") == out


def test_the_model_is_laid_out_as_azure_does_with_a_relative_model_dir(journey):
    out = kit.cli_json(journey["ws"], "service", "run", "-n", "myservice", "-d", '{"probe": 1}')
    assert out["modelDir"] == "azureml-models/mymodel/1"   # MLOpsPython splits it: [1] and [-2] are the name
    assert out["modelDir"].split("/")[1] == out["modelDir"].split("/")[-2] == "mymodel"
    assert out["files"] == ["azureml-models/mymodel/1/sklearn_regression_model.pkl"]
    deployments = journey["ws"] / "deployments" / "myservice"
    assert Path(out["cwd"]).parent == deployments


def test_list_and_read_verbs_print_json_or_a_table(journey):
    ws = journey["ws"]
    listed = kit.cli_json(ws, "service", "list")
    assert [s["name"] for s in listed] == ["myservice"] and listed[0]["state"] == "Healthy"
    table = kit.cli(ws, "service", "list", "-o", "table")
    assert table.returncode == 0
    head, _, row = table.stdout.splitlines()[:3]
    assert head.split()[:3] == ["name", "computeType", "state"] and row.split()[:3] == ["myservice", "AKS", "Healthy"]
    assert kit.cli_json(ws, "service", "list", "--model-name", "mymodel")[0]["name"] == "myservice"
    assert kit.cli_json(ws, "service", "list", "--model-name", "other") == []


def test_get_logs_has_each_replica_and_init_shows_the_start(journey):
    ws = journey["ws"]
    logs = kit.cli(ws, "service", "get-logs", "-n", "myservice", "-l", "50")
    assert logs.returncode == 0
    assert "=== replica myservice.myservice." in logs.stdout and "running" in logs.stdout
    init = kit.cli(ws, "service", "get-logs", "-n", "myservice", "--init")
    assert "model loaded from azureml-models/mymodel/1/sklearn_regression_model.pkl" in init.stdout
    assert "ready: init() took" in init.stdout.splitlines()[-1]  # the init part ends at the ready line


def test_a_second_deploy_of_the_name_needs_overwrite(journey):
    ws, folder = journey["ws"], journey["folder"]
    before = kit.dump(ws)
    r = kit.cli(ws, "model", "deploy", "-n", "myservice", "-m", "mymodel:1", "--ic", "inferenceconfig.json",
                cwd=folder)
    assert r.returncode == 1
    assert "already exists" in r.stderr and "--overwrite" in r.stderr
    assert kit.dump(ws) == before


def test_regen_key_makes_the_old_key_fail_and_the_new_one_work(journey):
    ws = journey["ws"]
    uri = kit.cli_json(ws, "service", "show", "-n", "myservice")["scoringUri"]
    old = kit.cli_json(ws, "service", "get-keys", "-n", "myservice")
    new = kit.cli_json(ws, "service", "regen-key", "-n", "myservice", "--key", "Secondary")
    assert new["primaryKey"] == old["primaryKey"] and new["secondaryKey"] != old["secondaryKey"]
    assert kit.score(uri, old["secondaryKey"]).status_code == 401
    assert kit.score(uri, new["secondaryKey"]).status_code == 200
    chosen = "my-own-primary-key-123"
    set_ = kit.cli_json(ws, "service", "regen-key", "-n", "myservice", "--key", "primary", "--set-key", chosen)
    assert set_["primaryKey"] == chosen
    assert kit.score(uri, old["primaryKey"]).status_code == 401
    assert kit.score(uri, chosen).status_code == 200
    bad = kit.cli(ws, "service", "regen-key", "-n", "myservice", "--key", "Tertiary")
    assert bad.returncode == 1 and "Primary or Secondary" in bad.stderr


def test_a_key_service_has_no_token(journey):
    r = kit.cli(journey["ws"], "service", "get-access-token", "-n", "myservice")
    assert r.returncode == 1 and "Token auth is not enabled" in r.stderr


def test_update_while_running_keeps_serving_and_applies(journey):
    """`service update --dc` with a fixed replica count: new replicas start beside the old ones, requests
    keep being answered meanwhile, and the service ends Healthy with two replicas."""
    ws, folder = journey["ws"], journey["folder"]
    uri = kit.cli_json(ws, "service", "show", "-n", "myservice")["scoringUri"]
    key = kit.cli_json(ws, "service", "get-keys", "-n", "myservice")["primaryKey"]
    kit.write_json(folder / "two.json", {"computeType": "aks", "numReplicas": 2,
                                         "autoScaler": {"autoscaleEnabled": False}})
    statuses: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        with requests.Session() as s:
            while not stop.is_set():
                statuses.append(s.post(uri, data=json.dumps(kit.DATA), timeout=30,
                                       headers={"Authorization": f"Bearer {key}"}).status_code)

    t = threading.Thread(target=traffic)
    t.start()
    try:
        up = kit.cli(ws, "service", "update", "-n", "myservice", "--dc", "two.json", cwd=folder)
    finally:
        stop.set()
        t.join()
    assert up.returncode == 0, up.stdout + up.stderr
    assert 'operation "Succeeded"' in up.stdout
    assert statuses and set(statuses) == {200}
    router = kit.cli_json(ws, "service", "show", "-n", "myservice")
    assert router["state"] == "Healthy"
    mgr = ServiceManager(Workspace(ws))
    status = mgr.router.ensure().get_service("myservice")
    assert status["versions"]["myservice"]["desiredReplicas"] == 2
    nothing = kit.cli(ws, "service", "update", "-n", "myservice")
    assert nothing.returncode == 1 and "No parameters provided to update." in nothing.stderr


def test_an_operation_in_progress_is_a_409_naming_it_and_a_stale_lock_is_taken_over(journey, tmp_path):
    ws = journey["ws"]
    src = tmp_path / "slow"
    kit.write_script(src, "score.py", kit.ECHO_PY)
    mgr = ServiceManager(Workspace(ws))
    ic = InferenceConfigSpec.from_dict({"entryScript": "score.py", "sourceDirectory": str(src),
                                        "environment": {"environmentVariables": {"ECHO_INIT_S": "4"}}}, tmp_path)
    mgr.deploy("slowsvc", [], ic, None, log=lambda s: None)
    try:
        r = kit.cli(ws, "service", "delete", "-n", "slowsvc")
        assert r.returncode == 1
        assert "Operation 'Create' on service slowsvc is in progress" in r.stderr
        with pytest.raises(ConflictError) as e:
            mgr.update("slowsvc", changes={"numReplicas": 1})
        assert e.value.status == 409
        assert kit.cli_json(ws, "service", "show", "-n", "slowsvc")["operationInProgress"] == "Create"
        assert mgr.wait("slowsvc", log=lambda s: None).state == "Healthy"
        # a lock left by a process that died is taken over
        conn = sqlite3.connect(ws / "workspace.db")
        with conn:
            conn.execute("INSERT INTO operations(service, operation, pid, started) VALUES ('slowsvc', 'Update', "
                         "?, 1.0)", (_dead_pid(),))
        conn.close()
        assert kit.cli(ws, "service", "delete", "-n", "slowsvc").returncode == 0
    finally:
        if mgr._row("slowsvc") is not None:
            mgr._release("slowsvc")
            mgr.delete("slowsvc")


def _dead_pid() -> int:
    import subprocess
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_init_that_raises_is_failed_with_the_exception_and_log_lines(journey, tmp_path):
    ws = journey["ws"]
    kit.write_script(tmp_path / "bad", "score.py", kit.FAILING_PY)
    kit.write_json(tmp_path / "ic.json", {"entryScript": "score.py", "sourceDirectory": "bad"})
    r = kit.cli(ws, "model", "deploy", "-n", "badinit", "--ic", "ic.json", "--ct", "local", cwd=tmp_path)
    try:
        assert r.returncode == 1
        assert "Service deployment polling reached non-successful terminal state, current service state: Failed" \
            in r.stderr
        assert "ValueError: fault_init_error: model could not be loaded" in r.stderr
        assert "loading the model before failing" in r.stderr  # the replica's own output, from its log
        show = kit.cli_json(ws, "service", "show", "-n", "badinit")
        assert show["state"] == "Failed"
        assert show["error"]["details"][0]["code"] == "CrashLoopBackOff"
        assert "fault_init_error" in show["error"]["details"][0]["message"]
        logs = kit.cli(ws, "service", "get-logs", "-n", "badinit")
        assert "exited" in logs.stdout and "Traceback" in logs.stdout and "fault_init_error" in logs.stdout
    finally:
        assert kit.cli(ws, "service", "delete", "-n", "badinit").returncode == 0


def test_token_auth_service_gives_tokens_that_score(journey, tmp_path):
    ws = journey["ws"]
    kit.write_script(tmp_path / "echo", "score.py", kit.ECHO_PY)
    kit.write_json(tmp_path / "ic.json", {"entryScript": "score.py", "sourceDirectory": "echo"})
    kit.write_json(tmp_path / "dc.json", {"computeType": "local", "tokenAuthEnabled": True, "authEnabled": False})
    r = kit.cli(ws, "model", "deploy", "-n", "tokensvc", "-ic", "ic.json", "-dc", "dc.json", cwd=tmp_path)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Warning: no Kubernetes cluster" not in r.stdout  # computeType local needs no cluster
        tok = kit.cli_json(ws, "service", "get-access-token", "-n", "tokensvc")
        assert tok["tokenType"] == "Bearer" and tok["expiryOn"] > tok["refreshAfter"] > 0
        uri = kit.cli_json(ws, "service", "show", "-n", "tokensvc")["scoringUri"]
        assert kit.score(uri, tok["accessToken"], {"x": 1}).status_code == 200
        assert kit.score(uri, "not-a-token", {"x": 1}).status_code == 401
        out = kit.cli_json(ws, "service", "run", "-n", "tokensvc", "-d", '{"x": 2}')
        assert out["echo"] == {"x": 2} and out["modelDir"] == ""
    finally:
        kit.cli(ws, "service", "delete", "-n", "tokensvc")


def test_several_models_share_the_azureml_models_folder(journey, tmp_path):
    ws, folder = journey["ws"], journey["folder"]
    assert kit.cli(ws, "model", "register", "-n", "second", "-p", "data.json", cwd=folder).returncode == 0
    mgr = ServiceManager(Workspace(ws))
    kit.write_script(tmp_path / "echo", "score.py", kit.ECHO_PY)
    ic = InferenceConfigSpec.from_dict({"entryScript": "score.py", "sourceDirectory": "echo"}, tmp_path)
    models = [mgr.ws.models.resolve("mymodel:1"), mgr.ws.models.resolve("second")]
    mgr.deploy("twomodels", models, ic, None, log=lambda s: None)
    try:
        mgr.wait("twomodels", log=lambda s: None)
        out = mgr.run("twomodels", "{}")
        assert out["modelDir"] == "azureml-models"
        assert out["files"] == ["azureml-models/mymodel/1/sklearn_regression_model.pkl",
                                "azureml-models/second/1/data.json"]
        r = kit.cli(ws, "model", "delete", "-i", "second:1")
        assert r.returncode == 1 and "twomodels" in r.stderr
    finally:
        mgr.delete("twomodels")
    assert kit.cli(ws, "model", "delete", "-i", "second:1").returncode == 0


def test_delete_removes_the_service_from_the_router_and_the_workspace(journey, tmp_path):
    ws = journey["ws"]
    kit.write_script(tmp_path / "echo", "score.py", kit.ECHO_PY)
    kit.write_json(tmp_path / "ic.json", {"entryScript": "score.py", "sourceDirectory": "echo"})
    assert kit.cli(ws, "model", "deploy", "-n", "gone", "--ic", "ic.json", cwd=tmp_path).returncode == 0
    mgr = ServiceManager(Workspace(ws))
    client = mgr.router.ensure()
    assert client.get_service("gone")["state"] == "Healthy"
    assert (ws / "deployments" / "gone").is_dir()
    r = kit.cli(ws, "service", "delete", "-n", "gone")
    assert r.returncode == 0, r.stderr
    with pytest.raises(DeployError):
        client.get_service("gone")
    assert not (ws / "deployments" / "gone").exists()
    assert not (ws / "router" / "logs" / "gone").exists()
    conn = sqlite3.connect(ws / "workspace.db")
    assert conn.execute("SELECT COUNT(*) FROM services WHERE name = 'gone'").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM service_models WHERE service = 'gone'").fetchone()[0] == 0
    conn.close()
    again = kit.cli(ws, "service", "show", "-n", "gone")
    assert again.returncode == 1 and "No service with name gone" in again.stderr


def test_the_router_is_reused_and_never_another_server_on_its_port(journey, tmp_path):
    """A recorded port some other program owns (not answering this workspace's admin key) is not used."""
    ws = journey["ws"]
    pid = kit.router_pid(ws)
    assert pid and os.path.exists(f"/proc/{pid}")
    kit.cli_json(ws, "service", "show", "-n", "myservice")
    assert kit.router_pid(ws) == pid  # reused, not restarted
    other = tmp_path / "other"
    other.mkdir()
    import http.server
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    (other / "router.json").write_text(json.dumps({"pid": os.getpid(), "port": server.server_address[1],
                                                   "started": 1.0}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from openscore.deployer.local_router import LocalRouter
        assert LocalRouter(other).running() is None
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_overwriting_a_healthy_service_under_load_ends_healthy_every_time(journey, tmp_path):
    """`model deploy --overwrite` of a Healthy service, several times in a row while it is scored and scales:
    the replaced replica drains and stops (its log written during the operation), which is no crash."""
    ws = journey["ws"]
    kit.write_script(tmp_path / "echo", "score.py", kit.ECHO_PY)
    kit.write_json(tmp_path / "ic.json", {"entryScript": "score.py", "sourceDirectory": "echo"})
    kit.write_json(tmp_path / "dc.json", {"computeType": "aks", "authEnabled": False, "autoScaler": {
        "autoscaleEnabled": True, "minReplicas": 1, "maxReplicas": 2, "refreshPeriodInSeconds": 1,
        "targetUtilization": 10}})
    args = ("model", "deploy", "-n", "overwritten", "--ic", "ic.json", "--dc", "dc.json", "--overwrite")
    first = kit.cli(ws, *args, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    uri = kit.last_json(first.stdout)["scoringUri"]
    stop = threading.Event()

    def load() -> None:
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    s.post(uri, json={"x": 1}, timeout=10)
                except requests.RequestException:
                    pass

    threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for i in range(3):
            r = kit.cli(ws, *args, cwd=tmp_path)
            assert r.returncode == 0, f"overwrite {i + 1}:\n{r.stdout}\n{r.stderr}"
            assert 'operation "Succeeded"' in r.stdout
            show = kit.cli_json(ws, "service", "show", "-n", "overwritten")
            assert (show["state"], show["error"]) == ("Healthy", None), show
            # the replaced folder goes once the operation is over (before, a replica starting in it crashed)
            assert len(list((ws / "deployments" / "overwritten").iterdir())) == 1
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
        assert kit.cli(ws, "service", "delete", "-n", "overwritten").returncode == 0


class _Recorder:
    """A foreign HTTP server on 127.0.0.1 that records every request's headers; `relay_to`: a port whose
    answer to the identity route it passes off as its own (a relay of the client's nonce)."""

    def __init__(self, relay_to: int | None = None):
        import http.server

        seen: list[dict[str, str]] = []
        self.headers = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(dict(self.headers))
                body = b'{"proof": "0000"}'
                if relay_to is not None and self.path.startswith("/admin/v1/identity"):
                    body = requests.get(f"http://127.0.0.1:{relay_to}{self.path}", timeout=10).content
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_PUT = do_DELETE = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def saw(self, secret: str) -> bool:
        return any(secret in v for h in self.headers for v in h.values())


def test_a_foreign_server_on_the_routers_port_never_receives_the_admin_key(journey, tmp_path, monkeypatch):
    """router.json names a live pid (a reused one) and a port another program owns, or OPENSCORE_ROUTER_PORT
    points at it, or it relays the identity question to the real router: the admin key is never sent."""
    from openscore.deployer.local_router import LocalRouter

    real = LocalRouter(journey["ws"]).running()
    assert real is not None
    other = tmp_path / "other"
    other.mkdir()
    key = LocalRouter(other).admin_key()
    for relay in (None, real.port):
        foreign = _Recorder(relay_to=relay)
        try:
            (other / "router.json").write_text(json.dumps({"pid": os.getpid(), "port": foreign.port,
                                                           "started": 1.0}))
            monkeypatch.delenv("OPENSCORE_ROUTER_PORT", raising=False)
            assert LocalRouter(other).running() is None
            monkeypatch.setenv("OPENSCORE_ROUTER_PORT", str(foreign.port))
            with pytest.raises(DeployError) as e:
                LocalRouter(other).running()
            assert f"OPENSCORE_ROUTER_PORT={foreign.port}" in str(e.value)
            assert "is not this workspace's router" in str(e.value) and "the key was not sent" in str(e.value)
            assert foreign.headers, "the client never asked the foreign server anything"
            assert not foreign.saw(key)
        finally:
            foreign.close()


def test_the_identity_route_proves_the_key_without_auth_bound_to_the_port(journey):
    from openscore.deployer.local_router import LocalRouter

    real = LocalRouter(journey["ws"]).running()
    assert real is not None
    nonce = "n" * 32
    r = requests.get(f"{real.base_url}/admin/v1/identity", params={"nonce": nonce}, timeout=10)
    assert r.status_code == 200 and r.json()["proof"] == real.expected_proof(nonce)
    import hmac as _hmac
    other_port = _hmac.new(real._key.encode(), f"openscore-router-identity:{real.port + 1}:{nonce}".encode(),
                           "sha256").hexdigest()
    assert r.json()["proof"] != other_port
    for bad in ({}, {"nonce": "short"}, {"nonce": "x" * 300}):
        b = requests.get(f"{real.base_url}/admin/v1/identity", params=bad, timeout=10)
        assert b.status_code == 400 and "nonce is required" in b.json()["message"]
    assert requests.post(f"{real.base_url}/admin/v1/identity?nonce={nonce}", timeout=10).status_code == 405
    assert requests.get(f"{real.base_url}/admin/v1/services", timeout=10).status_code == 401
