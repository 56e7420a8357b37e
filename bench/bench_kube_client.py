"""Round-trip costs of openscore.kube.client against a running cluster (not a test; prints figures).

    python bench/bench_kube_client.py [--kubeconfig /work/devcluster/kubeconfig] [--runs 200]

In a namespace of its own (`core-bench-<hex>`, deleted at the end), for a ConfigMap: `get` (one GET),
`apply` unchanged (server-side apply that changes nothing) and changed (a new value each time), a `replace`
CAS write, and the watch-event lag: from just before a write's request to the moment its event comes out of
an open `watch` (the write's own round trip included; that write's cost is printed beside it). Each figure
is the median and the 90th percentile over `--runs`. Through KubernetesStateStore, a `put_service` and the
lag from that write to its `watch()` change. On a shared machine the figures move with its load.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from openscore.kube.client import KubeClient
from openscore.kube.crd import crd_manifest
from openscore.kube.object_store import KubernetesStateStore


def show(label: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[min(len(ms) - 1, int(len(ms) * 0.9))]
    print(f"{label:<44} median {statistics.median(ms):7.2f} ms   p90 {p90:7.2f} ms   (n={len(ms)})")


async def timed(n: int, fn: Callable[[int], Awaitable[Any]]) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        await fn(i)
        out.append(time.perf_counter() - t)
    return out


async def main(kubeconfig: str, runs: int) -> None:
    ns = f"core-bench-{secrets.token_hex(3)}"
    async with KubeClient.from_kubeconfig(kubeconfig, namespace=ns) as c:
        print(f"API server {await c.server_version()}, namespace {ns}, {runs} runs each")
        await c.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        await c.apply(crd_manifest())
        try:
            def cm(v: str) -> dict[str, Any]:
                return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": ns},
                        "data": {"v": v}}
            await c.apply(cm("0"))
            show("get", await timed(runs, lambda i: c.get("v1", "ConfigMap", "b", ns)))
            show("apply (no change)", await timed(runs, lambda i: c.apply(cm("0"))))
            show("apply (changed)", await timed(runs, lambda i: c.apply(cm(f"a{i}"))))

            async def cas(i: int) -> None:
                cur = await c.get("v1", "ConfigMap", "b", ns)
                assert cur is not None
                await c.replace(dict(cur, data={"v": f"r{i}"}))
            show("get + replace (CAS write)", await timed(runs, cas))

            _, rv = await c.list("v1", "ConfigMap", ns)
            events = c.watch("v1", "ConfigMap", ns, resource_version=rv)
            lags, writes = [], []
            for i in range(runs):
                t = time.perf_counter()
                await c.apply(cm(f"w{i}"))
                writes.append(time.perf_counter() - t)
                while True:
                    _, obj = await asyncio.wait_for(events.__anext__(), 10)
                    if obj["data"]["v"] == f"w{i}":
                        break
                lags.append(time.perf_counter() - t)
            await events.aclose()  # type: ignore[attr-defined]
            show("watch event after a write (write included)", lags)
            show("  that write (apply) alone", writes)

            store = KubernetesStateStore(c, ns)
            doc = {"computeType": "aks", "entryScript": "/srv/app/score.py", "numReplicas": 1}
            await store.put_service("bench", doc)
            start = await store.snapshot()
            changes = store.watch(start.revision).__aiter__()
            puts, store_lags = [], []
            for i in range(max(1, runs // 4)):
                t = time.perf_counter()
                await store.put_service("bench", dict(doc, numReplicas=2 + i))
                puts.append(time.perf_counter() - t)
                await asyncio.wait_for(changes.__anext__(), 10)
                store_lags.append(time.perf_counter() - t)
            await changes.aclose()  # type: ignore[attr-defined]
            await store.close()
            show("StateStore.put_service", puts)
            show("StateStore watch change (write included)", store_lags)
        finally:
            await c.delete("v1", "Namespace", ns)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kubeconfig", default="/work/devcluster/kubeconfig")
    ap.add_argument("--runs", type=int, default=200)
    a = ap.parse_args()
    asyncio.run(main(a.kubeconfig, a.runs))
