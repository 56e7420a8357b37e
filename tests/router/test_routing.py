"""Routing through a real router process to real replicas: URLs, limits, status rewriting, exact slots."""

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from routerkit import service

JSON = {"Content-Type": "application/json"}
OPEN = {"authEnabled": False}


@pytest.fixture(scope="module")
def router(module_router):
    r = module_router({
        "echo-a": service("echo.py", numReplicas=2, **OPEN),
        "slow-one": service("slow.py", maxQueueWaitMs=200, **OPEN),
        "timeout-svc": service("slow.py", scoringTimeoutMs=300, **OPEN),
        "race-svc": service("slow.py", numReplicas=2, maxConcurrentRequestsPerContainer=2, maxQueueWaitMs=10000,
                            replicaArgs=["--max-queue-size", "0"], **OPEN),
        "small-body": service("echo.py", maxRequestBodyBytes=1000, **OPEN),
        "not-ready": service("never_ready.py", **OPEN),
    }, wait=False)
    r.wait_ready(None)
    for name in ("echo-a", "slow-one", "timeout-svc", "race-svc", "small-body"):
        r.wait_ready(name, replicas=2 if name in ("echo-a", "race-svc") else 1)
    return r


def score(router, name, body=b"{}", headers=JSON, **kw):
    return requests.post(f"{router.url}/api/v1/service/{name}/score", data=body, headers=headers, timeout=30, **kw)


def test_score_headers_and_swagger(router):
    r = score(router, "echo-a", b'{"a": 1}')
    assert r.status_code == 200, r.text
    assert r.json()["len"] == 8 and r.json()["version"] == "echo-a"
    h = r.headers
    assert h["x-openscore-version"] == "echo-a" and h["x-openscore-replica"].startswith("echo-a.echo-a.")
    assert float(h["x-openscore-router-queue-wait-ms"]) >= 0
    assert h["x-openscore-scoring-timeout-ms"] == "60000" and h["x-openscore-max-queue-wait-ms"] == "500"
    assert "x-openscore-slots-busy" not in h  # replica internals stay inside
    assert h["x-request-id"] and h["x-ms-request-id"] == h["x-request-id"]
    r = requests.get(f"{router.url}/api/v1/service/echo-a/swagger.json", timeout=10)
    assert r.status_code == 200 and "paths" in r.json()
    r = requests.get(f"{router.url}/api/v1/service/echo-a/score?x=1", timeout=10)  # GET is routed
    assert r.status_code == 200
    r = requests.get(f"{router.url}/api/v1/service/echo-a/score?x=a%20b&y=%C3%A9", timeout=10)  # raw query
    assert r.status_code == 200 and r.json()["len"] == len(json.dumps({"x": "a b", "y": "é"}))


def test_both_replicas_serve_over_keep_alive(router):
    s = requests.Session()
    pids = {s.post(f"{router.url}/api/v1/service/echo-a/score", data=b"{}", headers=JSON).json()["pid"]
            for _ in range(20)}
    assert len(pids) == 2


def test_version_path_and_404s(router):
    r = requests.post(f"{router.url}/api/v1/service/echo-a/versions/echo-a/score", data=b"{}", headers=JSON)
    assert r.status_code == 200 and r.headers["x-openscore-version"] == "echo-a"
    for url, text in (("/api/v1/service/echo-a/versions/nope/score", "no version nope"),
                      ("/api/v1/service/nope/score", "Service nope not found"),
                      ("/api/v1/service/echo-a/other", "Unknown route"),
                      ("/elsewhere", "No route")):
        r = requests.post(router.url + url, data=b"{}")
        assert r.status_code == 404 and text in r.json()["message"], (url, r.text)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "OPTIONS", "PATCH", "HEAD"])
def test_only_get_and_post_are_routed(router, method):
    r = requests.request(method, f"{router.url}/api/v1/service/echo-a/score", timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, POST"


def test_malformed_http_is_a_json_error_and_the_router_keeps_serving(router):
    r = score(router, "echo-a", headers={**JSON, "X-Huge": "h" * 20000})
    assert r.status_code == 431 and "too large" in r.json()["message"]
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        reply = s.recv(4096)
    assert reply.split(b" ")[1] == b"400" and b"application/json" in reply and b'{"message":"Bad request' in reply
    assert score(router, "echo-a").status_code == 200


def test_access_log_says_which_replica_and_limits(router):
    r = score(router, "echo-a", headers={**JSON, "x-request-id": "log-probe-1"})
    assert r.status_code == 200
    deadline = time.monotonic() + 5
    while "request_id=log-probe-1" not in router.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(ln for ln in router.log().splitlines() if "request_id=log-probe-1" in ln)
    assert "openscore.router.access - POST /api/v1/service/echo-a/score 200 service=echo-a version=echo-a" in line
    assert f"replica={r.headers['x-openscore-replica']} queue_ms=" in line and "limit=-" in line
    r = score(router, "small-body", b"x" * 2000, headers={**JSON, "x-request-id": "log-probe-2"})
    assert r.status_code == 413
    deadline = time.monotonic() + 5
    while "request_id=log-probe-2" not in router.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "413 service=small-body" in router.log() and "limit=payload_limit request_id=log-probe-2" in router.log()


def test_payload_limit(router):
    r = score(router, "small-body", b"x" * 1001)
    assert r.status_code == 413 and r.headers["x-openscore-limit"] == "payload_limit"
    assert "1000 bytes" in r.json()["message"]
    assert score(router, "small-body", b"x" * 1000).status_code == 200

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(5):
            yield b"y" * 400
    r = score(router, "small-body", chunks())
    assert r.status_code == 413


def test_large_bodies_stream_both_ways(router):
    body = b'"' + b"z" * (3 * 1024 * 1024) + b'"'
    r = score(router, "echo-a", body)
    assert r.status_code == 200 and r.json()["len"] == len(body)
    r = score(router, "echo-a", b"big:3000000", headers={"Content-Type": "text/plain"})
    assert r.status_code == 200 and len(r.json()) == 3_000_000

    def chunks():  # no Content-Length: streamed on as a chunked body
        yield b'"'
        for _ in range(20):
            yield b"c" * 65536
        yield b'"'
    r = score(router, "echo-a", chunks())
    assert r.status_code == 200 and r.json()["len"] == 20 * 65536 + 2
    s = requests.Session()  # keep-alive connections to the replicas stay usable after big bodies
    for _ in range(3):
        r = s.post(f"{router.url}/api/v1/service/echo-a/score", data=body, headers=JSON, timeout=30)
        assert r.status_code == 200 and r.json()["len"] == len(body)
        assert s.post(f"{router.url}/api/v1/service/echo-a/score", data=b"{}", headers=JSON).json()["len"] == 2


def test_model_500_becomes_502_other_statuses_pass(router):
    r = score(router, "slow-one", b'{"raise": true}')
    assert r.status_code == 502 and r.headers["x-ms-run-function-failed"] == "True"
    r = requests.get(f"{router.url}/api/v1/service/echo-a/swagger.json?version=9", timeout=10)
    assert r.status_code == 404 and r.headers["x-openscore-replica"]  # the replica's 404 passes through


def test_queue_deadline_gives_503_overloaded(router):
    holder = threading.Thread(target=score, args=(router, "slow-one", b'{"sleep": 1.5}'))
    holder.start()
    time.sleep(0.3)
    try:
        t0 = time.monotonic()
        r = score(router, "slow-one", b'{"sleep": 0}')
        waited = time.monotonic() - t0
    finally:
        holder.join()
    assert r.status_code == 503, r.text
    assert "Too many requests for service slow-one (overloaded)" in r.json()["message"]
    assert r.headers["Retry-After"] == "1" and r.headers["x-openscore-limit"] == "max_queue_wait"
    assert float(r.headers["x-openscore-router-queue-wait-ms"]) >= 190 and waited < 1.4


def test_scoring_timeout_gives_504(router):
    t0 = time.monotonic()
    r = score(router, "timeout-svc", b'{"sleep": 3}')
    assert r.status_code == 504 and r.headers["x-openscore-limit"] == "scoring_timeout"
    assert "300 ms" in r.json()["message"] and time.monotonic() - t0 < 2.5


def test_no_ready_replica_gives_503(router):
    r = score(router, "not-ready")
    assert r.status_code == 503 and r.json()["message"] == "No ready replicas for service not-ready"
    assert r.headers["x-openscore-limit"] == "no_ready_replica" and r.headers["Retry-After"]
    st = router.status("not-ready")["versions"]["not-ready"]
    assert st["readyReplicas"] == 0 and st["replicas"][0]["phase"] == "starting"


def test_exact_slot_accounting_under_a_race(router):
    """48 simultaneous requests on 2 replicas x 2 slots. Each replica runs with no queue of its own
    (--max-queue-size 0), so a single request too many would be a replica 503; run() also reports overlap."""
    barrier = threading.Barrier(48)

    def one(_):
        barrier.wait()
        return score(router, "race-svc", b'{"sleep": 0.05}')

    with ThreadPoolExecutor(48) as pool:
        results = list(pool.map(one, range(48)))
    assert [r.status_code for r in results] == [200] * 48, [r.text for r in results if r.status_code != 200]
    assert max(r.json()["peak"] for r in results) == 2
    assert max(float(r.headers["x-openscore-router-queue-wait-ms"]) for r in results) > 0  # it did queue
    st = router.status("race-svc")["versions"]["race-svc"]
    assert st["slotsBusy"] == 0 and st["queueLength"] == 0


def test_metrics(router):
    text = requests.get(f"{router.url}/metrics", timeout=10).text
    assert 'openscore_router_requests_total{service="echo-a",status="200",version="echo-a"}' in text
    assert 'openscore_router_rejected_total{reason="overloaded",service="slow-one",version="slow-one"}' in text \
        or "openscore_router_rejected_total" in text
    assert "openscore_router_queue_wait_seconds_bucket" in text
    assert 'openscore_router_replicas_ready{service="echo-a",version="echo-a"} 2.0' in text
