"""The store contract bound to the Kubernetes store (ScoringService CRs and Secrets in a real API server),
plus what only it promises: a hand-broken object is refused while the others are served, a watch outlives the
server ending it, two routers' stores see each other's writes, the deployer's spec.deployment is never touched,
410 is `Expired`, and deleting the CR deletes its keys (ownerReference, the controller-manager's GC)."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "router"))
from store_contract import *  # noqa: F403 (the contract's tests run here, bound to this backend)
from store_contract import svc, take

from openscore.kube import crd
from openscore.kube.client import KubeClient
from openscore.kube.object_store import KubernetesObjectStore, KubernetesStateStore
from openscore.router.state import SERVICE, SERVICE_KEYS, SIGNING_KEYS, Conflict, Expired, StateStore
from tests.cluster.conftest import ClusterInfo


def kubeconfig_of(cluster: ClusterInfo) -> str:
    return str(cluster.kubeconfig)


async def wait_established(client: KubeClient) -> None:
    """Apply the CRD and wait until the API server serves it (install.py does this in real use)."""
    await client.apply(crd.crd_manifest())
    for _ in range(300):
        got = await client.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd.CRD_NAME)
        # a CRD just created has `conditions: null` for a moment
        conds = {c["type"]: c["status"] for c in ((got or {}).get("status") or {}).get("conditions") or []}
        if conds.get("Established") == "True":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the CRD {crd.CRD_NAME} never became Established")


@pytest.fixture(scope="session")
def kubeconfig(cluster: ClusterInfo) -> str:
    path = kubeconfig_of(cluster)

    async def install() -> None:
        async with KubeClient.from_kubeconfig(path) as c:
            await wait_established(c)
    asyncio.run(install())
    return path


_guards: list[asyncio.Task[None]] = []


def client_for_this_loop(kubeconfig: str, opened: list[KubeClient], namespace: str | None = None) -> KubeClient:
    """A client closed when the test's event loop ends (asyncio.run cancels the guard task, which closes it),
    so each test's connections end in their own loop."""
    c = KubeClient.from_kubeconfig(kubeconfig, namespace=namespace)
    opened.append(c)

    async def guard() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await c.close()
    _guards.append(asyncio.get_running_loop().create_task(guard()))  # held: a task nobody holds is collected
    return c


@pytest.fixture
def open_store(kubeconfig: str, namespace: str) -> Iterator[Callable[[], Awaitable[StateStore]]]:
    opened: list[KubeClient] = []

    async def open_() -> StateStore:
        return KubernetesStateStore(client_for_this_loop(kubeconfig, opened, namespace), namespace)

    yield open_
    assert all(c._closed for c in opened), "a store's client was left open"


@pytest.fixture
def admin(kubeconfig: str) -> Iterator[Callable[[], KubeClient]]:
    opened: list[KubeClient] = []
    yield lambda: client_for_this_loop(kubeconfig, opened)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_a_hand_broken_object_is_refused_and_the_others_served(open_store, admin, namespace):
    async def main():
        store = await open_store()
        kube = admin()
        await store.put_service("svc-a", svc(1))
        await store.put_service("svc-b", svc(1))
        await store.ensure_signing_key()
        # an operator's hand edits: keys that are not UTF-8, signing keys that are not JSON, a CR without config
        await kube.patch("v1", "Secret", "svc-a-keys", {"data": {"primaryKey": b64(b"\xff\xfe")}}, namespace)
        await kube.patch("v1", "Secret", crd.SIGNING_KEYS_SECRET, {"data": {"keys": b64(b"{not json")}}, namespace)
        await kube.create({"apiVersion": crd.API_VERSION, "kind": crd.KIND,
                           "metadata": {"name": "svc-c", "namespace": namespace}, "spec": {"deployment": {}}})
        state = await store.snapshot()
        assert state.invalid == {(SERVICE_KEYS, "svc-a"), (SIGNING_KEYS, "token"), (SERVICE, "svc-c")}
        assert set(state.services) == {"svc-a", "svc-b"} and set(state.keys) == {"svc-b"}
        listing, _ = await store.objects.list([SERVICE_KEYS])
        broken = next(s for s in listing[SERVICE_KEYS] if s.name == "svc-a")
        assert broken.invalid is not None and "data.primaryKey" in str(broken.invalid)
        assert f"secrets/{namespace}/svc-a-keys" in str(broken.invalid)
        # writing new keys as asked repairs it
        await store.set_key("svc-a", "Primary")
        assert "svc-a" in (await store.snapshot()).keys
    asyncio.run(main())


def test_a_watch_outlives_the_server_ending_it(open_store):
    async def main():
        store = await open_store()
        objects = store.objects
        assert isinstance(objects, KubernetesObjectStore)
        objects.client.watch_server_timeout_s = 1  # the API server ends every watch after a second
        start = await store.snapshot()
        changes = store.watch(start.revision)
        first = await store.put_service("svc-a", svc(1))
        seen = await take(changes, 1)
        await asyncio.sleep(2.5)  # the server has ended (at least) two watches by now
        second = await store.put_service("svc-a", svc(2))
        seen += await take(changes, 1)
        await changes.aclose()
        assert [c.revision for c in seen] == [first.revision, second.revision]
    asyncio.run(main())


def test_two_routers_see_each_others_writes(open_store):
    async def main():
        a, b = await open_store(), await open_store()
        start = await a.snapshot()
        changes = a.watch(start.revision)
        rec = await b.put_service("svc-a", svc(1))
        seen = await take(changes, 1)
        assert seen[0].revision == rec.revision and seen[0].value.config == svc(1)
        got = await a.get_service("svc-a")
        assert got is not None and got.revision == rec.revision
        await a.put_service("svc-a", svc(2), revision=rec.revision)
        with pytest.raises(Conflict):
            await b.put_service("svc-a", svc(3), revision=rec.revision)
        await changes.aclose()
    asyncio.run(main())


def test_the_store_never_touches_spec_deployment(open_store, admin, namespace):
    async def main():
        store = await open_store()
        kube = admin()
        await store.put_service("svc-a", svc(1))
        deployment = {"models": [{"name": "m", "version": 3}], "image": "127.0.0.1:5000/app:1"}
        await kube.patch(crd.API_VERSION, crd.KIND, "svc-a", {"spec": {"deployment": deployment}}, namespace)
        rec = await store.put_service("svc-a", svc(2))
        back = await store.rollback_service("svc-a")
        cr = await kube.get(crd.API_VERSION, crd.KIND, "svc-a", namespace)
        assert cr is not None and cr["spec"]["deployment"] == deployment
        assert cr["spec"]["config"] == svc(1) and back.config == svc(1) and rec.config == svc(2)
        stored = await store.objects.get(SERVICE, "svc-a")
        assert stored is not None and "deployment" not in stored.doc
    asyncio.run(main())


def test_an_old_revision_is_expired(open_store):
    async def main():
        store = await open_store()
        await store.put_service("svc-a", svc(1))
        with pytest.raises(Expired):
            await take(store.watch("2.2"), 1)
    asyncio.run(main())


def test_deleting_the_cr_deletes_its_keys(open_store, admin, namespace):
    async def main():
        store = await open_store()
        kube = admin()
        await store.put_service("svc-a", svc(1))
        keys = await kube.get("v1", "Secret", "svc-a-keys", namespace)
        assert keys is not None and keys["metadata"]["ownerReferences"][0]["kind"] == crd.KIND
        assert await kube.delete(crd.API_VERSION, crd.KIND, "svc-a", namespace)
        deadline = time.monotonic() + 60  # the garbage collector's pace, not a threshold under test
        while await kube.get("v1", "Secret", "svc-a-keys", namespace) is not None:
            assert time.monotonic() < deadline, "the keys Secret outlived its ScoringService"
            await asyncio.sleep(0.2)
        assert await store.get_keys("svc-a") is None
    asyncio.run(main())


def test_secrets_hold_the_documents_kubernetes_style(open_store, admin, namespace):
    async def main():
        store = await open_store()
        kube = admin()
        await store.put_service("svc-a", svc(1, keys={"primaryKey": "primary-0001", "secondaryKey": "second-0001"}))
        signing = await store.ensure_signing_key()
        keys = await kube.get("v1", "Secret", "svc-a-keys", namespace)
        assert keys is not None and base64.b64decode(keys["data"]["primaryKey"]) == b"primary-0001"
        assert keys["metadata"]["labels"][crd.LABEL_SERVICE] == "svc-a"
        sk = await kube.get("v1", "Secret", crd.SIGNING_KEYS_SECRET, namespace)
        assert sk is not None
        assert json.loads(base64.b64decode(sk["data"]["keys"]))["keys"][0]["kid"] == signing.current.kid
        cr = await kube.get(crd.API_VERSION, crd.KIND, "svc-a", namespace)
        assert cr is not None and "primary-0001" not in json.dumps(cr)
    asyncio.run(main())


def test_a_status_write_is_no_change_to_watchers(open_store, admin, namespace):
    """The status helper writes the CR's status often: the router's watch sees only document changes."""
    async def main():
        store = await open_store()
        kube = admin()
        await store.put_service("svc-a", svc(1))
        start = await store.snapshot()
        changes = store.watch(start.revision)
        await kube.patch(crd.API_VERSION, crd.KIND, "svc-a", {"status": {"state": "Healthy"}}, namespace,
                         subresource="status")
        rec = await store.put_service("svc-a", svc(2))
        seen = await take(changes, 1)
        await changes.aclose()
        assert [(c.revision, c.value.config) for c in seen] == [(rec.revision, svc(2))]
        cr = await kube.get(crd.API_VERSION, crd.KIND, "svc-a", namespace)
        assert cr is not None and cr["status"] == {"state": "Healthy"}  # the store's write kept the status
    asyncio.run(main())


def test_close_ends_every_watch_even_one_left_unread(kubeconfig, namespace):
    async def main():
        async with KubeClient.from_kubeconfig(kubeconfig, namespace=namespace) as client:
            store = KubernetesStateStore(client, namespace)
            start = await store.snapshot()
            read = store.watch(start.revision)
            first = asyncio.create_task(take(read, 1))
            abandoned = store.watch(start.revision)
            pending = asyncio.create_task(abandoned.__anext__())  # its watches run; its reader walks away
            await store.put_service("svc-a", svc(1))
            assert (await first)[0].name == "svc-a"
            await store.close()
            await asyncio.wait_for(asyncio.gather(pending, return_exceptions=True), 10)
            assert not [t for t in asyncio.all_tasks() if t.get_name() == "openscore-kube-watch"]
        assert client._closed
    asyncio.run(main())
