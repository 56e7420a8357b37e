"""Replica supervision, updates and traffic split under flowing traffic, through real processes."""

import http.client
import os
import signal
import threading
import time
from collections import Counter

import requests
from routerkit import service

OPEN = {"authEnabled": False}


class Load:
    """N client threads scoring until stopped; keeps every response (status, replica, version, body)."""

    def __init__(self, url: str, threads: int = 4, body: bytes = b'{"sleep": 0.02}'):
        self.url, self.body = url, body
        self.results: list[tuple[int, str, str, dict]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        s = requests.Session()
        while not self._stop.is_set():
            try:
                r = s.post(self.url, data=self.body, headers={"Content-Type": "application/json"}, timeout=30)
                body = r.json() if r.headers.get("Content-Type", "").startswith("application/json") else {}
                self.results.append((r.status_code, r.headers.get("x-openscore-replica", "-"),
                                     r.headers.get("x-openscore-version", "-"), body))
            except requests.RequestException as e:
                self.results.append((0, "-", "-", {"error": str(e)}))

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def failures(self) -> list:
        return [r for r in self.results if r[0] != 200]


def test_sigkilled_replica_is_replaced_and_only_its_in_flight_requests_fail(start_router):
    r = start_router({"crash-svc": service("slow.py", numReplicas=2, **OPEN)})
    r.wait_ready("crash-svc", replicas=2)
    before = r.status("crash-svc")["versions"]["crash-svc"]["replicas"]
    victim = before[0]
    with Load(f"{r.url}/api/v1/service/crash-svc/score") as load:
        time.sleep(1.0)
        os.killpg(victim["pid"], signal.SIGKILL)
        time.sleep(1.5)
    failed = load.failures()
    # only requests that had reached the victim fail, as 502s (never re-sent elsewhere: run() may have begun):
    # its one busy slot, or one written to its idle keep-alive connection before its death was seen; at most
    # one per client, as every client's next request goes to the survivor once the victim is seen dead
    assert all(f[0] == 502 and f[1] == victim["id"] for f in failed), failed
    assert len(failed) <= len(load._threads), failed
    assert len(load.results) > 20
    r.wait_ready("crash-svc", replicas=2, timeout=20)
    after = r.status("crash-svc")["versions"]["crash-svc"]["replicas"]
    assert victim["id"] not in {x["id"] for x in after} and len(after) == 2


def test_update_and_split_under_traffic_without_a_failed_request(start_router):
    ep = {"computeType": "aksendpoint", **OPEN, "versions": {
        "blue": {"entryScript": str(service("echo.py")["entryScript"]), "numReplicas": 1,
                 "trafficPercentile": 70, "environment": {"environmentVariables": {"TAG": "b1"}}},
        "green": {"entryScript": str(service("echo.py")["entryScript"]), "numReplicas": 1,
                  "trafficPercentile": 30}}}
    r = start_router({"ep-svc": ep})
    url = f"{r.url}/api/v1/service/ep-svc/score"
    s = requests.Session()
    versions = Counter(s.post(url, data=b"{}").headers["x-openscore-version"] for _ in range(1000))
    assert abs(versions["blue"] - 700) <= 20 and abs(versions["green"] - 300) <= 20, versions

    with Load(url, threads=3, body=b"{}") as load:
        # 1) a new template for blue: new replica first, old one drained only after it is ready
        ep["versions"]["blue"]["environment"]["environmentVariables"]["TAG"] = "b2"
        assert r.admin.put(f"{r.url}/admin/v1/services/ep-svc", json=ep).status_code == 200
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            reps = r.status("ep-svc")["versions"]["blue"]["replicas"]
            if len(reps) == 1 and not reps[0]["outdated"] and reps[0]["phase"] == "ready":
                break
            time.sleep(0.1)
        # 2) add a third version at 0 %, then shift everything to green and delete blue
        ep["versions"]["red"] = {"entryScript": ep["versions"]["green"]["entryScript"], "numReplicas": 1}
        assert r.admin.put(f"{r.url}/admin/v1/services/ep-svc", json=ep).status_code == 200
        r.wait_ready("ep-svc", version="red")
        del ep["versions"]["blue"]
        ep["versions"]["green"].update(trafficPercentile=100, isDefault=True)
        assert r.admin.put(f"{r.url}/admin/v1/services/ep-svc", json=ep).status_code == 200
        time.sleep(1.0)
    assert load.failures() == [], load.failures()[:5]
    tags = [b.get("tag") for _, _, v, b in load.results if v == "blue"]
    assert "b1" in tags and "b2" in tags and tags.index("b2") > tags.index("b1")
    tail = [v for _, _, v, _ in load.results[-20:]]
    assert set(tail) == {"green"}, tail
    assert set(r.status("ep-svc")["versions"]) == {"green", "red"}


def test_split_over_10000_real_requests_is_within_2_percent(start_router):
    ep = {"computeType": "aksendpoint", **OPEN, "versions": {
        v: {"entryScript": str(service("echo.py")["entryScript"]), "numReplicas": 1, "trafficPercentile": pct}
        for v, pct in (("blue", 60), ("green", 25), ("red", 15))}}
    r = start_router({"split-svc": ep})
    counts: Counter = Counter()
    lock = threading.Lock()

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", r.port, timeout=30)
        mine: Counter = Counter()
        for _ in range(n):
            conn.request("POST", "/api/v1/service/split-svc/score", body=b"{}")
            resp = conn.getresponse()
            resp.read()
            mine[resp.status, resp.getheader("x-openscore-version")] += 1
        conn.close()
        with lock:
            counts.update(mine)

    threads = [threading.Thread(target=client, args=(2500,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sum(counts.values()) == 10000 and all(status == 200 for status, _ in counts), counts
    for version, pct in (("blue", 60), ("green", 25), ("red", 15)):
        share = counts[200, version] / 100
        assert abs(share - pct) <= 2, (version, share, counts)


def test_a_stopping_router_closes_kept_alive_connections_and_exits_once_in_flight_requests_are_done(start_router):
    # keep-alive clients keep sending to a stopping router (its listener is closed, their connections are not):
    # every answer of the drain closes its connection, so they leave and the drain ends with the requests in
    # flight, long before the graceful timeout, and no request is cut off
    r = start_router({"drain-svc": service("slow.py", numReplicas=1, maxConcurrentRequestsPerContainer=4, **OPEN)},
                     "--graceful-timeout-s", "120")
    r.wait_ready("drain-svc")
    url = f"{r.url}/api/v1/service/drain-svc/score"
    closing: list[str] = []

    def client() -> None:
        s = requests.Session()
        while True:
            try:
                got = s.post(url, data=b'{"sleep": 0.3}', headers={"Content-Type": "application/json"}, timeout=30)
            except requests.ConnectionError:
                return  # the listener is closed: a real client would go to another router
            assert got.status_code == 200, got.text
            if got.headers.get("Connection", "").lower() == "close":
                closing.append(got.headers["x-openscore-replica"])
                return
    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    r.proc.send_signal(signal.SIGTERM)
    code = r.proc.wait(60)  # with the old drain it waited out the 120 s graceful timeout
    for t in threads:
        t.join(10)
    assert code == 0, r.log()
    assert closing, "no answer of the drain said Connection: close"
    assert "stopping: draining" in r.log()
