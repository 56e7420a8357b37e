"""Several router pods behind their Service, on the real cluster (docs/router-ha.md): one coordinator per
service admits every router's requests, so replicas are never oversubscribed and the queue deadline holds;
killing the coordinator's process or deleting its pod moves coordination to another pod within a Lease
period while retrying clients see no errors; only the coordinator autoscales, and its successor keeps the count;
a version update under load fails no request; key and signing-key changes reach every pod."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from openscore.kube import crd
from openscore.kube.client import KubeClient
from openscore.kube.leases import service_lease_name
from openscore.kube.manifests import deployment_name
from openscore.kube.object_store import KubernetesStateStore
from tests.cluster.conftest import ClusterInfo
from tests.cluster.realnode import cgroup_mounts
from tests.cluster.test_object_store import wait_established
from tests.cluster.test_router_cluster import ADMIN_KEY, deploy, router_kubeconfig, until  # noqa: F401
from tests.cluster.test_target import app_image  # noqa: F401  (a fixture)

pytestmark = pytest.mark.timeout(600)  # router pods, replicas and a load: minutes on two shared cores
LEASE_S = 4
SLOW_PY = textwrap.dedent("""\
    import json, socket, threading, time

    _lock = threading.Lock()
    _now = 0
    _most = 0

    def init():
        pass

    def run(raw_data):
        # records how many run() calls overlap on this replica, across every router's requests
        global _now, _most
        with _lock:
            _now += 1
            _most = max(_most, _now)
            seen = _now
        try:
            time.sleep(float(json.loads(raw_data).get("sleep", 0.05)))
        finally:
            with _lock:
                _now -= 1
        return {"pod": socket.gethostname(), "concurrent": seen, "most": _most}
    """)


@pytest.fixture(scope="module")
def slow_image(cluster: ClusterInfo, runtime_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The runtime image plus SLOW_PY as its score.py; the ScoringService CRD is installed."""
    async def crd_ready() -> None:
        async with KubeClient.from_kubeconfig(str(cluster.kubeconfig)) as c:
            await wait_established(c)
    asyncio.run(crd_ready())
    from openscore.images.deployment import build_deployment_layer
    from openscore.images.recipe import ImageRef
    from openscore.images.registry import Registry

    name, tag = runtime_image.rsplit(":", 1)
    host, repository = name.split("/", 1)
    digest = Registry(host).manifest_digest(repository, tag)
    assert digest is not None, runtime_image
    app = tmp_path_factory.mktemp("slow-app")
    (app / "score.py").write_text(SLOW_PY)
    return build_deployment_layer(ImageRef(name, tag, digest), app, registry=host).by_tag


def router_pods_manifests(image: str, replicas: int) -> list[dict[str, Any]]:
    """`replicas` router pods (ServiceAccount `router`, from router_kubeconfig) behind one ClusterIP Service."""
    labels = {crd.LABEL_MANAGED: crd.MANAGED_BY, crd.LABEL_COMPONENT: crd.COMPONENT_ROUTER}
    container = {
        "name": "router", "image": image,
        "command": ["openscore", "router", "--kubernetes", "--host", "0.0.0.0", "--port", "8080",
                    "--status-interval-s", "0.5", "--lease-duration-s", str(LEASE_S), "--no-access-log"],
        "env": [{"name": "OPENSCORE_ROUTER_ADMIN_KEY", "value": ADMIN_KEY},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1},
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
    }
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "openscore-router", "labels": labels},
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"serviceAccountName": "router", "containers": [container],
                                        "terminationGracePeriodSeconds": 10,
                                        "nodeSelector": {"openscore.io/pool": "cpu"}}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "openscore-router", "labels": labels},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080, "name": "http"}]}},
    ]


class Routers:
    def __init__(self, cluster: ClusterInfo, namespace: str):
        self.cluster, self.namespace = cluster, namespace

    def pods(self) -> list[dict[str, Any]]:
        return self.cluster.kubectl_json("-n", self.namespace, "get", "pods", "-l",
                                         f"{crd.LABEL_COMPONENT}={crd.COMPONENT_ROUTER}")["items"]

    def ready(self) -> list[dict[str, Any]]:
        return [p for p in self.pods() if not p["metadata"].get("deletionTimestamp") and any(
            c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])]

    def admin(self, pod: dict[str, Any], path: str) -> Any:
        r = requests.get(f"http://{pod['status']['podIP']}:8080{path}", timeout=5,
                         headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        r.raise_for_status()
        return r

    def service_seen_by_all(self, name: str, n: int) -> bool:
        pods = self.ready()
        if len(pods) != n:
            return False
        for p in pods:
            try:
                svcs = self.admin(p, "/admin/v1/services").json()["services"]
            except requests.RequestException:
                return False
            if not any(s["name"] == name and s["state"] == "Healthy" for s in svcs):
                return False
        return True

    def holder(self, service: str) -> str:
        lease = self.cluster.kubectl_json("-n", self.namespace, "get", "lease", service_lease_name(service))
        return lease["spec"].get("holderIdentity") or ""

    def why_failed(self, service: str) -> str:
        """For a failed assertion: the service's replica pods' restarts and last exits, and what the router
        pods logged about failed replicas."""
        pods = self.cluster.kubectl_json("-n", self.namespace, "get", "pods", "-l",
                                         f"{crd.LABEL_SERVICE}={service}")["items"]
        replicas = [(p["metadata"]["name"], [(c.get("restartCount"), (c.get("lastState") or {}).get("terminated"))
                                             for c in p["status"].get("containerStatuses") or []]) for p in pods]
        logged = []
        for p in self.pods():
            out = self.cluster.kubectl("-n", self.namespace, "logs", p["metadata"]["name"], check=False).stdout
            logged += [line[-300:] for line in out.splitlines() if "failed during the request" in line][:3]
        return f"replica pods {replicas}; router logs {logged}"

    def metric(self, pod: dict[str, Any], name: str, labels: str = "") -> float:
        text = self.admin(pod, "/metrics").text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and labels in line and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total


@pytest.fixture
def routers(cluster: ClusterInfo, namespace: str, slow_image: str, router_kubeconfig: Path,  # noqa: F811
            request: pytest.FixtureRequest) -> Iterator[tuple[Routers, str]]:
    n = request.param
    for doc in router_pods_manifests(slow_image, n):
        cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(doc))
    ip = cluster.kubectl_json("-n", namespace, "get", "service", "openscore-router")["spec"]["clusterIP"]
    yield Routers(cluster, namespace), f"http://{ip}"


def slow_service(image: str, primary: str, replicas: int, wait_ms: int, **more: Any) -> dict[str, Any]:
    doc = {"computeType": "aks", "entryScript": "/var/azureml-app/score.py", "image": image,
           "numReplicas": replicas, "authEnabled": True, "maxConcurrentRequestsPerContainer": 2,
           "maxQueueWaitMs": wait_ms, "containerResourceRequirements": {"cpu": 0.1, "memoryInGB": 0.5},
           "keys": {"primaryKey": primary, "secondaryKey": secrets.token_urlsafe(32)}}
    doc.update(more)
    return doc


def post(s: requests.Session, url: str, key: str, sleep: float) -> tuple[int, dict[str, str], Any, float]:
    t0 = time.monotonic()
    r = s.post(url, json={"sleep": sleep}, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    return r.status_code, dict(r.headers), (r.json() if r.status_code == 200 else r.text), time.monotonic() - t0


@pytest.mark.parametrize("routers", [3], indirect=True)
def test_three_router_pods_never_oversubscribe_a_replica_and_keep_the_queue_deadline(
        cluster: ClusterInfo, namespace: str, slow_image: str, routers: tuple[Routers, str]) -> None:
    rs, base = routers
    key = secrets.token_urlsafe(32)
    asyncio.run(deploy(cluster, namespace, "race", slow_service(slow_image, key, 2, 1500)))
    until(lambda: rs.service_seen_by_all("race", 3), "3 router pods seeing both replicas of race", timeout=300)
    until(lambda: rs.holder("race"), "a coordinator for race", timeout=30)
    url = f"{base}/api/v1/service/race/score"

    # a sustained race: 12 clients (spread over the 3 router pods by kube-proxy) on 2 x 2 slots
    def client(n: int) -> list[tuple[int, dict[str, str], Any, float]]:
        with requests.Session() as s:
            return [post(s, url, key, 0.05) for _ in range(n)]
    with ThreadPoolExecutor(12) as ex:
        results = [r for rs_ in ex.map(client, [25] * 12) for r in rs_]
    bad = [(st, body) for st, _, body, _ in results if st != 200]
    assert bad == [], bad[:5]
    assert max(body["concurrent"] for _, _, body, _ in results) <= 2
    # no router sent a request to a full replica: run() never waited on the replica's own slots
    replica_waits = [float(h.get("x-openscore-queue-wait-ms", "0")) for _, h, _, _ in results]
    assert max(replica_waits) < 5.0, sorted(replica_waits)[-5:]
    per_pod: dict[str, int] = {}
    for _, _, body, _ in results:
        per_pod[body["pod"]] = per_pod.get(body["pod"], 0) + 1
    assert len(per_pod) == 2 and min(per_pod.values()) >= 0.3 * len(results), per_pod  # balanced
    pods = rs.ready()
    assert sum(rs.metric(p, "openscore_router_admitted_total", 'how="remote"') for p in pods) > 0
    assert sum(rs.metric(p, "openscore_router_admitted_total", 'how="fallback"') for p in pods) == 0

    # a burst the 4 slots cannot absorb: every request is served or refused within maxQueueWaitMs in all
    def burst(_: int) -> tuple[int, dict[str, str], Any, float]:
        with requests.Session() as s:
            return post(s, url, key, 0.5)
    with ThreadPoolExecutor(36) as ex:
        out = list(ex.map(burst, range(36)))
    refused = [h for st, h, _, _ in out if st == 503]
    served = [body for st, _, body, _ in out if st == 200]
    assert refused and len(served) >= 8, [st for st, *_ in out]
    assert len(refused) + len(served) == len(out), [st for st, *_ in out]
    for h in refused:
        assert h["x-openscore-limit"] == "max_queue_wait"
        assert float(h["x-openscore-router-queue-wait-ms"]) <= 1500 + 150, h
    assert max(b["concurrent"] for b in served) <= 2


def host_pid_of(pod: dict[str, Any], container: str = "router") -> int:
    """The host PID of a container's main process (the real node's cgroupfs tree is named by container id)."""
    cid = next(c["containerID"] for c in pod["status"]["containerStatuses"] if c["name"] == container)
    cid = cid.split("://", 1)[1]
    for mount in cgroup_mounts():
        for procs in mount.glob(f"**/{cid}/cgroup.procs"):
            for pid in (int(x) for x in procs.read_text().split()):
                try:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"router" in cmd and any(b"openscore" in c for c in cmd):
                    return pid
    raise AssertionError(f"no router process found for container {cid}")


class RetryingLoad:
    """A client that retries a request whose connection failed (what a client of a Service does when the
    pod behind its connection dies); any other non-200 is a failure."""

    def __init__(self, url: str, key: str, threads: int = 4):
        self.url, self.key = url, key
        self.failures: list[tuple[int, str]] = []
        self.ok = 0
        self.retried = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        s = requests.Session()
        while not self._stop.is_set():
            for _attempt in range(20):
                try:
                    st, _, body, _ = post(s, self.url, self.key, 0.02)
                    break
                except requests.ConnectionError:
                    self.retried += 1
                    s.close()
                    s = requests.Session()
                    time.sleep(0.1)
            else:
                st, body = 0, "no connection after 20 tries"
            if st == 200:
                self.ok += 1
            else:
                self.failures.append((st, str(body)[:300]))

    def __enter__(self) -> RetryingLoad:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


@pytest.mark.parametrize("routers", [2], indirect=True)
def test_losing_the_coordinating_router_moves_coordination_within_a_lease_period_without_errors(
        cluster: ClusterInfo, namespace: str, slow_image: str, routers: tuple[Routers, str]) -> None:
    rs, base = routers
    key = secrets.token_urlsafe(32)
    asyncio.run(deploy(cluster, namespace, "steady", slow_service(slow_image, key, 1, 5000)))
    until(lambda: rs.service_seen_by_all("steady", 2), "2 router pods seeing steady", timeout=300)
    first = until(lambda: rs.holder("steady"), "a coordinator for steady", timeout=30)
    url = f"{base}/api/v1/service/steady/score"
    with RetryingLoad(url, key) as load:
        time.sleep(2)
        pod = next(p for p in rs.pods() if first.startswith(p["metadata"]["name"] + "_"))
        os.kill(host_pid_of(pod), signal.SIGKILL)  # the coordinator's process dies; kubelet restarts it
        killed = time.monotonic()
        second = until(lambda: (h := rs.holder("steady")) and h != first and h, "a new coordinator", timeout=30)
        took_over_s = time.monotonic() - killed
        time.sleep(2)
        # now delete the new coordinator's pod: it hands the Lease back as it stops
        pod2 = next(p for p in rs.pods() if second.startswith(p["metadata"]["name"] + "_"))
        cluster.kubectl("-n", namespace, "delete", "pod", pod2["metadata"]["name"], "--wait=false")
        deleted = time.monotonic()
        until(lambda: (h := rs.holder("steady")) and h != second, "coordination after the pod deletion", timeout=30)
        moved_s = time.monotonic() - deleted
        until(lambda: rs.service_seen_by_all("steady", 2), "2 router pods again", timeout=300)
        time.sleep(1)
    print(f"coordinator SIGKILL -> new holder {took_over_s:.2f} s; pod deleted -> new holder {moved_s:.2f} s; "
          f"{load.ok} ok, {load.retried} connection retries")
    assert load.failures == [], (load.failures[:5], rs.why_failed("steady"))
    assert load.ok > 50
    assert took_over_s <= LEASE_S + 3, took_over_s
    assert moved_s <= LEASE_S, moved_s  # handed back: no need to wait for expiry


@pytest.mark.parametrize("routers", [2], indirect=True)
def test_a_key_rotation_and_a_signing_key_revocation_reach_every_router_pod(
        cluster: ClusterInfo, namespace: str, slow_image: str, routers: tuple[Routers, str]) -> None:
    rs, _ = routers
    key = secrets.token_urlsafe(32)
    asyncio.run(deploy(cluster, namespace, "keyed", slow_service(slow_image, key, 1, 5000)))
    asyncio.run(deploy(cluster, namespace, "tokened", slow_service(slow_image, key, 1, 5000, authEnabled=False,
                                                                  tokenAuthEnabled=True)))
    until(lambda: rs.service_seen_by_all("keyed", 2) and rs.service_seen_by_all("tokened", 2),
          "2 router pods seeing both services", timeout=300)
    pods = rs.ready()
    urls = [f"http://{p['status']['podIP']}:8080/api/v1/service" for p in pods]

    def status(u: str, svc: str, cred: str) -> int:
        return requests.post(f"{u}/{svc}/score", json={"sleep": 0}, headers={"Authorization": f"Bearer {cred}"},
                             timeout=10).status_code
    assert [status(u, "keyed", key) for u in urls] == [200, 200]
    token_url = f"{urls[0].rsplit('/api', 1)[0]}/admin/v1/services/tokened/token"
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    got = requests.post(token_url, headers=admin, timeout=10)
    # the routers' Role may not create Secrets: without `cluster install`'s signing key, a clear 503
    assert got.status_code == 503 and "signing key" in got.json()["message"], got.text

    async def signing_key() -> None:
        async with KubeClient.from_kubeconfig(str(cluster.kubeconfig), namespace=namespace) as client:
            store = KubernetesStateStore(client, namespace)
            await store.ensure_signing_key()
            await store.close()
    asyncio.run(signing_key())
    got = until(lambda: (r := requests.post(token_url, headers=admin, timeout=10)).status_code == 200 and r,
                "a token from the first router pod", timeout=10)
    token = got.json()["accessToken"]
    assert [status(u, "tokened", token) for u in urls] == [200, 200]  # issued by one pod, valid on both

    new = secrets.token_urlsafe(32)

    async def rotate() -> None:
        client = KubeClient.from_kubeconfig(str(cluster.kubeconfig), namespace=namespace)
        store = KubernetesStateStore(client, namespace)
        try:
            await store.set_key("keyed", "Primary", new)
            await store.rotate_signing_key(0.0)  # revoke: tokens signed with the old key stop working
        finally:
            await store.close()
            await client.close()
    t0 = time.monotonic()
    asyncio.run(rotate())
    lags = []
    for u in urls:
        until(lambda u=u: status(u, "keyed", key) == 401 and status(u, "keyed", new) == 200, "the new key",
              timeout=10)
        until(lambda u=u: status(u, "tokened", token) == 401, "the old token refused", timeout=10)
        lags.append(time.monotonic() - t0)
    print(f"key rotation + signing key revocation seen by both router pods after {max(lags):.2f} s")


def replica_pods(rs: Routers, service: str) -> list[dict[str, Any]]:
    pods = rs.cluster.kubectl_json("-n", rs.namespace, "get", "pods", "-l", f"{crd.LABEL_SERVICE}={service}")["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])]


@pytest.mark.parametrize("routers", [2], indirect=True)
def test_only_the_coordinator_autoscales_from_both_pods_load_and_its_successor_and_a_joining_pod_keep_the_count(
        cluster: ClusterInfo, namespace: str, slow_image: str, routers: tuple[Routers, str]) -> None:
    rs, base = routers
    key = secrets.token_urlsafe(32)
    doc = slow_service(slow_image, key, 1, 5000, autoScaler={
        "autoscaleEnabled": True, "minReplicas": 1, "maxReplicas": 2, "targetUtilization": 30,
        "refreshPeriodInSeconds": 1})
    del doc["numReplicas"]
    asyncio.run(deploy(cluster, namespace, "elastic", doc))
    until(lambda: rs.service_seen_by_all("elastic", 2), "2 router pods seeing elastic", timeout=300)

    def deployment() -> dict[str, Any]:
        return cluster.kubectl_json("-n", namespace, "get", "deployment", deployment_name("elastic", "elastic"))

    def wanted() -> int:
        return int(deployment()["spec"]["replicas"])
    with RetryingLoad(f"{base}/api/v1/service/elastic/score", key, threads=6) as load:
        try:
            until(lambda: wanted() == 2 and len(replica_pods(rs, "elastic")) == 2, "a second replica from the load",
                  timeout=240)
        except AssertionError as e:
            pods = cluster.kubectl_json("-n", namespace, "get", "pods", "-l", f"{crd.LABEL_SERVICE}=elastic")
            seen = {p["metadata"]["name"]: (rs.admin(p, "/admin/v1/services/elastic").json()["versions"],
                                            rs.admin(p, "/readyz").json().get("coordination")) for p in rs.ready()}
            phases = [(p["metadata"]["name"], p["status"].get("phase")) for p in pods["items"]]
            raise AssertionError(f"{e}: wanted {wanted()}, pods {phases}, {load.ok} ok, failures "
                                 f"{load.failures[:3]}, router pods saw {seen}") from None
        coordinator = rs.holder("elastic")
        decisions = {p["metadata"]["name"]: rs.metric(p, "openscore_router_autoscale_decisions_total",
                                                      'service="elastic"') for p in rs.ready()}
        mine = {name: coordinator.startswith(name + "_") for name in decisions}
        assert sorted(mine.values()) == [False, True], (coordinator, decisions)
        # the coordinator alone decided (the other pod's requests counted in its pool: it sees both pods' load)
        assert all((n >= 1) == mine[name] for name, n in decisions.items()), decisions
        # every write of another count bumps the Deployment's generation, even one undone before a poll sees it
        generation = deployment()["metadata"]["generation"]
        cluster.kubectl("-n", namespace, "delete", "pod", next(n for n, m in mine.items() if m), "--wait=false")
        second = until(lambda: (h := rs.holder("elastic")) and h != coordinator and h, "a new coordinator",
                       timeout=30)
        counts = []
        end = time.monotonic() + 5  # the successor starts a fresh window at the count it finds
        while time.monotonic() < end:
            counts.append(wanted())
            time.sleep(0.25)
        # the Deployment's replacement router pod joins: it applies the service (whose count, 2, is above the
        # autoscaler's minimum, 1) before it knows who coordinates, and must not scale it
        joined = until(lambda: rs.service_seen_by_all("elastic", 2) and rs.ready(), "the replacement router pod",
                       timeout=120)
        time.sleep(2)
        counts.append(wanted())
    print(f"autoscale decisions per router pod {decisions}; coordination moved to {second}; replica counts "
          f"after the move {sorted(set(counts))}; {load.ok} ok, {load.retried} connection retries")
    assert set(counts) == {2}, counts
    assert {p["metadata"]["name"] for p in joined} - set(decisions)  # a new router pod did join
    assert deployment()["metadata"]["generation"] == generation, "the replica count was changed and changed back"
    assert load.failures == [], (load.failures[:5], rs.why_failed("elastic"))


@pytest.mark.parametrize("routers", [2], indirect=True)
def test_a_version_update_under_load_through_two_router_pods_fails_no_request(
        cluster: ClusterInfo, namespace: str, slow_image: str, routers: tuple[Routers, str]) -> None:
    rs, base = routers
    key = secrets.token_urlsafe(32)
    doc = slow_service(slow_image, key, 1, 5000)
    asyncio.run(deploy(cluster, namespace, "rolling", doc))
    until(lambda: rs.service_seen_by_all("rolling", 2), "2 router pods seeing rolling", timeout=300)
    old = {p["metadata"]["name"] for p in replica_pods(rs, "rolling")}
    with RetryingLoad(f"{base}/api/v1/service/rolling/score", key) as load:
        until(lambda: load.ok > 50, "traffic flowing")
        # a new template (an environment variable), rolled out by the Deployment while both pods route
        asyncio.run(deploy(cluster, namespace, "rolling", {**doc, "environmentVariables": {"ROLLED": "1"}}))

        def rolled() -> bool:
            pods = replica_pods(rs, "rolling")
            return len(pods) == 1 and pods[0]["metadata"]["name"] not in old and \
                {e["name"]: e.get("value") for e in pods[0]["spec"]["containers"][0].get("env", [])}.get("ROLLED") \
                == "1" and len(rs.cluster.kubectl_json("-n", rs.namespace, "get", "pods", "-l",
                                                        f"{crd.LABEL_SERVICE}=rolling")["items"]) == 1
        until(rolled, "the update rolled out", timeout=240)
        n = load.ok
        until(lambda: load.ok > n + 50, "traffic after the update")
    answered = set()
    with requests.Session() as s:
        for p in rs.ready():  # each router pod now routes to the new replica only
            st, _, body, _ = post(s, f"http://{p['status']['podIP']}:8080/api/v1/service/rolling/score", key, 0)
            assert st == 200, body
            answered.add(body["pod"])
    print(f"version update under load: {load.ok} ok, {load.retried} connection retries")
    assert load.failures == [], (load.failures[:5], rs.why_failed("rolling"))
    assert len(answered) == 1 and not answered & old, (answered, old)
