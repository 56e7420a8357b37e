"""run_batch(list) in an entry script, against a real server: concurrent requests share one call, each gets
its own answer, and a bad request fails only itself. Queueing is arranged with a gate file and /slots, never
with timing."""

import json
import threading
import time
import uuid

import pytest
import requests

N = 12


@pytest.fixture(scope="module")
def gate_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gates")


@pytest.fixture(scope="module")
def srv(module_serve, gate_dir):
    return module_serve("batch_echo.py", "--max-concurrent-requests", "32", "--max-batch-size", "16",
                        env={"GATE_DIR": str(gate_dir)})


def post(srv, doc):
    return requests.post(srv.url + "/score", data=json.dumps(doc), headers={"Content-Type": "application/json"},
                         timeout=60)


def in_flight(srv):
    return requests.get(srv.url + "/slots", timeout=5).json()["in_flight"]


def queued_behind_gate(srv, gate_dir, docs):
    """Send a gated request, then `docs` concurrently once it runs; open the gate when all are in flight."""
    gate = uuid.uuid4().hex
    results = [None] * (len(docs) + 1)

    def send(k, doc):
        results[k] = post(srv, doc)

    first = threading.Thread(target=send, args=(0, {"i": -1, "gate": gate}))
    first.start()
    while in_flight(srv) < 1:
        time.sleep(0.005)
    threads = [threading.Thread(target=send, args=(k + 1, d)) for k, d in enumerate(docs)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while in_flight(srv) < len(docs) + 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    (gate_dir / gate).touch()
    for t in [first, *threads]:
        t.join(60)
    return results[0], results[1:]


def test_concurrent_requests_are_batched_and_each_gets_its_own_result(srv, gate_dir):
    first, rest = queued_behind_gate(srv, gate_dir, [{"i": k} for k in range(N)])
    assert first.status_code == 200 and first.json()["echo"] == -1
    assert [r.status_code for r in rest] == [200] * N
    assert [r.json()["echo"] for r in rest] == list(range(N))
    assert max(r.json()["batch"] for r in rest) > 1
    assert all(r.headers["x-ms-run-function-failed"] == "False" for r in rest)
    sizes = post(srv, {"sizes": True}).json()["sizes"]
    assert max(sizes) > 1


def test_a_bad_request_in_a_batch_fails_only_itself(srv, gate_dir):
    docs = [{"i": k} for k in range(N)]
    docs[3] = {"i": 3, "bad": True}
    docs[7] = {"i": 7, "exc": True}
    _, rest = queued_behind_gate(srv, gate_dir, docs)
    for k, r in enumerate(rest):
        if k in (3, 7):
            assert r.status_code == 500
            assert r.headers["x-ms-run-function-failed"] == "True"
            assert r.json() == {"message": "An unexpected error occurred in scoring script. Check the logs for "
                                           "more info."}
        else:
            assert r.status_code == 200 and r.json()["echo"] == k


def test_a_lone_request_is_answered_through_run_batch(srv):
    r = post(srv, {"i": 42})
    assert r.status_code == 200 and r.json() == {"echo": 42, "batch": 1}


def test_run_batch_metrics_show_batches(srv):
    text = requests.get(srv.url + "/metrics", timeout=5).text
    assert 'openscore_model_execution_count_total{device="none",model="batch_echo"}' in text
