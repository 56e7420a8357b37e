"""`openscore router --kubernetes` against the real cluster: a real router process (on the host, with a
kubeconfig bound to the router's least-privilege Role) reads ScoringServices and Secrets, forwards to the
pods' IPs with the replica credential, and answers with the service's key only; deleting the CR removes
everything the service owned (the controller-manager's garbage collector)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from openscore.kube import crd
from openscore.kube.client import KubeClient
from openscore.kube.manifests import deployment_name
from openscore.kube.object_store import KubernetesStateStore
from openscore.kube.target import KubernetesTarget
from tests.cluster.conftest import ClusterInfo
from tests.cluster.test_target import _router_client, app_image  # noqa: F401  (a fixture)
from tests.router.routerkit import free_port

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "router-cluster-admin-key-0123456789abcdef"
ROUTER_RULES_EXTRA = [  # the CR itself and its status, on top of the target's read/scale rules
    {"apiGroups": [crd.GROUP], "resources": [crd.PLURAL], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [crd.GROUP], "resources": [f"{crd.PLURAL}/status"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],  # several routers (docs/router-ha.md)
     "verbs": ["get", "list", "watch", "create", "update", "delete"]},
]


def until(check: Any, what: str, timeout: float = 180) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class HostRouter:
    """`openscore router --kubernetes --kubeconfig ...` as a real process on the host."""

    def __init__(self, kubeconfig: Path, namespace: str, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AZUREML_", "AML_", "OPENSCORE_"))}
        env["PYTHONUNBUFFERED"] = "1"
        env["OPENSCORE_ROUTER_ADMIN_KEY"] = ADMIN_KEY
        self._log = tempfile.NamedTemporaryFile("w+b", prefix="router-kube-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "openscore", "router", "--kubernetes", "--kubeconfig", str(kubeconfig),
             "--namespace", namespace, "--port", str(self.port), "--status-interval-s", "0.5", *extra],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def get(self, path: str) -> requests.Response | None:
        try:
            return requests.get(self.url + path, timeout=5)
        except requests.ConnectionError:
            assert self.proc.poll() is None, f"router exited {self.proc.returncode}:\n{self.log()}"
            return None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        Path(self._log.name).unlink(missing_ok=True)


@pytest.fixture
def router_kubeconfig(cluster: ClusterInfo, namespace: str, tmp_path: Path) -> Path:
    return router_account(cluster, namespace, tmp_path)


def router_account(cluster: ClusterInfo, namespace: str, tmp_path: Path) -> Path:
    """ServiceAccount `router` bound to the router's least-privilege Role, plus read access to ScoringServices
    and their status; returns a kubeconfig with its token."""
    asyncio.run(_router_client(cluster, namespace, tmp_path).close())
    role = cluster.kubectl_json("-n", namespace, "get", "role", "router")
    role["rules"] = role["rules"] + ROUTER_RULES_EXTRA
    for k in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        role["metadata"].pop(k, None)
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(role))
    return tmp_path / "router.kubeconfig"


@pytest.fixture
def host_router(router_kubeconfig: Path, namespace: str) -> Iterator[HostRouter]:
    r = HostRouter(router_kubeconfig, namespace, "--scale-down-window-s", "3")
    try:
        yield r
    finally:
        r.stop()


def service_doc(image: str, primary: str, secondary: str, **keys: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"computeType": "aks", "entryScript": "/var/azureml-app/score.py", "image": image,
                           "numReplicas": 1, "authEnabled": True,
                           "containerResourceRequirements": {"cpu": 0.1, "memoryInGB": 0.5},
                           "keys": {"primaryKey": primary, "secondaryKey": secondary}}
    doc.update(keys)
    return doc


async def deploy(cluster: ClusterInfo, namespace: str, name: str, doc: dict[str, Any]) -> None:
    """What the deployer does: the ScoringService (through the store) and each version's Deployment."""
    kc = KubeClient.from_kubeconfig(str(cluster.kubeconfig), namespace=namespace)
    async with kc:
        store = KubernetesStateStore(kc, namespace)
        try:
            rec = await store.put_service(name, doc)
        finally:
            await store.close()
        target = KubernetesTarget(kc, namespace, manage_deployments=True)
        await target.start(lambda k: None)
        try:
            for v in rec.spec.versions.values():
                await target.deploy((name, v.name), v, v.num_replicas or 1)
        finally:
            await target.stop()


def test_a_cpu_service_is_scored_through_the_router_with_its_key_and_deleting_the_cr_removes_everything(
        cluster: ClusterInfo, namespace: str, app_image: str, host_router: HostRouter) -> None:  # noqa: F811
    ready = until(lambda: (r := host_router.get("/readyz")) is not None and r.status_code == 200 and r,
                  "the router's first snapshot")
    body = ready.json()
    assert body["status"] == "ready" and "state" not in body  # current, not stale
    assert "problem" not in body["coordination"], body  # its Role lets it keep the coordination Leases
    primary, secondary = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    asyncio.run(deploy(cluster, namespace, "echo", service_doc(app_image, primary, secondary)))
    url = f"{host_router.url}/api/v1/service/echo/score"

    def scored() -> requests.Response | None:
        r = requests.post(url, json={"a": 1}, headers={"Authorization": f"Bearer {primary}"}, timeout=30)
        return r if r.status_code == 200 else None
    r = until(scored, "a 200 through the router from the pod")
    assert r.json() == {"echo": {"a": 1}}
    assert requests.post(url, json={"a": 1}, headers={"Authorization": f"Bearer {secondary}"},
                         timeout=30).status_code == 200
    assert requests.post(url, json={"a": 1}, timeout=30).status_code == 401
    assert requests.post(url, json={"a": 1}, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 401
    metrics = requests.get(f"{host_router.url}/metrics", timeout=5).text
    assert "openscore_router_state_stale 0.0" in metrics

    def healthy() -> dict[str, Any] | None:  # what `kubectl get osvc` and `service show` read
        status = cluster.kubectl_json("-n", namespace, "get", crd.PLURAL, "echo").get("status") or {}
        return status if status.get("state") == "Healthy" else None
    status = until(healthy, "the router to write Healthy into the CR's status")
    assert [v["readyReplicas"] for v in status["versions"].values()] == [1], status

    cluster.kubectl("-n", namespace, "delete", crd.PLURAL, "echo", "--wait=true")

    def gone() -> bool:
        left = [cluster.kubectl_json("-n", namespace, "get", kind, "-l", f"{crd.LABEL_SERVICE}=echo")["items"]
                for kind in ("deployments", "pods", "secrets")]
        return not any(left)
    until(gone, "the service's Deployment, pods and Secrets gone with its CR")
    until(lambda: requests.post(url, json={"a": 1}, headers={"Authorization": f"Bearer {primary}"},
                                timeout=30).status_code == 404, "the router to forget the service")


def router_manifests(namespace: str, image: str) -> list[dict[str, Any]]:
    """The router as a pod of the runtime image (ServiceAccount `router` and its Role come from the
    router_kubeconfig fixture), and a ClusterIP Service in front of it."""
    labels = {crd.LABEL_MANAGED: crd.MANAGED_BY, crd.LABEL_COMPONENT: crd.COMPONENT_ROUTER}
    container = {
        "name": "router", "image": image,
        "command": ["openscore", "router", "--kubernetes", "--host", "0.0.0.0", "--port", "8080",
                    "--status-interval-s", "0.5"],
        "env": [{"name": "OPENSCORE_ROUTER_ADMIN_KEY", "value": ADMIN_KEY}],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
    }
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "openscore-router", "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels},
                               "spec": {"serviceAccountName": "router", "containers": [container],
                                        "nodeSelector": {"openscore.io/pool": "cpu"}}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "openscore-router", "labels": labels},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080, "name": "http"}]}},
    ]


def test_the_in_cluster_router_splits_an_endpoints_traffic_by_its_percentages(
        cluster: ClusterInfo, namespace: str, app_image: str, router_kubeconfig: Path) -> None:  # noqa: F811
    for doc in router_manifests(namespace, app_image):
        cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(doc))
    primary, secondary = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    doc = {"computeType": "aksendpoint", "authEnabled": True,
           "keys": {"primaryKey": primary, "secondaryKey": secondary},
           "versions": {
               name: {"entryScript": "/var/azureml-app/score.py", "image": app_image, "numReplicas": 1,
                      "containerResourceRequirements": {"cpu": 0.1, "memoryInGB": 0.5},
                      "trafficPercentile": pct, "isDefault": name == "blue",
                      "environmentVariables": {"VERSION_NAME": name}}
               for name, pct in (("blue", 70), ("green", 30))}}
    asyncio.run(deploy(cluster, namespace, "split", doc))
    ip = cluster.kubectl_json("-n", namespace, "get", "service", "openscore-router")["spec"]["clusterIP"]
    url = f"http://{ip}/api/v1/service/split/score"
    auth = {"Authorization": f"Bearer {primary}"}

    def both_ready() -> bool:
        try:
            r = requests.get(f"http://{ip}/admin/v1/services", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                             timeout=5)
        except requests.RequestException:
            return False
        if r.status_code != 200:
            return False
        svc = [s for s in r.json()["services"] if s["name"] == "split"]
        return bool(svc) and svc[0]["state"] == "Healthy"
    until(both_ready, "the in-cluster router seeing a ready replica of both versions", timeout=240)
    assert requests.post(url, json={"a": 1}, timeout=30).status_code == 401

    counts = {"blue": 0, "green": 0}
    with requests.Session() as s:
        for _ in range(5000):
            r = s.post(url, json={"a": 1}, headers=auth, timeout=30)
            assert r.status_code == 200, r.text
            counts[r.headers["azureml-model-deployment"]] += 1
    assert abs(counts["green"] / 5000 - 0.30) <= 0.02, counts


class Load:
    """Keyed requests in a loop on a few threads, every answer kept (status, version that answered)."""

    def __init__(self, url: str, key: str, threads: int = 4):
        import threading
        self.url, self.key = url, key
        self.answers: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        with requests.Session() as s:
            while not self._stop.is_set():
                try:
                    r = s.post(self.url, json={"a": 1}, headers={"Authorization": f"Bearer {self.key}"}, timeout=60)
                    self.answers.append((r.status_code, r.headers.get("azureml-model-deployment", "")))
                except requests.RequestException as e:
                    self.answers.append((0, str(e)))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(90)

    def failures(self) -> list[tuple[int, str]]:
        return [a for a in self.answers if a[0] != 200]


def test_a_killed_pod_and_a_version_update_under_load_fail_no_request(
        cluster: ClusterInfo, namespace: str, app_image: str, host_router: HostRouter) -> None:  # noqa: F811
    until(lambda: (r := host_router.get("/readyz")) is not None and r.status_code == 200, "the router")
    primary, secondary = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    doc = service_doc(app_image, primary, secondary, numReplicas=2)
    asyncio.run(deploy(cluster, namespace, "steady", doc))
    url = f"{host_router.url}/api/v1/service/steady/score"
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}

    def ready_count() -> int:
        r = requests.get(f"{host_router.url}/admin/v1/services/steady", headers=admin, timeout=5)
        return r.json()["versions"]["steady"]["readyReplicas"] if r.status_code == 200 else 0
    until(lambda: ready_count() == 2, "two ready replicas")
    with Load(url, primary) as load:
        until(lambda: len(load.answers) > 50, "traffic flowing")
        victim = cluster.kubectl_json("-n", namespace, "get", "pods", "-l", f"{crd.LABEL_SERVICE}=steady")["items"][0]
        cluster.kubectl("-n", namespace, "delete", "pod", victim["metadata"]["name"], "--wait=true")
        until(lambda: ready_count() == 2, "the killed pod replaced")
        n = len(load.answers)
        until(lambda: len(load.answers) > n + 50, "traffic after the kill")
        # a version update: a new template (an environment variable), rolled out by the Deployment
        asyncio.run(deploy(cluster, namespace, "steady", {**doc, "environmentVariables": {"ROLLED": "1"}}))

        def rolled() -> bool:
            pods = cluster.kubectl_json("-n", namespace, "get", "pods", "-l", f"{crd.LABEL_SERVICE}=steady")["items"]
            envs = [{e["name"]: e.get("value") for e in p["spec"]["containers"][0].get("env", [])} for p in pods]
            return len(pods) == 2 and all(e.get("ROLLED") == "1" for e in envs) and ready_count() == 2
        until(rolled, "the update rolled out", timeout=240)
        n = len(load.answers)
        until(lambda: len(load.answers) > n + 50, "traffic after the update")
    assert len(load.answers) > 200
    assert load.failures() == [], (load.failures()[:5], len(load.failures()), len(load.answers))


def test_a_load_step_scales_up_to_a_new_ready_pod_and_back_down_after_the_window(
        cluster: ClusterInfo, namespace: str, app_image: str, host_router: HostRouter) -> None:  # noqa: F811
    until(lambda: (r := host_router.get("/readyz")) is not None and r.status_code == 200, "the router")
    primary, secondary = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    doc = service_doc(app_image, primary, secondary)
    del doc["numReplicas"]
    doc["autoScaler"] = {"autoscaleEnabled": True, "minReplicas": 1, "maxReplicas": 2, "targetUtilization": 30,
                         "refreshPeriodInSeconds": 1}
    asyncio.run(deploy(cluster, namespace, "elastic", doc))
    url = f"{host_router.url}/api/v1/service/elastic/score"

    def ready_pods() -> list[str]:
        pods = cluster.kubectl_json("-n", namespace, "get", "pods", "-l", f"{crd.LABEL_SERVICE}=elastic")["items"]
        return [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")
                and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]

    def replicas() -> int:
        return int(cluster.kubectl_json("-n", namespace, "get", "deployment",
                                             deployment_name("elastic", "elastic"))["spec"]["replicas"])
    first = until(lambda: len(r := ready_pods()) == 1 and r, "one ready pod")
    with Load(url, primary, threads=6) as load:
        two = until(lambda: len(r := ready_pods()) == 2 and r, "a second ready pod from the load step")
        assert set(first) < set(two)
        n = len(load.answers)
        until(lambda: len(load.answers) > n + 50, "traffic on two replicas")
    assert load.failures() == []
    until(lambda: replicas() == 1 and len(ready_pods()) == 1, "back to one replica after the scale-down window")


class Forwarder:
    """A TCP forwarder on 127.0.0.1 to the API server, which the test can cut: a lost API server, for real."""

    def __init__(self, host: str, port: int):
        import socket
        import threading
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.open = True
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        import socket
        import threading
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:  # accepted in the instant of the cut
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            # blocking from here: a quiet watch must not time the pipe out (5 s of no events is common)
            upstream.settimeout(None)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: Any, b: Any) -> None:
        import socket
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            # shutdown first: close() alone neither sends a FIN while the other pipe thread is blocked in
            # recv() on the socket, nor wakes that thread, and the router's connection would hang half-open
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def cut(self) -> None:
        """Refuse new connections and break the open ones."""
        import socket
        self.open = False
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (a bare close would not)
        except OSError:
            pass
        self.listener.close()
        self._thread.join(10)
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def test_a_lost_api_server_keeps_the_router_serving_from_its_last_state_and_it_says_so(
        cluster: ClusterInfo, namespace: str, app_image: str, router_kubeconfig: Path) -> None:  # noqa: F811
    from urllib.parse import urlsplit
    kc = json.loads(router_kubeconfig.read_text())
    server = urlsplit(kc["clusters"][0]["cluster"]["server"])
    fwd = Forwarder(server.hostname or "", server.port or 443)
    kc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{fwd.port}"
    cut_config = router_kubeconfig.with_name("router-cut.kubeconfig")
    cut_config.write_text(json.dumps(kc))
    router = HostRouter(cut_config, namespace)
    try:
        until(lambda: (r := router.get("/readyz")) is not None and r.status_code == 200, "the router")
        primary, secondary = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        asyncio.run(deploy(cluster, namespace, "kept", service_doc(app_image, primary, secondary)))
        url = f"{router.url}/api/v1/service/kept/score"
        auth = {"Authorization": f"Bearer {primary}"}
        until(lambda: requests.post(url, json={"a": 1}, headers=auth, timeout=30).status_code == 200, "a 200")
        time.sleep(6)  # the watches go quiet first: a lost API server is noticed on idle connections too
        fwd.cut()

        def stale() -> dict[str, Any] | None:
            r = router.get("/readyz")
            return r.json() if r is not None and r.json().get("state") == "stale" else None
        try:
            body = until(stale, "the router to notice the lost API server", timeout=60)
        except AssertionError as e:  # what the router thought, for a failure that cannot be rerun
            said = router.get("/readyz")
            raise AssertionError(f"{e}; /readyz said {said.text if said is not None else None}; "
                                 f"log:\n{router.log()[-6000:]}") from None
        assert body["status"] == "ready" and body["detail"]
        assert "openscore_router_state_stale 1.0" in requests.get(f"{router.url}/metrics", timeout=5).text
        for _ in range(20):  # still serving from the last state: keys and the pod it knew
            assert requests.post(url, json={"a": 1}, headers=auth, timeout=30).status_code == 200
        assert requests.post(url, json={"a": 1}, timeout=30).status_code == 401
    finally:
        router.stop()
        fwd.cut()
