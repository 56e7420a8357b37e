"""The Kubernetes figures of issue 13, on a running cluster (the dev cluster by default).

    OPENSCORE_TEST_CLUSTER=/work/devcluster python bench/bench_cluster.py [--runs 3] [--seconds 5]

In a namespace of its own (`router-bench-<random>`, deleted at the end), with the in-cluster router (a pod of
the runtime image under its least-privilege Role, behind a ClusterIP Service) and a tiny echo score.py:

1. model deploy -> Healthy with the image cached: from writing the ScoringService and its Deployment to the
   router's admin API saying Healthy (a replica Ready and routed); target <= 30 s;
2. a scale-up decision -> new Ready pod: from the router raising the Deployment's replicas through the scale
   subresource (the Deployment watch's event) to the new pod's Ready condition (the pod watch's event), under
   a load step on an autoscaled version; target <= 10 s;
3. the router's added p50 at one request in flight, and its throughput beside direct pod traffic (the pod IP
   with the replica credential), measured side by side from the host in one run; targets <= 1 ms, >= 70 %.

For the local target's figures beside them: bench/bench_deploy.py (deploy -> Healthy) and
bench/bench_router.py (the router's overhead over local replicas).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from openscore.kube import crd  # noqa: E402
from openscore.kube.client import KubeClient  # noqa: E402
from openscore.kube.manifests import deployment_name  # noqa: E402
from tests.cluster.conftest import _base_image, _running  # noqa: E402
from tests.cluster.imagekit import checkout_image, push_local_image  # noqa: E402
from tests.cluster.test_router_cluster import (  # noqa: E402
    ADMIN_KEY,
    deploy,
    router_account,
    router_manifests,
    service_doc,
)
from tests.cluster.test_target import SCORE_PY  # noqa: E402


def app_image(cluster: Any, tmp: Path) -> str:
    from openscore.images.deployment import build_deployment_layer
    from openscore.images.recipe import ImageRef
    from openscore.images.registry import Registry
    runtime = checkout_image(push_local_image(_base_image(cluster), cluster.registry), cluster.registry).by_tag
    name, tag = runtime.rsplit(":", 1)
    host, repository = name.split("/", 1)
    digest = Registry(host).manifest_digest(repository, tag)
    assert digest is not None
    (tmp / "app").mkdir()
    (tmp / "app" / "score.py").write_text(SCORE_PY)
    return build_deployment_layer(ImageRef(name, tag, digest), tmp / "app", registry=host).by_tag


async def admin_state(router: str, name: str) -> dict[str, Any] | None:
    async with aiohttp.ClientSession() as s, s.get(f"{router}/admin/v1/services/{name}",
                                                   headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as r:
        return await r.json() if r.status == 200 else None


async def deploy_to_healthy(cluster: Any, ns: str, router: str, image: str, name: str) -> float:
    doc = service_doc(image, secrets.token_urlsafe(32), secrets.token_urlsafe(32))
    t0 = time.perf_counter()
    await deploy(cluster, ns, name, doc)
    while True:
        st = await admin_state(router, name)
        if st and st["state"] == "Healthy":
            return time.perf_counter() - t0
        await asyncio.sleep(0.05)


async def load(url: str, key: str, concurrency: int, seconds: float, headers_key: str = "Authorization") -> int:
    """Requests completed in `seconds` with `concurrency` in flight."""
    headers = {headers_key: key if headers_key != "Authorization" else f"Bearer {key}"}
    end = time.perf_counter() + seconds
    done = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                async with s.post(url, data=b'{"a": 1}', headers=headers) as r:
                    await r.read()
                    assert r.status == 200, r.status
                done += 1
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


async def p50(url: str, headers: dict[str, str], n: int) -> float:
    times = []
    async with aiohttp.ClientSession() as s:
        for i in range(n + 50):
            t0 = time.perf_counter()
            async with s.post(url, data=b'{"a": 1}', headers=headers) as r:
                await r.read()
                assert r.status == 200
            if i >= 50:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def scale_up(cluster: Any, ns: str, router: str, image: str, key: str) -> float:
    """Seconds from the router's scale to the new pod's Ready, under a load step."""
    name = "elastic"
    doc = service_doc(image, key, secrets.token_urlsafe(32))
    del doc["numReplicas"]
    doc["autoScaler"] = {"autoscaleEnabled": True, "minReplicas": 1, "maxReplicas": 2, "targetUtilization": 30,
                         "refreshPeriodInSeconds": 1}
    await deploy(cluster, ns, name, doc)
    while not ((st := await admin_state(router, name)) and st["state"] == "Healthy"):
        await asyncio.sleep(0.1)
    kc = KubeClient.from_kubeconfig(str(cluster.kubeconfig), namespace=ns)
    dep = deployment_name(name, name)
    scaled: list[float] = []
    ready: list[float] = []
    before = {p["metadata"]["name"] for p in (await kc.list("v1", "Pod", ns, {crd.LABEL_SERVICE: name}))[0]}

    async def watch_dep() -> None:
        async for _, d in kc.watch("apps/v1", "Deployment", ns):
            if d["metadata"]["name"] == dep and d["spec"]["replicas"] >= 2:
                scaled.append(time.perf_counter())
                return

    async def watch_pods() -> None:
        async for _, p in kc.watch("v1", "Pod", ns, {crd.LABEL_SERVICE: name}):
            conds = (p.get("status") or {}).get("conditions") or []
            if p["metadata"]["name"] not in before and any(c["type"] == "Ready" and c["status"] == "True"
                                                           for c in conds):
                ready.append(time.perf_counter())
                return
    async with kc:
        watches = asyncio.gather(watch_dep(), watch_pods())
        step = asyncio.create_task(load(f"{router}/api/v1/service/{name}/score", key, 8, 60))
        try:
            await asyncio.wait_for(watches, 120)
        finally:
            step.cancel()
            await asyncio.gather(step, return_exceptions=True)
    return ready[0] - scaled[0]


async def main(args: argparse.Namespace) -> None:
    cluster = _running(Path(os.environ.get("OPENSCORE_TEST_CLUSTER", "/work/devcluster")))
    ns = f"router-bench-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", ns)
    tmp = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        image = app_image(cluster, tmp)
        await asyncio.to_thread(router_account, cluster, ns, tmp)  # it runs its own event loop
        for doc in router_manifests(ns, image):
            cluster.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(doc))
        ip = cluster.kubectl_json("-n", ns, "get", "service", "openscore-router")["spec"]["clusterIP"]
        router = f"http://{ip}"
        while True:
            try:
                async with aiohttp.ClientSession() as s, s.get(f"{router}/readyz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        await deploy_to_healthy(cluster, ns, router, image, "warm")  # pulls the image onto the node once
        times = [await deploy_to_healthy(cluster, ns, router, image, f"svc{i}") for i in range(args.runs)]
        print(f"(1) model deploy -> Healthy, image cached: median {statistics.median(times):.2f} s "
              f"(runs {', '.join(f'{t:.2f}' for t in times)}; target <= 30 s)")

        # (3) router vs direct pod, side by side on service `warm`
        keys = json.loads(cluster.kubectl("-n", ns, "get", "secret", crd.service_keys_secret("warm"), "-o",
                                          "json").stdout)["data"]
        key = base64.b64decode(keys["primaryKey"]).decode()
        rep = json.loads(cluster.kubectl("-n", ns, "get", "secret",
                                         crd.replica_secret(deployment_name("warm", "warm")), "-o", "json").stdout)
        rsecret = base64.b64decode(rep["data"]["secret"]).decode()
        pod = cluster.kubectl_json("-n", ns, "get", "pods", "-l", f"{crd.LABEL_SERVICE}=warm")["items"][0]
        direct = f"http://{pod['status']['podIP']}:5001/score"
        via = f"{router}/api/v1/service/warm/score"
        d50 = await p50(direct, {"x-openscore-replica-secret": rsecret}, args.latency_n)
        r50 = await p50(via, {"Authorization": f"Bearer {key}"}, args.latency_n)
        print(f"(3) p50 at one in flight: direct {d50 * 1e3:.2f} ms, through the router {r50 * 1e3:.2f} ms, "
              f"added {(r50 - d50) * 1e3:.2f} ms (target <= 1 ms)")
        dn = await load(direct, rsecret, args.concurrency, args.seconds, "x-openscore-replica-secret")
        rn = await load(via, key, args.concurrency, args.seconds)
        print(f"    throughput at {args.concurrency} in flight for {args.seconds:g} s: direct "
              f"{dn / args.seconds:.0f} req/s, through the router {rn / args.seconds:.0f} req/s = "
              f"{100 * rn / dn:.0f} % (target >= 70 %)")

        up = await scale_up(cluster, ns, router, image, secrets.token_urlsafe(32))
        print(f"(2) scale-up decision -> new Ready pod: {up:.2f} s (target <= 10 s)")
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--latency-n", type=int, default=500)
    asyncio.run(main(ap.parse_args()))
