"""What needs no cluster: the API server's status codes become the right KubeError, kinds resolve to their
REST paths (built-ins from lightkube, our CRD registered), bad input is refused before any request, and the
CRD manifest and owner references are what the API server and the garbage collector need."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from openscore.kube import crd
from openscore.kube.client import (
    ConflictError,
    ForbiddenError,
    GoneError,
    KubeClient,
    KubeError,
    NotFoundError,
    _error_for,
    _kind,
    _selector,
)


@pytest.mark.parametrize(("status", "cls"), [(404, NotFoundError), (409, ConflictError), (410, GoneError),
                                             (403, ForbiddenError), (422, KubeError), (500, KubeError)])
def test_status_codes_map_to_their_errors(status, cls):
    e = _error_for(status, "Reason", "the server's words")
    assert type(e) is cls and e.status == status and e.message == "the server's words"
    assert str(e) == f"{status} Reason: the server's words"


def test_kinds_resolve_to_their_paths():
    assert _kind("apps/v1", "Deployment").main._api_info.plural == "deployments"
    assert _kind("v1", "Namespace").namespaced is False
    assert _kind("v1", "Secret").namespaced is True
    sub = _kind(crd.API_VERSION, crd.KIND).sub["scale"]._api_info
    assert (sub.plural, sub.action, sub.parent.group) == (crd.PLURAL, "scale", crd.GROUP)
    with pytest.raises(KubeError, match="unknown kind Nothing"):
        _kind("example.com/v1", "Nothing")


def test_label_selectors():
    assert _selector({"a": "1", "b": "2"}) == "a=1,b=2"
    assert _selector("a in (x,y)") == "a in (x,y)"
    assert _selector(None) is None and _selector({}) is None


def test_bad_input_is_refused_before_a_request(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text("""apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: ns1}}]
current-context: x
""")

    async def main():
        async with KubeClient.from_kubeconfig(str(path)) as c:
            assert c.namespace == "ns1"
            with pytest.raises(KubeError, match=r"apiVersion, kind and metadata\.name"):
                await c.apply({"kind": "ConfigMap", "metadata": {"name": "x"}})
            with pytest.raises(KubeError, match="replicas"):
                await c.scale(name="d", replicas=True)
            with pytest.raises(KubeError, match="subresource"):
                await c.patch("apps/v1", "Deployment", "d", {}, subresource="nope")
    asyncio.run(main())
    with pytest.raises(KubeError, match="missing"):
        KubeClient.from_kubeconfig(str(path), context="missing")
    with pytest.raises(KubeError, match="kubeconfig"):
        KubeClient.from_kubeconfig(str(tmp_path / "none"))


def test_crd_manifest_and_owner_reference():
    m = crd.crd_manifest()
    assert m["metadata"]["name"] == "scoringservices.openscore.io"
    assert m["spec"]["names"]["shortNames"] == ["osvc"] and m["spec"]["scope"] == "Namespaced"
    v = m["spec"]["versions"][0]
    assert v["subresources"] == {"status": {}}
    assert [c["name"] for c in v["additionalPrinterColumns"]] == ["State", "Reason", "Age"]
    spec = v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert all(spec[k]["x-kubernetes-preserve-unknown-fields"] for k in ("config", "previousConfig", "deployment"))
    ref = crd.owner_reference({"metadata": {"name": "s", "uid": "u-1"}})
    assert ref == {"apiVersion": "openscore.io/v1", "kind": "ScoringService", "name": "s", "uid": "u-1",
                   "controller": True, "blockOwnerDeletion": True}
    with pytest.raises(ValueError, match="uid"):
        crd.owner_reference({"metadata": {"name": "s"}})
    assert crd.service_keys_secret("s") == "s-keys" and crd.replica_secret("s-v1") == "s-v1-replica"


def test_a_watch_gone_silent_past_the_servers_end_is_dropped_and_resumed_from_its_last_version(tmp_path):
    """A network cut can leave the watch's TCP pipe half-open: no FIN, no RST, and we only read, so without a
    read deadline the watch (and the router's view of the cluster) would wait on it forever. A scripted API
    server: each watch sends one event, then goes silent without ending the stream."""
    from aiohttp import web

    requests: list[dict[str, str]] = []
    closed: list[int] = []
    stop = asyncio.Event()

    async def watch(request: web.Request) -> web.StreamResponse:
        n = len(requests)
        requests.append(dict(request.query))
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        event = {"type": "ADDED" if n == 0 else "MODIFIED",
                 "object": {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "cm", "namespace": "ns1", "resourceVersion": str(11 + n)}}}
        await resp.write((json.dumps(event) + "\n").encode())
        while not stop.is_set():  # silent, the stream left open, until the client gives up on it
            if request.transport is None or request.transport.is_closing():
                closed.append(n)
                break
            await asyncio.sleep(0.05)
        return resp

    async def main():
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/ns1/configmaps", watch)
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        path = tmp_path / "kubeconfig"
        path.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u, namespace: ns1}}}}]
current-context: x
""")
        try:
            async with KubeClient.from_kubeconfig(str(path)) as c:
                c.watch_server_timeout_s, c.watch_read_margin_s = 1, 0.5
                events = c.watch("v1", "ConfigMap", "ns1", resource_version="10")
                first = await asyncio.wait_for(events.__anext__(), 10)
                second = await asyncio.wait_for(events.__anext__(), 10)  # only after the silent pipe was dropped
                await events.aclose()
            assert (first[0], second[0]) == ("ADDED", "MODIFIED")
            assert [r["resourceVersion"] for r in requests] == ["10", "11"]  # resumed from the last event
            assert requests[0]["timeoutSeconds"] == "1"
            for _ in range(40):  # the silent connection was closed by the client, not left open
                if 0 in closed:
                    break
                await asyncio.sleep(0.05)
            assert 0 in closed
        finally:
            stop.set()
            await runner.cleanup()
    asyncio.run(main())
