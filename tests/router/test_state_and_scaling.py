"""The file store (watched, changed from outside) and autoscaling of real replicas under a load step."""

import asyncio
import threading
import time

import requests
from routerkit import service

from openscore.router.state import FileStateStore


def test_file_store_keys_and_watch(tmp_path):
    store = FileStateStore(tmp_path)
    rec = store.put_service("svc-a", {"computeType": "aks", "entryScript": "/x/score.py", "numReplicas": 1})
    assert rec.primary_key != rec.secondary_key and len(rec.primary_key) >= 32
    assert oct((tmp_path / "state.json").stat().st_mode & 0o777) == "0o600"
    again = store.put_service("svc-a", {"computeType": "aks", "entryScript": "/x/score.py", "numReplicas": 2})
    assert again.primary_key == rec.primary_key  # a replace keeps the keys
    new = store.set_key("svc-a", "Primary")
    assert store.read().services["svc-a"].primary_key == new != rec.primary_key

    async def watch():
        seen = []
        async for state in FileStateStore(tmp_path).watch(0.05):
            seen.append(state.revision)
            if len(seen) == 1:  # another process (here: another store object) writes
                await asyncio.to_thread(store.delete_service, "svc-a")
            else:
                assert "svc-a" not in state.services
                return seen
    seen = asyncio.run(asyncio.wait_for(watch(), 5))
    assert seen[1] > seen[0]


def test_load_step_scales_up_then_down(start_router):
    r = start_router({"auto-svc": service(
        "slow.py", authEnabled=False, maxQueueWaitMs=5000,
        autoScaler={"autoscaleEnabled": True, "minReplicas": 1, "maxReplicas": 3, "targetUtilization": 70,
                    "refreshPeriodInSeconds": 0.5})}, "--scale-down-window-s", "3")
    url = f"{r.url}/api/v1/service/auto-svc/score"
    stop = threading.Event()
    statuses = []

    def client():
        s = requests.Session()
        while not stop.is_set():
            statuses.append(s.post(url, data=b'{"sleep": 0.2}', timeout=30).status_code)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        t0 = time.monotonic()
        desired = 1
        while time.monotonic() - t0 < 15 and desired < 3:
            desired = r.status("auto-svc")["versions"]["auto-svc"]["desiredReplicas"]
            time.sleep(0.1)
        assert desired == 3  # 4 busy-or-queued / (0.7 x 1) -> 6, capped at 3
        r.wait_ready("auto-svc", replicas=3, timeout=20)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert set(statuses) == {200}
    t1 = time.monotonic()
    while time.monotonic() - t1 < 20:
        st = r.status("auto-svc")["versions"]["auto-svc"]
        if st["desiredReplicas"] == 1 and len(st["replicas"]) == 1:
            break
        time.sleep(0.2)
    assert st["desiredReplicas"] == 1 and len(st["replicas"]) == 1, st
    assert time.monotonic() - t1 >= 2.5  # not before the stable window
    text = requests.get(f"{r.url}/metrics", timeout=5).text
    assert 'openscore_router_autoscale_decisions_total{direction="up",service="auto-svc",version="auto-svc"}' in text
    assert 'direction="down"' in text
