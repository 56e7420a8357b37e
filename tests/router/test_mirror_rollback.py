"""Shadow (mirrored) traffic and one-step rollback against real router and replica processes."""

import re
import time

import requests
from routerkit import replica_secret, service

ECHO = str(service("echo.py")["entryScript"])


def version(tag, **keys):
    return {"entryScript": ECHO, "numReplicas": 1, "environment": {"environmentVariables": {"TAG": tag}}, **keys}


def replica_scores(r, svc, vname):
    """Requests the version's replica itself answered on /score (its own Prometheus counter)."""
    replica = r.status(svc)["versions"][vname]["replicas"][0]
    text = requests.get(f"{replica['address']}/metrics", headers=replica_secret(replica["pid"]), timeout=5).text
    return sum(float(m) for m in re.findall(r'openscore_requests_total\{[^}]*route="score"[^}]*\} (\S+)', text))


def test_mirror_copies_a_share_and_never_answers(start_router):
    ep = {"computeType": "aksendpoint", "authEnabled": False, "mirrorTraffic": {"shadow": 25},
          "versions": {"live": version("live", trafficPercentile=100), "shadow": version("shadow")}}
    r = start_router({"mirror-svc": ep})
    assert r.status("mirror-svc")["versions"]["shadow"]["mirrorShare"] == 25
    s = requests.Session()
    url = f"{r.url}/api/v1/service/mirror-svc/score"
    for i in range(200):
        resp = s.post(url, data=f'{{"i": {i}}}')
        assert resp.status_code == 200 and resp.headers["x-openscore-version"] == "live"
        assert resp.json()["tag"] == "live"  # the client only ever sees the live version's answer
    deadline = time.monotonic() + 10
    while replica_scores(r, "mirror-svc", "shadow") < 50 and time.monotonic() < deadline:
        time.sleep(0.1)  # copies are sent in the background
    assert replica_scores(r, "mirror-svc", "shadow") == 50  # exactly 25 % of 200
    assert replica_scores(r, "mirror-svc", "live") == 200
    metrics = requests.get(r.url + "/metrics").text
    assert re.search(r'openscore_router_mirrored_total\{[^}]*status="200"[^}]*version="shadow"[^}]*\} 50\.0',
                     metrics), metrics[-3000:]


def test_rollback_restores_the_previous_configuration(start_router):
    r = start_router({"rb-svc": {**service("echo.py", authEnabled=False),
                                 "environment": {"environmentVariables": {"TAG": "v1"}}}})
    url = f"{r.url}/api/v1/service/rb-svc/score"
    assert requests.post(url, data=b"{}").json()["tag"] == "v1"
    admin = f"{r.url}/admin/v1/services/rb-svc"
    resp = r.admin.post(admin + "/rollback")
    assert resp.status_code == 409 and "no previous configuration" in resp.json()["message"]

    doc = r.admin.get(admin).json()["config"]
    doc["environment"]["environmentVariables"]["TAG"] = "v2"
    assert r.admin.put(admin, json=doc).status_code == 200
    wait_for_tag(url, "v2")
    assert r.admin.post(admin + "/rollback").status_code == 200
    wait_for_tag(url, "v1")
    assert r.admin.get(admin).json()["config"]["environment"]["environmentVariables"]["TAG"] == "v1"
    assert r.admin.post(f"{r.url}/admin/v1/services/nope-svc/rollback").status_code == 404


def wait_for_tag(url, tag, timeout=20.0):
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        resp = requests.post(url, data=b"{}")
        assert resp.status_code == 200, resp.text  # the change never fails a request
        seen = resp.json()["tag"]
        if seen == tag:
            return
        time.sleep(0.05)
    raise AssertionError(f"still serving {seen!r}, wanted {tag!r}")
