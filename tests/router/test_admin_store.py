"""The admin API over the new store, through a real router: revisions and 409 on a stale write, keys never in
the config document, a change to one version leaving the others' replicas alone, and what the router counts
and logs for requests it answers itself."""

import re
import time

import pytest
import requests
from routerkit import service

ECHO = str(service("echo.py")["entryScript"])


def version(tag, **keys):
    return {"entryScript": ECHO, "numReplicas": 1, "environment": {"environmentVariables": {"TAG": tag}}, **keys}


def endpoint():
    return {"computeType": "aksendpoint", "authEnabled": False,
            "versions": {"ver-a": version("a1", trafficPercentile=50), "ver-b": version("b1", trafficPercentile=50)}}


@pytest.fixture(scope="module")
def router(module_router):
    return module_router({
        "ab-svc": endpoint(),
        "keyed-svc": service("echo.py", keys={"primaryKey": "primary-key-0001", "secondaryKey": "secondary-0001"}),
        "small-svc": service("echo.py", authEnabled=False, maxRequestBodyBytes=1000),
    })


def pids(router, name):
    return {v: sorted(r["pid"] for r in st["replicas"]) for v, st in router.status(name)["versions"].items()}


def wait_log(router, text, timeout=5.0):
    deadline = time.monotonic() + timeout
    while text not in router.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    return [ln for ln in router.log().splitlines() if text in ln]


def test_a_change_to_one_version_leaves_the_others_running(router):
    url = f"{router.url}/admin/v1/services/ab-svc"
    before = pids(router, "ab-svc")
    doc = router.admin.get(url).json()["config"]  # read, change one version, write back
    doc["versions"]["ver-b"]["environment"]["environmentVariables"]["TAG"] = "b2"  # a new template for it only
    assert router.admin.put(url, json=doc).status_code == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reps = router.status("ab-svc")["versions"]["ver-b"]["replicas"]
        if len(reps) == 1 and not reps[0]["outdated"] and reps[0]["phase"] == "ready":
            break
        time.sleep(0.1)
    after = pids(router, "ab-svc")
    assert after["ver-a"] == before["ver-a"]  # same processes: untouched
    assert after["ver-b"] != before["ver-b"] and len(after["ver-b"]) == 1
    s = requests.Session()
    tags = {s.post(f"{router.url}/api/v1/service/ab-svc/versions/ver-b/score", data=b"{}").json()["tag"]
            for _ in range(5)}
    assert tags == {"b2"}
    # a change only the router applies (traffic split) starts nothing new anywhere
    doc["versions"]["ver-a"]["trafficPercentile"], doc["versions"]["ver-b"]["trafficPercentile"] = 90, 10
    assert router.admin.put(url, json=doc).status_code == 200
    assert pids(router, "ab-svc") == after
    assert router.status("ab-svc")["versions"]["ver-a"]["trafficShare"] == 90


def test_revisions_and_a_stale_write_is_409(router):
    url = f"{router.url}/admin/v1/services/small-svc"
    got = router.admin.get(url)
    assert got.status_code == 200
    rev = got.json()["revision"]
    assert rev and got.headers["ETag"] == f'"{rev}"'
    doc = got.json()["config"]
    doc["scoringTimeoutMs"] = 30000
    put = router.admin.put(url, json=doc, headers={"If-Match": got.headers["ETag"]})
    assert put.status_code == 200 and put.json()["revision"] != rev
    assert put.headers["ETag"] == f'"{put.json()["revision"]}"'
    doc["scoringTimeoutMs"] = 20000
    stale = router.admin.put(url, json=doc, headers={"If-Match": rev})  # a writer that read the old one
    assert stale.status_code == 409 and "changed since revision" in stale.json()["message"]
    now = router.admin.get(url).json()
    assert now["config"]["scoringTimeoutMs"] == 30000 and now["revision"] == put.json()["revision"]
    assert router.admin.delete(url, headers={"If-Match": rev}).status_code == 409  # nor a stale delete
    # a write without a revision still works (last write wins), and a bad If-Match is a 400
    doc["scoringTimeoutMs"] = 25000
    assert router.admin.put(url, json=doc).status_code == 200
    assert router.admin.put(url, json=doc, headers={"If-Match": '"1", "2"'}).status_code == 400
    r = requests.post(f"{router.url}/api/v1/service/small-svc/score", data=b"{}")
    assert r.status_code == 200 and r.headers["x-openscore-scoring-timeout-ms"] == "25000"


def test_the_config_document_never_holds_keys(router):
    url = f"{router.url}/admin/v1/services/keyed-svc"
    got = router.admin.get(url).json()
    assert "keys" not in got["config"] and "primary-key-0001" not in str(got)
    doc = {**got["config"], "keys": {"primaryKey": "primary-key-0002"}}  # set a key through the document
    put = router.admin.put(url, json=doc)
    assert put.status_code == 200 and "primary-key-0002" not in put.text
    assert "primary-key-0002" not in router.admin.get(url).text
    assert router.keys("keyed-svc") == {"primaryKey": "primary-key-0002", "secondaryKey": "secondary-0001"}
    score = f"{router.url}/api/v1/service/keyed-svc/score"
    assert requests.post(score, data=b"{}", headers={"Authorization": "Bearer primary-key-0002"}).status_code == 200
    assert requests.post(score, data=b"{}", headers={"Authorization": "Bearer primary-key-0001"}).status_code == 401
    for path in (router.workspace / "store" / "objects").rglob("*.json"):
        assert "primary-key-0002" not in path.read_text()


def test_a_401_gets_an_access_line(router):
    r = requests.post(f"{router.url}/api/v1/service/keyed-svc/score", data=b"{}",
                      headers={"Authorization": "Bearer wrong-key-00001", "x-request-id": "probe-401"})
    assert r.status_code == 401
    lines = wait_log(router, "request_id=probe-401")
    assert len(lines) == 1, lines
    assert "openscore.router.access - POST /api/v1/service/keyed-svc/score 401 service=keyed-svc" in lines[0]
    assert "limit=auth" in lines[0]
    r = requests.get(f"{router.url}/admin/v1/services", headers={"x-request-id": "probe-admin-401"})
    assert r.status_code == 401
    assert len(wait_log(router, "request_id=probe-admin-401")) == 1
    r = requests.post(f"{router.url}/api/v1/service/nope-svc/score", headers={"x-request-id": "probe-404"})
    assert r.status_code == 404
    assert len(wait_log(router, "request_id=probe-404")) == 1


def rejected(router, reason, name):
    text = requests.get(f"{router.url}/metrics", timeout=5).text
    m = re.search(rf'openscore_router_rejected_total\{{reason="{reason}",service="{name}",version="{name}"\}} (\S+)',
                  text)
    return float(m.group(1)) if m else 0.0


def test_a_streamed_413_is_counted(router):
    before = rejected(router, "payload_limit", "small-svc")

    def chunks():  # no Content-Length: the limit is found while streaming to the replica
        for _ in range(5):
            yield b"y" * 400
    for i in range(2):
        r = requests.post(f"{router.url}/api/v1/service/small-svc/score", data=chunks(),
                          headers={"x-request-id": f"probe-413-{i}"})
        assert r.status_code == 413 and r.headers["x-openscore-limit"] == "payload_limit"
    assert rejected(router, "payload_limit", "small-svc") == before + 2
    assert len(wait_log(router, "request_id=probe-413-1")) == 1
    r = requests.post(f"{router.url}/api/v1/service/small-svc/score", data=b"x" * 1001)  # the up-front one
    assert r.status_code == 413
    assert rejected(router, "payload_limit", "small-svc") == before + 3
    text = requests.get(f"{router.url}/metrics", timeout=5).text
    assert "payload_too_large" not in text
