"""KubeClient against the real API server: server-side apply is idempotent, the API server's refusals arrive as
the KubeError family with its message, a watch resumes when the server ends it and says Gone when its
revision is too old, the scale subresource, and close() leaves no task and no connection."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from openscore.kube.client import (
    ConflictError,
    ForbiddenError,
    KubeClient,
    KubeError,
    NotFoundError,
    UnreachableError,
)
from tests.cluster.conftest import ClusterInfo


@pytest.fixture
def kubeconfig(cluster: ClusterInfo) -> str:
    return str(cluster.kubeconfig)


def cm(namespace: str, name: str = "cm", **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": data}


def socket_fds() -> set[str]:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


def test_apply_is_idempotent_and_a_change_is_one(kubeconfig, namespace):
    async def main():
        async with KubeClient.from_kubeconfig(kubeconfig, namespace=namespace) as c:
            assert (await c.server_version()).startswith("v1.20")
            first = await c.apply(cm(namespace, a="1"))
            again = await c.apply(cm(namespace, a="1"))
            assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
            changed = await c.apply(cm(namespace, a="2"))
            assert changed["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]
            assert changed["data"] == {"a": "2"} and changed["kind"] == "ConfigMap"
            items, rv = await c.list("v1", "ConfigMap", namespace, {"app": "none"})
            assert items == [] and rv
            items, _ = await c.list("v1", "ConfigMap", namespace)
            assert "cm" in {i["metadata"]["name"] for i in items} and all(i["kind"] == "ConfigMap" for i in items)
    asyncio.run(main())


def test_the_api_servers_refusals_are_kube_errors(kubeconfig, namespace):
    async def main():
        async with KubeClient.from_kubeconfig(kubeconfig, namespace=namespace) as c:
            assert await c.get("v1", "ConfigMap", "missing") is None
            with pytest.raises(NotFoundError) as nf:
                await c.patch("v1", "ConfigMap", "missing", {"data": {"a": "1"}}, namespace)
            assert nf.value.status == 404 and '"missing" not found' in nf.value.message
            created = await c.create(cm(namespace, a="1"))
            with pytest.raises(ConflictError) as exists:
                await c.create(cm(namespace, a="1"))
            assert exists.value.status == 409 and exists.value.reason == "AlreadyExists"
            await c.replace(created)  # at its revision: fine
            stale = dict(created, data={"a": "3"})  # created's revision is no longer the object's
            await c.patch("v1", "ConfigMap", "cm", {"data": {"a": "2"}}, namespace)
            with pytest.raises(ConflictError) as changed:
                await c.replace(stale)
            assert "modified" in changed.value.message
            with pytest.raises(ConflictError):  # a delete's precondition
                await c.delete("v1", "ConfigMap", "cm", namespace,
                               resource_version=created["metadata"]["resourceVersion"])
            assert await c.delete("v1", "ConfigMap", "cm", namespace) is True
            assert await c.delete("v1", "ConfigMap", "cm", namespace) is False
            with pytest.raises(KubeError, match="unknown kind"):
                await c.get("example.com/v1", "Nothing", "x")
            with pytest.raises(NotFoundError):
                await c.pod_logs("no-such-pod", namespace)
    asyncio.run(main())


def token_kubeconfig(kubeconfig: str, namespace: str, tmp_path: Path) -> Path:
    """A kubeconfig for a ServiceAccount that was granted nothing (its token, the cluster's CA)."""
    kc = ["kubectl", f"--kubeconfig={kubeconfig}", "-n", namespace]
    subprocess.run([*kc, "create", "serviceaccount", "nobody"], check=True, capture_output=True)
    deadline = time.monotonic() + 60  # the token controller's pace
    while True:
        out = subprocess.run([*kc, "get", "serviceaccount", "nobody", "-o", "jsonpath={.secrets[0].name}"],
                             capture_output=True, text=True, check=True).stdout
        if out:
            break
        assert time.monotonic() < deadline, "no token for the ServiceAccount"
        time.sleep(0.2)
    token = base64.b64decode(subprocess.run([*kc, "get", "secret", out, "-o", "jsonpath={.data.token}"],
                                            capture_output=True, text=True, check=True).stdout).decode()
    conf = yaml.safe_load(Path(kubeconfig).read_text())
    for u in conf["users"]:
        u["user"] = {"token": token}
    path = tmp_path / "nobody.kubeconfig"
    path.write_text(yaml.safe_dump(conf))
    return path


def test_in_cluster_config_no_rights_forbidden_and_no_server_unreachable(kubeconfig, namespace, tmp_path, monkeypatch):
    path = token_kubeconfig(kubeconfig, namespace, tmp_path)
    # the same ServiceAccount as a pod sees it: its token Secret's files, the service's address in the env
    account = tmp_path / "serviceaccount"
    account.mkdir()
    kc = ["kubectl", f"--kubeconfig={kubeconfig}", "-n", namespace]
    name = subprocess.run([*kc, "get", "serviceaccount", "nobody", "-o", "jsonpath={.secrets[0].name}"],
                          capture_output=True, text=True, check=True).stdout
    data = json.loads(subprocess.run([*kc, "get", "secret", name, "-o", "jsonpath={.data}"],
                                     capture_output=True, text=True, check=True).stdout)
    for key in ("token", "ca.crt", "namespace"):
        (account / key).write_bytes(base64.b64decode(data[key]))
    server = yaml.safe_load(path.read_text())["clusters"][0]["cluster"]["server"]
    host, port = server.removeprefix("https://").rsplit(":", 1)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)

    async def main():
        async with KubeClient.from_kubeconfig(str(path), namespace=namespace) as c:
            with pytest.raises(ForbiddenError) as e:
                await c.list("v1", "Secret", namespace)
            assert e.value.status == 403 and f"system:serviceaccount:{namespace}:nobody" in e.value.message
            with pytest.raises(ForbiddenError):
                await c.apply(cm(namespace, a="1"))
        async with KubeClient.in_cluster(service_account_dir=str(account)) as c:
            assert c.namespace == namespace
            assert (await c.server_version()).startswith("v1.20")  # anyone may read the version
            with pytest.raises(ForbiddenError, match=f"system:serviceaccount:{namespace}:nobody"):
                await c.get("v1", "Secret", name)
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
        with pytest.raises(KubeError, match="KUBERNETES_SERVICE_HOST"):
            KubeClient.in_cluster(service_account_dir=str(account))
        with pytest.raises(KubeError, match="no service account"):
            KubeClient.in_cluster(service_account_dir=str(tmp_path / "none"))
        conf = yaml.safe_load(path.read_text())
        conf["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
        nowhere = tmp_path / "nowhere.kubeconfig"
        nowhere.write_text(yaml.safe_dump(conf))
        async with KubeClient.from_kubeconfig(str(nowhere)) as c:
            with pytest.raises(UnreachableError):
                await c.get("v1", "ConfigMap", "x", namespace)
    asyncio.run(main())


def test_a_watch_resumes_after_the_server_ends_it(kubeconfig, namespace):
    # (410 Gone for a too-old revision is not asked of the server here: a fresh API server's watch cache can
    # still reach back to its first revisions. tests/cluster/test_target.py gets a real one for pods, and
    # tests/kube/test_client_unit.py maps the status.)
    async def main():
        async with KubeClient.from_kubeconfig(kubeconfig, namespace=namespace) as c:
            c.watch_server_timeout_s = 1  # the server ends each watch after a second
            _, rv = await c.list("v1", "ConfigMap", namespace)
            events = c.watch("v1", "ConfigMap", namespace, resource_version=rv)
            await c.apply(cm(namespace, a="1"))
            seen = [await asyncio.wait_for(events.__anext__(), 10)]
            await asyncio.sleep(2.5)  # two server-side ends later
            await c.apply(cm(namespace, a="2"))
            await c.delete("v1", "ConfigMap", "cm", namespace)
            seen += [await asyncio.wait_for(events.__anext__(), 10) for _ in range(2)]
            await events.aclose()
            assert [(t, o.get("data")) for t, o in seen] == [("ADDED", {"a": "1"}), ("MODIFIED", {"a": "2"}),
                                                           ("DELETED", {"a": "2"})]
    asyncio.run(main())


def test_scale_through_the_subresource(kubeconfig, namespace):
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": namespace},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "d"}}, "template": {
            "metadata": {"labels": {"app": "d"}},
            "spec": {"nodeSelector": {"openscore.io/pool": "none"},  # never scheduled: nothing runs
                     "containers": [{"name": "c", "image": "127.0.0.1:5000/none:0"}]}}}}

    async def main():
        async with KubeClient.from_kubeconfig(kubeconfig, namespace=namespace) as c:
            await c.apply(deployment)
            scaled = await c.scale("Deployment", name="d", namespace=namespace, replicas=2)
            assert scaled["kind"] == "Scale" and scaled["spec"]["replicas"] == 2
            assert (await c.get_scale(name="d", namespace=namespace))["spec"]["replicas"] == 2
            got = await c.get("apps/v1", "Deployment", "d", namespace)
            assert got is not None and got["spec"]["replicas"] == 2
            with pytest.raises(KubeError, match="replicas"):
                await c.scale(name="d", namespace=namespace, replicas=-1)
            with pytest.raises(NotFoundError):
                await c.scale(name="missing", namespace=namespace, replicas=1)
            # the scheduler's reason reaches events_for verbatim
            deadline = time.monotonic() + 60  # the scheduler's pace, not a threshold under test
            pods: list = []
            while not pods:
                pods, _ = await c.list("v1", "Pod", namespace, {"app": "d"})
                await asyncio.sleep(0.2)
            while True:
                events = await c.events_for(namespace, "Pod", pods[0]["metadata"]["name"])
                failed = [e for e in events if e.get("reason") == "FailedScheduling"]
                if failed:
                    break
                assert time.monotonic() < deadline, f"no FailedScheduling event: {events}"
                await asyncio.sleep(0.3)
            assert "node(s) didn't match" in failed[0]["message"]
    asyncio.run(main())


def test_close_leaves_no_task_and_no_connection(kubeconfig, namespace):
    async def main():
        before = socket_fds()
        c = KubeClient.from_kubeconfig(kubeconfig, namespace=namespace)
        _, rv = await c.list("v1", "ConfigMap", namespace)
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in c.watch("v1", "ConfigMap", namespace, resource_version=rv):
                first.set()
        watcher = asyncio.create_task(consume())
        await c.apply(cm(namespace, a="1"))
        await asyncio.wait_for(first.wait(), 10)
        assert socket_fds() - before  # connected
        await c.close()
        await asyncio.wait_for(watcher, 10)  # the watch ended with the client, without an error
        assert watcher.exception() is None
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert not socket_fds() - before, "a connection outlived close()"
        with pytest.raises(RuntimeError, match="closed"):
            await c.get("v1", "ConfigMap", "x", namespace)
    asyncio.run(main())
