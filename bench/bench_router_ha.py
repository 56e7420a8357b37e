"""The figures of issue 14 (several router pods, docs/router-ha.md), on a running cluster (the dev cluster).

    OPENSCORE_TEST_CLUSTER=/work/devcluster python bench/bench_router_ha.py [--seconds 5] [--latency-n 500]

In a namespace of its own (deleted at the end): one echo service with 2 replicas of 4 slots each, and the
in-cluster router Deployment scaled to 1, 2 and 3 pods in turn. For each count, measured side by side in one
loop (the machine is shared and noisy):

- p50 at one request in flight: direct to a replica pod (the replica credential), through the coordinating
  router pod, through a router pod that asks the coordinator (the extra hop), and through the ClusterIP Service
  (kube-proxy picks the pod); target: the Service's added p50 with 3 pods <= 1.5 ms over direct;
- closed-loop throughput with wrk through the Service at the same 2 replicas, beside direct traffic to the
  replicas; target: throughput scaling with the pods until the replicas saturate.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.bench_cluster import app_image  # noqa: E402
from openscore.kube import crd  # noqa: E402
from openscore.kube.leases import service_lease_name  # noqa: E402
from openscore.kube.manifests import deployment_name  # noqa: E402
from tests.cluster.conftest import _running  # noqa: E402
from tests.cluster.test_router_cluster import ADMIN_KEY, deploy, router_account, service_doc  # noqa: E402
from tests.cluster.test_router_ha import router_pods_manifests  # noqa: E402


def p50s_ms(targets: list[tuple[str, dict[str, str]]], n: int) -> list[float]:
    """The p50 of each target at one request in flight, their requests interleaved (one to each in turn), so
    that a noisy moment of the machine (its steal time) falls on all of them alike."""
    times: list[list[float]] = [[] for _ in targets]
    sessions = [requests.Session() for _ in targets]
    try:
        for i in range(n + 30):
            for j, (url, headers) in enumerate(targets):
                t0 = time.perf_counter()
                r = sessions[j].post(url, data=b'{"a": 1}', headers=headers, timeout=30)
                assert r.status_code == 200, (r.status_code, r.text[:200])
                if i >= 30:
                    times[j].append((time.perf_counter() - t0) * 1000)
    finally:
        for s in sessions:
            s.close()
    return [statistics.median(t) for t in times]


def wrk(urls: list[str], seconds: int, headers: dict[str, str], connections: int) -> float:
    """Requests/s over all `urls` together (one wrk each, connections split among them)."""
    procs = []
    for u in urls:
        cmd = ["wrk", "-t1", f"-c{max(1, connections // len(urls))}", f"-d{seconds}s", "-s", str(HERE / "post.lua")]
        for k, v in headers.items():
            cmd += ["-H", f"{k}: {v}"]
        procs.append(subprocess.Popen([*cmd, u], stdout=subprocess.PIPE, text=True))
    total = 0.0
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 60)
        line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
        got = json.loads(line[8:])
        errors = sum(v for k, v in got.items() if k.startswith("err_"))
        assert errors == 0, got
        total += got["requests"] / (got["duration_us"] / 1e6)
    return total


def wait(check: Any, what: str, timeout: float = 300) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            got = check()
        except requests.RequestException:
            got = None
        if got:
            return got
        time.sleep(0.3)
    raise SystemExit(f"timed out waiting for {what}")


def main(args: argparse.Namespace) -> None:
    cluster = _running(Path(os.environ.get("OPENSCORE_TEST_CLUSTER", "/work/devcluster")))
    ns = f"router-ha-bench-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", ns)
    tmp = Path(tempfile.mkdtemp(prefix="bench-router-ha-"))
    try:
        image = app_image(cluster, tmp)
        router_account(cluster, ns, tmp)
        for doc in router_pods_manifests(image, 1):
            cluster.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(doc))
        key = secrets.token_urlsafe(32)
        doc = service_doc(image, key, secrets.token_urlsafe(32), numReplicas=2, maxConcurrentRequestsPerContainer=4,
                          containerResourceRequirements={"cpu": 0.5, "memoryInGB": 0.5})  # 0.1 throttles
        asyncio.run(deploy(cluster, ns, "hasvc", doc))
        ip = cluster.kubectl_json("-n", ns, "get", "service", "openscore-router")["spec"]["clusterIP"]
        rep = json.loads(cluster.kubectl("-n", ns, "get", "secret",
                                         crd.replica_secret(deployment_name("hasvc", "hasvc")), "-o", "json").stdout)
        rsecret = base64.b64decode(rep["data"]["secret"]).decode()
        auth = {"Authorization": f"Bearer {key}"}
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}

        def router_pods() -> list[dict[str, Any]]:
            pods = cluster.kubectl_json("-n", ns, "get", "pods", "-l",
                                        f"{crd.LABEL_COMPONENT}={crd.COMPONENT_ROUTER}")["items"]
            return [p for p in pods if not p["metadata"].get("deletionTimestamp") and any(
                c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])]

        def all_see(n: int) -> list[dict[str, Any]] | None:
            pods = router_pods()
            if len(pods) != n:
                return None
            for p in pods:
                r = requests.get(f"http://{p['status']['podIP']}:8080/admin/v1/services/hasvc", headers=admin,
                                 timeout=5)
                if r.status_code != 200 or r.json()["versions"]["hasvc"]["readyReplicas"] != 2:
                    return None
            return pods

        print(f"{'pods':>4} {'direct p50':>10} {'coord p50':>10} {'peer p50':>9} {'Service p50':>11} "
              f"{'added':>6} {'direct req/s':>12} {'Service req/s':>13} {'share':>6}")
        for n in (1, 2, 3):
            cluster.kubectl("-n", ns, "scale", "deployment", "openscore-router", f"--replicas={n}")
            pods = wait(lambda n=n: all_see(n), f"{n} router pods seeing 2 ready replicas")
            lease = wait(lambda: cluster.kubectl_json("-n", ns, "get", "lease", service_lease_name("hasvc"))["spec"]
                         .get("holderIdentity"), "a coordinator")
            coord = next(p for p in pods if lease.startswith(p["metadata"]["name"] + "_"))
            peer = next((p for p in pods if p is not coord), None)
            time.sleep(2)  # the peers' member Leases and links settle
            listed = cluster.kubectl_json("-n", ns, "get", "pods", "-l", f"{crd.LABEL_SERVICE}=hasvc")["items"]
            replicas = [p for p in listed if p["status"].get("podIP")]
            direct = [f"http://{p['status']['podIP']}:5001/score" for p in replicas]
            path = "/api/v1/service/hasvc/score"
            targets = [(direct[0], {"x-openscore-replica-secret": rsecret}),
                       (f"http://{coord['status']['podIP']}:8080{path}", auth), (f"http://{ip}{path}", auth)]
            if peer is not None:
                targets.append((f"http://{peer['status']['podIP']}:8080{path}", auth))
            d50, c50, s50, *rest = p50s_ms(targets, args.latency_n)
            f50 = rest[0] if rest else None
            dn = wrk(direct, args.seconds, {"x-openscore-replica-secret": rsecret}, args.connections)
            sn = wrk([f"http://{ip}{path}"] * 2, args.seconds, auth, args.connections)
            print(f"{n:>4} {d50:>8.2f}ms {c50:>8.2f}ms {(f'{f50:.2f}ms' if f50 else '-'):>9} {s50:>9.2f}ms "
                  f"{s50 - d50:>5.2f} {dn:>12.0f} {sn:>13.0f} {100 * sn / dn:>5.0f}%", flush=True)
        print("added: the Service's p50 minus direct (target <= 1.5 ms with 3 pods); coord/peer: a router pod "
              "that coordinates the service / one that gets its slots from it (asked, or kept from its last request)")
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--latency-n", type=int, default=500)
    main(ap.parse_args())
