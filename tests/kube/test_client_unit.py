"""What needs no cluster: the API server's status codes become the right KubeError, kinds resolve to their
REST paths (built-ins from lightkube, our CRD registered), bad input is refused before any request, and the
CRD manifest and owner references are what the API server and the garbage collector need."""

from __future__ import annotations

import asyncio

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
