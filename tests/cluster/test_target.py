"""KubernetesTarget on the real cluster: real pods on node-cpu-0 that answer only with their credential,
accelerator pools on the fake GPU nodes, scaling through the scale subresource, a deleted pod replaced, the
router's least-privilege mode under a Role that cannot create anything, and the manifests validated by the
API server (server-side dry run). The pod-state rules themselves are checked first, on pods as the API
server reports them (no cluster needed)."""

from __future__ import annotations

import asyncio
import base64
import json
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from openscore.kube.client import ForbiddenError, KubeClient, UnreachableError
from openscore.kube.instance_types import (
    InstanceType,
    InstanceTypeTooLarge,
    check_fits,
    parse_instance_type,
    resolve,
)
from openscore.kube.manifests import (
    ANNOTATION_ROLLOUT,
    deployment_manifest,
    deployment_name,
    pod_plan,
    replica_secret_manifest,
)
from openscore.kube.target import KubernetesTarget, pod_phase
from openscore.router.config import ResourceSpec, VersionSpec
from openscore.router.targets import CRASHED, READY, STARTING, STOPPING, UNREADY, ReplicaInfo
from tests.cluster.conftest import ClusterInfo

SCORE_PY = textwrap.dedent("""\
    import json

    def init():
        print("init done")

    def run(raw_data):
        return {"echo": json.loads(raw_data)}
    """)
BROKEN_PY = textwrap.dedent("""\
    def init():
        raise ValueError("no model here")

    def run(raw_data):
        return raw_data
    """)
FAKE_POOL = parse_instance_type({"metadata": {"name": "fake-pool"}, "spec": {
    "nodeSelector": {"openscore.io/pool": "gpu"},
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}},
    "tolerations": [{"key": "sku", "operator": "Exists", "effect": "NoSchedule"}]}})
GPU_TYPE = parse_instance_type({"metadata": {"name": "gpu-one"}, "spec": {
    "nodeSelector": {"openscore.io/pool": "gpu"},
    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi",
                                                                         "nvidia.com/gpu": 1}},
    "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}})
ROUTER_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch"]},
]


# ------------------------------------------------------------------------------------------------ pod states
def _pod(status: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "uid": "u", **meta}, "status": status}


def _ready(flag: str) -> dict[str, Any]:
    return {"type": "Ready", "status": flag}


def test_pod_states_as_the_router_sees_them():
    running = {"phase": "Running", "podIP": "10.244.0.9"}
    assert pod_phase(_pod({**running, "conditions": [_ready("True")]})) == (READY, "")
    assert pod_phase(_pod({**running, "conditions": [_ready("True")]}, deletionTimestamp="2026-01-01T00:00:00Z"))[0] \
        == STOPPING
    assert pod_phase(_pod({**running, "conditions": [_ready("False")]})) == (STARTING, "")
    assert pod_phase(_pod({**running, "conditions": [_ready("False")]}), READY) == (UNREADY, "readiness probe failed")
    unschedulable = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                         "reason": "Unschedulable",
                                                         "message": "0/4 nodes are available: 4 Insufficient "
                                                                    "nvidia.com/gpu."}]}
    assert pod_phase(_pod(unschedulable)) == (STARTING, "Unschedulable: 0/4 nodes are available: 4 Insufficient "
                                                        "nvidia.com/gpu.")


def test_crashes_carry_the_kubelets_reason_and_exit_code():
    def waiting(reason: str, message: str = "", last: dict | None = None) -> dict[str, Any]:
        cs: dict[str, Any] = {"name": "replica", "state": {"waiting": {"reason": reason, "message": message}}}
        if last:
            cs["lastState"] = {"terminated": last}
        return {"phase": "Running", "containerStatuses": [cs], "conditions": [_ready("False")]}
    log_tail = ("E openscore.worker - The entry script failed to initialize:\nTraceback (most recent call last):\n"
                '  File "/var/azureml-app/score.py", line 2, in init\n    raise ValueError("no model here")\n'
                "ValueError: no model here\n\nE openscore.supervisor - stopping with exit code 3\n"
                "I openscore.supervisor - Server stopped\n")
    phase, reason = pod_phase(_pod(waiting("CrashLoopBackOff", "back-off 10s", {
        "exitCode": 3, "reason": "Error", "message": log_tail})))
    assert phase == CRASHED
    assert reason == "CrashLoopBackOff: exited with code 3 (init() failed): ValueError: no model here"
    assert pod_phase(_pod(waiting("CrashLoopBackOff", "", {"exitCode": 137, "reason": "OOMKilled"}))) == (
        CRASHED, "CrashLoopBackOff: exited with code 137 (OOMKilled)")
    phase, reason = pod_phase(_pod(waiting("ImagePullBackOff", 'Back-off pulling image "127.0.0.1:5000/x:1"')))
    assert (phase, reason) == (CRASHED, 'ImagePullBackOff: Back-off pulling image "127.0.0.1:5000/x:1"')
    first_exit = {"phase": "Running", "containerStatuses": [{"name": "replica", "state": {"terminated": {
        "exitCode": 3, "reason": "Error"}}}]}
    assert pod_phase(_pod(first_exit)) == (CRASHED, "exited with code 3 (init() failed)")
    assert pod_phase(_pod(waiting("ContainerCreating"))) == (STARTING, "ContainerCreating")
    # the kubelet's own transient trouble is no crash
    assert pod_phase(_pod(waiting("CreateContainerConfigError", "failed to sync secret cache"))) == (
        STARTING, "CreateContainerConfigError: failed to sync secret cache")
    assert pod_phase(_pod({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}))[0] == CRASHED


# ------------------------------------------------------------------------------------------------ harness
class Watcher:
    """Runs a target on this loop and records every ReplicaInfo it reports, so tests can wait for a state and
    check what was seen on the way."""

    def __init__(self, target: KubernetesTarget):
        self.target = target
        self.seen: list[ReplicaInfo] = []
        self._event = asyncio.Event()

    async def __aenter__(self) -> Watcher:
        await self.target.start(self.on_change)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.target.stop()
        # nothing of the target's keeps running: watches, credential reads, background scales
        left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("kube-target") and not t.done()]
        assert not left, left

    def on_change(self, key: tuple[str, str]) -> None:
        self.seen.extend(self.target.replicas(key))
        self._event.set()

    async def until(self, check: Callable[[], Any], what: str, timeout: float = 120) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = check()
            if value:
                return value
            if loop.time() > deadline:
                now = [(i.id, i.phase, i.reason) for k in sorted(self.target.keys()) for i in self.target.replicas(k)]
                raise AssertionError(f"timed out waiting for {what}; replicas now: {now}")
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), 1.0)
            except TimeoutError:
                pass


def ready(w: Watcher, key: tuple[str, str], n: int) -> list[ReplicaInfo] | None:
    infos = [i for i in w.target.replicas(key) if i.ready and not i.outdated]
    others = [i for i in w.target.replicas(key) if not (i.ready and not i.outdated)]
    return infos if len(infos) == n and not others else None


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def version(image: str, **kw: Any) -> VersionSpec:
    return VersionSpec(name=kw.pop("name", "blue"), entry_script="/var/azureml-app/score.py",
                       app_root="/var/azureml-app", image=image, **kw)


@pytest.fixture(scope="session")
def app_image(cluster: ClusterInfo, runtime_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The runtime image plus an app at /var/azureml-app (score.py echoes, broken.py's init() raises), in the
    cluster's registry."""
    from openscore.images.deployment import build_deployment_layer
    from openscore.images.recipe import ImageRef
    from openscore.images.registry import Registry

    name, tag = runtime_image.rsplit(":", 1)
    host, repository = name.split("/", 1)
    digest = Registry(host).manifest_digest(repository, tag)
    assert digest is not None, runtime_image
    app = tmp_path_factory.mktemp("echo-app")
    (app / "score.py").write_text(SCORE_PY)
    (app / "broken.py").write_text(BROKEN_PY)
    return build_deployment_layer(ImageRef(name, tag, digest), app, registry=host).by_tag


def client(cluster: ClusterInfo, namespace: str) -> KubeClient:
    return KubeClient.from_kubeconfig(str(cluster.kubeconfig), namespace=namespace)


async def score(info: ReplicaInfo, body: Any, secret: str | None) -> tuple[int, Any]:
    headers = {"x-openscore-replica-secret": secret} if secret is not None else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s, \
            s.post(f"{info.address}/score", json=body, headers=headers) as r:
        return r.status, await r.text()


def pods(cluster: ClusterInfo, namespace: str) -> list[dict[str, Any]]:
    return cluster.kubectl_json("-n", namespace, "get", "pods")["items"]


# ------------------------------------------------------------------------------------------------ real pods
def test_a_cpu_version_is_ready_on_the_real_node_answers_only_with_its_secret_and_scales(
        cluster: ClusterInfo, namespace: str, app_image: str) -> None:
    key = ("echo", "blue")
    spec = version(app_image, resources=ResourceSpec(cpu=0.1, memory_gb=0.5, memory_gb_limit=1))

    async def main() -> None:
        kc = client(cluster, namespace)
        async with kc, Watcher(KubernetesTarget(kc, namespace, manage_deployments=True, graceful_s=2)) as w:
            await w.target.deploy(key, spec, 1)
            (one,) = await w.until(lambda: ready(w, key, 1), "one ready replica")
            assert one.address.startswith("http://10.244.0.") and one.address.endswith(":5001")
            assert len(one.secret) >= 32
            (pod,) = pods(cluster, namespace)
            assert pod["spec"]["nodeName"] == cluster.real_node
            assert one.id == f"{pod['metadata']['name']}.{pod['metadata']['uid'][:8]}"
            async with aiohttp.ClientSession() as s, s.get(f"{one.address}/healthz") as r:
                assert r.status == 200
            assert await score(one, {"a": 1}, one.secret) == (200, json.dumps({"echo": {"a": 1}}))
            status, _ = await score(one, {"a": 1}, None)
            assert status == 403
            status, _ = await score(one, {"a": 1}, "not-" + one.secret)
            assert status == 403
            stored = json.loads(cluster.kubectl("-n", namespace, "get", "secret", "echo-blue-replica",
                                                "-o", "json").stdout)
            assert base64.b64decode(stored["data"]["secret"]).decode() == one.secret

            await w.target.scale(key, 2)
            two = await w.until(lambda: ready(w, key, 2), "two ready replicas")
            assert w.target.wanted(key) == 2
            assert len({i.address for i in two}) == 2 and {i.secret for i in two} == {one.secret}

            victim = two[1]
            await w.target.remove_replica(key, victim.id)  # as the router does after draining it
            assert w.target.wanted(key) == 1
            left = await w.until(lambda: (r := ready(w, key, 1)) and r[0].id != victim.id and r,
                                 "the drained replica gone, one left")
            assert left[0].id == two[0].id  # the other one kept serving
            assert any(i.id == victim.id and i.phase == STOPPING for i in w.seen)
            dep = cluster.kubectl_json("-n", namespace, "get", "deployment", deployment_name(*key))
            assert dep["spec"]["replicas"] == 1
    run(main())


def test_a_deleted_pod_goes_stopping_then_away_and_a_new_one_takes_its_place(
        cluster: ClusterInfo, namespace: str, app_image: str) -> None:
    key = ("echo", "green")
    spec = version(app_image, name="green", resources=ResourceSpec(cpu=0.1, memory_gb=0.5))

    async def main() -> None:
        kc = client(cluster, namespace)
        async with kc, Watcher(KubernetesTarget(kc, namespace, manage_deployments=True, graceful_s=2)) as w:
            await w.target.deploy(key, spec, 1)
            (old,) = await w.until(lambda: ready(w, key, 1), "one ready replica")
            cluster.kubectl("-n", namespace, "delete", "pod", old.id.rsplit(".", 1)[0], "--wait=false")
            await w.until(lambda: any(i.id == old.id and i.phase == STOPPING and not i.ready
                                      for i in w.target.replicas(key)), "the deleted pod stopping")
            (new,) = await w.until(lambda: (r := ready(w, key, 1)) and r[0].id != old.id and r,
                                   "a replacement ready and the old pod gone")
            assert new.address != "" and new.secret == old.secret
            assert old.id not in {i.id for i in w.target.replicas(key)}
            assert w.target.wanted(key) == 1
    run(main())


def test_an_init_that_raises_is_crashed_with_exit_code_3(cluster: ClusterInfo, namespace: str,
                                                         app_image: str) -> None:
    key = ("echo", "broken")
    spec = replace(version(app_image, name="broken", resources=ResourceSpec(cpu=0.1, memory_gb=0.5)),
                   entry_script="/var/azureml-app/broken.py")

    async def main() -> None:
        kc = client(cluster, namespace)
        async with kc, Watcher(KubernetesTarget(kc, namespace, manage_deployments=True, graceful_s=2)) as w:
            await w.target.deploy(key, spec, 1)
            crashed = await w.until(lambda: [i for i in w.target.replicas(key) if i.phase == CRASHED
                                             and "exited with code 3 (init() failed)" in i.reason],
                                    "the replica crashed with init()'s exit code")
            assert crashed[0].reason.startswith(("exited with code 3", "CrashLoopBackOff: exited with code 3"))
            # the termination message (FallbackToLogsOnError: the log's tail) names init()'s error
            assert "no model here" in crashed[0].reason
            assert not any(i.ready for i in w.seen if i.key == key)
    run(main())


# ------------------------------------------------------------------------------------------------ fake pools
def test_a_gpu_type_lands_on_a_gpu_node_rolls_with_max_surge_0_and_keeps_its_secret(
        cluster: ClusterInfo, namespace: str) -> None:
    key = ("vision", "gpu")
    spec = version("127.0.0.1:5000/never-pulled:1", name="gpu", gpu_cores=1, instance_type="gpu-one")
    types = {"gpu-one": GPU_TYPE}

    async def main() -> None:
        kc = client(cluster, namespace)
        target = KubernetesTarget(kc, namespace, manage_deployments=True,
                                  instance_type_for=lambda k, s: resolve(s, types))
        async with kc, Watcher(target) as w:
            await w.target.deploy(key, spec, 1)
            (first,) = await w.until(lambda: ready(w, key, 1), "the gpu replica ready")
            (pod,) = pods(cluster, namespace)
            assert pod["spec"]["nodeName"] in ("gpu-0", "gpu-1")
            assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
            assert "--device" in pod["spec"]["containers"][0]["command"]
            assert pod["spec"]["containers"][0]["command"][-1] == "cuda"
            dep = cluster.kubectl_json("-n", namespace, "get", "deployment", deployment_name(*key))
            assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
            assert dep["metadata"]["annotations"][ANNOTATION_ROLLOUT] == "maxSurge=0,maxUnavailable=1"

            # a new template: from the moment deploy returns the old pod is never reported current (it is
            # outdated, or already gone: the fake kubelet finishes a delete at once, and the rollout's watch
            # events may come before the apply's answer), and it goes before the new one is created
            await w.target.deploy(key, replace(spec, environment={"MODEL": "v2"}), 1)
            assert all(i.outdated for i in w.target.replicas(key) if i.id == first.id)
            (second,) = await w.until(lambda: ready(w, key, 1), "the new template's replica ready")
            assert second.id != first.id and second.secret == first.secret
            first_gone = next(n for n, i in enumerate(w.seen) if i.id == first.id and i.phase == STOPPING)
            second_seen = next(n for n, i in enumerate(w.seen) if i.id == second.id)
            assert first_gone < second_seen  # maxSurge 0: no second GPU pod while the first still holds its GPU
    run(main())


def _router_client(cluster: ClusterInfo, namespace: str, tmp_path: Path) -> KubeClient:
    """A client with the token of a ServiceAccount bound to the router's least-privilege Role."""
    docs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "router"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "router"},
         "rules": ROUTER_RULES},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "router"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "router"},
         "subjects": [{"kind": "ServiceAccount", "name": "router", "namespace": namespace}]},
    ]
    for d in docs:
        cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(d))

    def token() -> str | None:
        sa = cluster.kubectl_json("-n", namespace, "get", "serviceaccount", "router")
        names = [s["name"] for s in sa.get("secrets") or []]
        if not names:
            return None
        s = cluster.kubectl_json("-n", namespace, "get", "secret", names[0])
        raw = (s.get("data") or {}).get("token")
        return base64.b64decode(raw).decode() if raw else None

    async def wait_token() -> str:
        for _ in range(120):
            t = token()
            if t:
                return t
            await asyncio.sleep(0.5)
        raise AssertionError("the router ServiceAccount got no token")
    tok = asyncio.run(wait_token())
    admin = json.loads(cluster.kubectl("config", "view", "--raw", "-o", "json").stdout)
    cl = admin["clusters"][0]["cluster"]
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "router",
                  "clusters": [{"name": "c", "cluster": cl}],
                  "users": [{"name": "router", "user": {"token": tok}}],
                  "contexts": [{"name": "router", "context": {"cluster": "c", "user": "router",
                                                              "namespace": namespace}}]}
    path = tmp_path / "router.kubeconfig"
    path.write_text(json.dumps(kubeconfig))
    return KubeClient.from_kubeconfig(str(path), namespace=namespace)


def test_the_routers_least_privilege_mode_creates_nothing_and_scales_what_the_deployer_made(
        cluster: ClusterInfo, namespace: str, tmp_path: Path) -> None:
    key = ("lean", "blue")
    spec = version("127.0.0.1:5000/never-pulled:1", instance_type="fake-pool")
    instance_type_for: Callable[[Any, Any], InstanceType] = lambda k, s: FAKE_POOL  # noqa: E731
    rc = _router_client(cluster, namespace, tmp_path)

    async def main() -> None:
        admin = client(cluster, namespace)
        async with admin, rc, Watcher(KubernetesTarget(rc, namespace, manage_deployments=False)) as w:
            with pytest.raises(ForbiddenError):  # the Role really is that narrow
                await rc.create(replica_secret_manifest("x-replica", namespace, None, "v"))
            await w.target.deploy(key, spec, 2)
            assert w.target.wanted(key) == 2 and w.target.replicas(key) == []
            assert cluster.kubectl_json("-n", namespace, "get", "deployments")["items"] == []

            # the deployer (a managing target with admin rights) creates the version with one replica...
            deployer = KubernetesTarget(admin, namespace, manage_deployments=True, instance_type_for=instance_type_for)
            await deployer.start(lambda k: None)
            try:
                await deployer.deploy(key, spec, 1)
            finally:
                await deployer.stop()
            # ...and the router, wanting two, scales it: two replicas, with the credential read from the Secret
            two = await w.until(lambda: ready(w, key, 2), "two replicas through the router's scale")
            secret = json.loads(cluster.kubectl("-n", namespace, "get", "secret", "lean-blue-replica", "-o",
                                                "json").stdout)
            assert {i.secret for i in two} == {base64.b64decode(secret["data"]["secret"]).decode()}
            await w.target.scale(key, 3)
            await w.until(lambda: ready(w, key, 3), "three replicas")
            await w.target.remove_replica(key, two[0].id)  # no pod delete right: only the count goes down
            await w.until(lambda: ready(w, key, 2), "two replicas after remove_replica")
            assert cluster.kubectl_json("-n", namespace, "get", "deployment", "lean-blue")["spec"]["replicas"] == 2
            await w.target.delete(key)  # forgets it; the Deployment stays (it is the deployer's)
            known = w.target.keys()
            assert key not in known
            assert cluster.kubectl_json("-n", namespace, "get", "deployment", "lean-blue")["spec"]["replicas"] == 2
    run(main())


class FlakyClient(KubeClient):
    """The real client whose first pod watch starts from a resourceVersion the server no longer keeps (a real
    410 Gone) and whose first Deployment watch breaks before it starts."""

    def __init__(self, *a: Any, **kw: Any):
        super().__init__(*a, **kw)
        self.broken = {"Pod": "gone", "Deployment": "unreachable"}

    async def watch(self, api_version: str, kind: str, namespace: str | None = None,
                    label_selector: Any = None, resource_version: str | None = None,
                    field_selector: str | None = None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        mode = self.broken.pop(kind, None)
        if mode == "unreachable":
            raise UnreachableError("test: the connection broke")
        async for ev in super().watch(api_version, kind, namespace, label_selector,
                                      "1" if mode == "gone" else resource_version, field_selector):
            yield ev


def test_watch_failures_and_410_gone_are_survived(cluster: ClusterInfo, namespace: str) -> None:
    key = ("lean", "gone")
    spec = version("127.0.0.1:5000/never-pulled:1", name="gone")

    async def main() -> None:
        kc = FlakyClient.from_kubeconfig(str(cluster.kubeconfig), namespace=namespace)
        assert isinstance(kc, FlakyClient)
        async with kc, Watcher(KubernetesTarget(kc, namespace, manage_deployments=True, max_backoff_s=1,
                                                instance_type_for=lambda k, s: FAKE_POOL)) as w:
            await w.target.deploy(key, spec, 2)
            await w.until(lambda: ready(w, key, 2), "two replicas seen through the re-listed watches")
            assert kc.broken == {}  # both failures really happened
            await w.target.scale(key, 1)
            await w.until(lambda: ready(w, key, 1), "the scale-down seen")
    run(main())


def test_a_restarted_router_takes_the_count_it_finds(cluster: ClusterInfo, namespace: str) -> None:
    key = ("lean", "red")
    spec = version("127.0.0.1:5000/never-pulled:1", name="red")

    async def main() -> None:
        kc = client(cluster, namespace)
        async with kc:
            first = KubernetesTarget(kc, namespace, manage_deployments=True, instance_type_for=lambda k, s: FAKE_POOL)
            async with Watcher(first) as w:
                await first.deploy(key, spec, 3)
                await w.until(lambda: ready(w, key, 3), "three replicas")
            second = KubernetesTarget(kc, namespace, manage_deployments=True, instance_type_for=lambda k, s: FAKE_POOL)
            async with Watcher(second):
                known = second.keys()
                assert second.wanted(key) == 3 and key not in known
                assert len(second.replicas(key)) == 3
    run(main())


# ------------------------------------------------------------------------------------------------ dry run
def test_the_fit_check_on_the_clusters_own_nodes(cluster: ClusterInfo) -> None:
    nodes = cluster.kubectl_json("get", "nodes")["items"]
    assert check_fits(GPU_TYPE, nodes)["metadata"]["name"] in ("gpu-0", "gpu-1")
    three = parse_instance_type({"metadata": {"name": "gpu-three"}, "spec": {
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"},
                      "limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": 3}},
        "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}})
    with pytest.raises(InstanceTypeTooLarge) as e:
        check_fits(three, nodes)
    assert e.value.to_azure()["Code"] == 9
    assert "gpu-0" in str(e.value) or "gpu-1" in str(e.value)
    assert "nvidia.com/gpu 3 > 1" in str(e.value)



@pytest.mark.parametrize("kind", ["cpu", "gpu", "fpga", "adhoc-gpu"])
def test_the_api_server_accepts_the_manifests(cluster: ClusterInfo, namespace: str, kind: str) -> None:
    fpga = parse_instance_type({"metadata": {"name": "fpga"}, "spec": {
        "nodeSelector": {"openscore.io/pool": "fpga"},
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"},
                      "limits": {"cpu": "2", "memory": "2Gi", "xilinx.com/fpga-u250": 1}},
        "tolerations": [{"key": "sku", "operator": "Equal", "value": "fpga", "effect": "NoSchedule"}]}},
        fpga_resource="xilinx.com/fpga-u250")
    spec = version("127.0.0.1:5000/app:1", gpu_cores=1 if kind == "adhoc-gpu" else None)
    it = {"cpu": resolve(spec), "gpu": GPU_TYPE, "fpga": fpga, "adhoc-gpu": resolve(spec)}[kind]
    owner = {"apiVersion": "openscore.io/v1", "kind": "ScoringService", "name": "echo",
             "uid": "0b6f4d9e-8f5e-4a0e-9d1c-3c2f5c7f6a11", "controller": True, "blockOwnerDeletion": True}
    dep = deployment_manifest(pod_plan(spec, service="echo"), it, namespace=namespace, image=spec.image or "",
                              owner=owner, replica_secret_name="echo-blue-replica", replicas=2)
    secret = replica_secret_manifest("echo-blue-replica", namespace, owner, "value", service="echo", version="blue")
    for obj in (secret, dep):
        out = cluster.kubectl("-n", namespace, "apply", "--server-side", "--field-manager=openscore-deployer",
                              "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(obj))
        stored = json.loads(out.stdout)
        assert stored["metadata"]["name"] == obj["metadata"]["name"]
    stored_dep = json.loads(out.stdout)
    c = stored_dep["spec"]["template"]["spec"]["containers"][0]
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 600
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert cluster.kubectl_json("-n", namespace, "get", "deployments")["items"] == []  # a dry run stores nothing
