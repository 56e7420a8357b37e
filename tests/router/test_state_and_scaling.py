"""The file store (watched, changed from outside) and autoscaling of real replicas under a load step."""

import asyncio
import threading
import time

import requests
from routerkit import service

from openscore.router.state import FileStateStore


def test_file_store_keys_and_watch(tmp_path):
    async def main():
        store = FileStateStore(tmp_path, poll_s=0.05)
        try:
            await store.put_service("svc-a", {"computeType": "aks", "entryScript": "/x/score.py", "numReplicas": 1})
            rec = await store.get_keys("svc-a")
            assert rec.primary != rec.secondary and len(rec.primary) >= 32
            keys_file = tmp_path / "store" / "secrets" / "service-keys" / "svc-a.json"
            assert oct(keys_file.stat().st_mode & 0o777) == "0o600"
            await store.put_service("svc-a", {"computeType": "aks", "entryScript": "/x/score.py", "numReplicas": 2})
            again = await store.get_keys("svc-a")
            assert again.primary == rec.primary  # a replace keeps the keys
            new = await store.set_key("svc-a", "Primary")
            assert (await store.get_keys("svc-a")).primary == new.primary != rec.primary

            other = FileStateStore(tmp_path, poll_s=0.05)  # another process (here: another store object) watches
            try:
                start = await other.snapshot()
                assert "svc-a" in start.services
                seen = [start.revision]
                await store.delete_service("svc-a")
                async for change in other.watch(start.revision):
                    seen.append(change.revision)
                    if change.kind == "service" and change.deleted:
                        assert change.name == "svc-a" and "svc-a" not in (await other.snapshot()).services
                        return seen
            finally:
                await other.close()
        finally:
            await store.close()

    seen = asyncio.run(asyncio.wait_for(main(), 5))
    assert int(seen[-1]) > int(seen[0])


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
