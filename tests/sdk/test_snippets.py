"""The Python snippets of Azure's "Deploy a model to an Azure Kubernetes Service cluster" page, run as written
with `openscore azureml run` (tests/sdk/snippets/*.py): only the workspace comes from a local config.json,
and the page's cluster is the attached `local` target. Each runs against real router and replica processes;
what the page promises is then checked from outside the script (scoring with the key or token it printed,
the router's configuration of the service)."""

from __future__ import annotations

import json
import re

import requests
from sdkkit import SNIPPETS, Project, lines_after

from tests.deployer.deploykit import DATA


def _run(project: Project, snippet: str) -> str:
    r = project.azureml_run(SNIPPETS / snippet)
    assert r.returncode == 0, f"{snippet} failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _score(uri: str, authorization: str | None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = f"Bearer {authorization}"
    return requests.post(uri, data=json.dumps(DATA), headers=headers, timeout=30)


def _router_config(project: Project, name: str) -> dict:
    client = project.router().running()
    assert client is not None, "the workspace's router is not running"
    return client.get_service(name)


def test_deploy_to_aks_snippet_deploys_waits_and_gets_keys(project):
    out = _run(project, "deploy_to_aks.py")
    assert 'AKS service creation operation finished, operation "Succeeded"' in out
    assert "\nHealthy\n" in out                                  # print(service.state)
    assert "model loaded from azureml-models/mymodel/1/sklearn_regression_model.pkl" in out  # print(get_logs())
    uri = lines_after(out, "scoring_uri:")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/v1/service/myservice/score", uri)
    assert re.match(r"\[189\.8\d*\]", lines_after(out, "prediction:"))   # service.run(...)
    assert lines_after(out, "found again:") == "AksWebservice Healthy"  # Webservice(ws, name): the right class
    primary = out.split('"Succeeded"\n', 1)[1].split("scoring_uri:")[0].strip().splitlines()[-1]  # print(primary)
    ok = _score(uri, primary)
    assert ok.status_code == 200 and ok.json()[0] > 180
    assert _score(uri, None).status_code == 401                  # key auth is on by default for aks
    assert _score(uri, "not-the-key").status_code == 401
    doc = _router_config(project, "myservice")
    assert json.dumps(doc).count('"cpu": 1') >= 1 and '"memoryInGB": 1' in json.dumps(doc)


def test_autoscale_snippet_settings_reach_the_service(project):
    out = _run(project, "autoscale.py")
    assert "\nHealthy\n" in out
    assert lines_after(out, "replicas:") == "286"                 # the page's replica formula, run as written
    doc = json.dumps(_router_config(project, "autoscaled"))
    for key, value in (("autoscaleEnabled", "true"), ("targetUtilization", "30"), ("minReplicas", "1"),
                       ("maxReplicas", "4")):
        assert f'"{key}": {value}' in doc, doc


def test_endpoint_snippets_create_add_update_and_delete_versions(project):
    out = _run(project, "endpoint_versions.py")
    assert 'AKSENDPOINT service creation operation finished, operation "Succeeded"' in out
    # the first version is the default; versionb takes 10 %, then 40 % as the default Control version
    assert lines_after(out, "after create:") == "{'versiona': (20, True)}"
    assert lines_after(out, "after create_version:") == "{'versiona': (20, True), 'versionb': (10, False)}"
    assert lines_after(out, "after update_version:") == \
        "{'versiona': (20, False, 'Treatment'), 'versionb': (40, True, 'Control')}"
    assert lines_after(out, "after delete_version:") == "['versiona']"
    doc = _router_config(project, "mynewendpoint")
    assert set(doc["versions"]) == {"versiona"}
    from openscore.sdk import Webservice, Workspace
    ws = Workspace.from_config(project.root / "config.json")
    endpoint = Webservice(ws, "mynewendpoint")
    assert type(endpoint).__name__ == "AksEndpoint" and endpoint.tags == {"sckitlearn": "demo"}
    assert endpoint.description == "testing versions"
    key = endpoint.get_keys()[0]
    assert _score(lines_after(out, "scoring_uri:"), key).status_code == 200   # versiona takes all the traffic
    ws.store.close()


def test_token_snippet_gets_a_token_that_scores(project):
    out = _run(project, "token_auth.py")
    token = out.split('"Succeeded"\n', 1)[1].splitlines()[0].strip()   # print(token)
    uri = lines_after(out, "scoring_uri:")
    assert token.count(".") == 2                                  # a JWT
    assert _score(uri, token).status_code == 200
    assert _score(uri, None).status_code == 401
    assert lines_after(out, "refresh_by:").endswith("+00:00")
