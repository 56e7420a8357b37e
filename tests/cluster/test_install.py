"""`openscore compute attach` and `openscore cluster install/uninstall` against the real API server: install
is complete and idempotent, the router's Role is least privilege (the API server's own access review, as
the router's ServiceAccount), and uninstall leaves nothing of openscore in the namespace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from openscore.kube import crd
from openscore.kube.install import ROUTER_NAME

CLI = [sys.executable, "-m", "openscore.deployer.compute_cli"]
KINDS = "deployments,replicasets,pods,services,serviceaccounts,roles,rolebindings,networkpolicies"


def _cli(ws: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args, "-w", str(ws)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc
    return proc


@pytest.fixture
def compute(cluster, namespace, tmp_path) -> Path:
    """A workspace with compute `myaks` attached to the cluster, its namespace the test's own."""
    ws = tmp_path / "ws"
    proc = _cli(ws, "compute", "attach", "-n", "myaks", "--kubeconfig", str(cluster.kubeconfig),
                "--namespace", namespace, "--registry", cluster.registry or "127.0.0.1:5000")
    assert "Kubernetes v1.20" in proc.stderr
    shown = json.loads(_cli(ws, "compute", "show", "-n", "myaks").stdout)
    assert shown["namespace"] == namespace and shown["serverVersion"].startswith("v1.20")
    return ws


def _ours(cluster, namespace: str) -> list[str]:
    got = cluster.kubectl_json("get", KINDS, "-n", namespace, "-l", f"{crd.LABEL_MANAGED}={crd.MANAGED_BY}")
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in got["items"])


def test_install_is_complete_and_idempotent_and_uninstall_leaves_nothing(cluster, namespace, compute):
    first = _cli(compute, "cluster", "install", "-n", "myaks", "--router-image", "127.0.0.1:5000/openscore:cpu")
    for kind in ("ServiceAccount", "Role", "RoleBinding", "Deployment", "Service", "NetworkPolicy"):
        assert f" {kind} {namespace}/" in first.stdout, first.stdout
    assert {"Deployment/openscore-router", "Service/openscore-router", "ServiceAccount/openscore-router",
            "Role/openscore-router", "RoleBinding/openscore-router",
            "NetworkPolicy/openscore-replicas-from-router"} <= set(_ours(cluster, namespace))
    # the router's admin key and the token signing key: its Role may not create Secrets, so install makes them
    assert f"created Secret {namespace}/{crd.ADMIN_SECRET}" in first.stdout, first.stdout
    assert f"created Secret {namespace}/{crd.SIGNING_KEYS_SECRET}" in first.stdout, first.stdout
    admin_key = cluster.kubectl_json("get", "secret", crd.ADMIN_SECRET, "-n", namespace)["data"][crd.ADMIN_SECRET_KEY]
    dep = cluster.kubectl_json("get", "deployment", ROUTER_NAME, "-n", namespace)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["openscore", "router", "--kubernetes", "--namespace", namespace,
                                    "--host", "0.0.0.0", "--port", "8080"]  # the pod's address, for the Service
    assert dep["spec"]["template"]["spec"]["enableServiceLinks"] is False  # no OPENSCORE_ROUTER_PORT=tcp://...
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == ROUTER_NAME
    svc = cluster.kubectl_json("get", "service", ROUTER_NAME, "-n", namespace)
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["ports"][0]["port"] == 80
    assert svc["spec"]["ports"][0]["targetPort"] == 8080
    cluster.kubectl("get", "crd", crd.CRD_NAME)

    versions = {o: cluster.kubectl_json("get", o, "-n", namespace)["metadata"]["resourceVersion"]
                for o in ("deployment/openscore-router", "service/openscore-router", "role/openscore-router")}
    again = _cli(compute, "cluster", "install", "-n", "myaks", "--router-image", "127.0.0.1:5000/openscore:cpu")
    assert "nothing to change" in again.stdout, again.stdout
    # a second install never replaces the admin key (every admin client would stop working)
    assert cluster.kubectl_json("get", "secret", crd.ADMIN_SECRET, "-n", namespace)["data"][crd.ADMIN_SECRET_KEY] \
        == admin_key
    assert versions == {o: cluster.kubectl_json("get", o, "-n", namespace)["metadata"]["resourceVersion"]
                        for o in versions}

    # an object edited by hand is put back by the next install
    cluster.kubectl("scale", "deployment", ROUTER_NAME, "-n", namespace, "--replicas=3")
    fixed = _cli(compute, "cluster", "install", "-n", "myaks", "--router-image", "127.0.0.1:5000/openscore:cpu")
    assert f"updated Deployment {namespace}/{ROUTER_NAME}" in fixed.stdout
    assert cluster.kubectl_json("get", "deployment", ROUTER_NAME, "-n", namespace)["spec"]["replicas"] == 1

    # --keep-crd: the shared test cluster's other tests use the CRD
    gone = _cli(compute, "cluster", "uninstall", "-n", "myaks", "--keep-crd")
    for kind in ("NetworkPolicy", "Service", "Deployment", "RoleBinding", "Role", "ServiceAccount", "Namespace"):
        assert f"deleted {kind} " in gone.stdout, gone.stdout
    assert f"deleted Secret {namespace}/{crd.ADMIN_SECRET}" in gone.stdout, gone.stdout
    left = [o for o in _ours(cluster, namespace) if not o.startswith(("Pod/", "ReplicaSet/"))]
    assert left == []  # pods and replica sets go with the Deployment (the garbage collector) and the namespace
    ns = cluster.kubectl("get", "namespace", namespace, "-o", "json", check=False)
    assert ns.returncode != 0 or json.loads(ns.stdout)["metadata"].get("deletionTimestamp")
    cluster.kubectl("get", "crd", crd.CRD_NAME)
    assert "nothing to remove" in _cli(compute, "cluster", "uninstall", "-n", "myaks", "--keep-crd").stdout


def _can(cluster, namespace: str, verb: str, resource: str, where: str | None = None) -> bool:
    resource, _, sub = resource.partition("/")
    proc = cluster.kubectl("auth", "can-i", verb, resource, *([f"--subresource={sub}"] if sub else []),
                           "-n", where or namespace,
                           f"--as=system:serviceaccount:{namespace}:{ROUTER_NAME}", check=False)
    assert proc.stdout.strip() in ("yes", "no"), proc
    return proc.stdout.strip() == "yes"


def test_the_router_role_reads_and_scales_but_creates_and_deletes_nothing(cluster, namespace, compute):
    _cli(compute, "cluster", "install", "-n", "myaks", "--router-image", "127.0.0.1:5000/openscore:cpu")
    try:
        for verb, resource in (("watch", "scoringservices.openscore.io"),
                               ("patch", "scoringservices.openscore.io/status"), ("get", "secrets"),
                               ("list", "pods"), ("watch", "endpoints"),
                               ("list", "deployments.apps"), ("patch", "deployments.apps/scale"),
                               ("create", "leases.coordination.k8s.io"), ("update", "leases.coordination.k8s.io")):
            assert _can(cluster, namespace, verb, resource), (verb, resource)
        for verb, resource in (("create", "deployments.apps"), ("delete", "deployments.apps"),
                               ("patch", "deployments.apps"), ("create", "pods"), ("delete", "pods"),
                               ("create", "secrets"), ("create", "scoringservices.openscore.io"),
                               ("delete", "scoringservices.openscore.io"), ("patch", "scoringservices.openscore.io"),
                               ("create", "roles.rbac.authorization.k8s.io"), ("get", "configmaps")):
            assert not _can(cluster, namespace, verb, resource), (verb, resource)
        assert not _can(cluster, namespace, "list", "pods", where="default")  # a Role, not a ClusterRole
        assert not _can(cluster, namespace, "create", "leases.coordination.k8s.io", where="kube-system")
    finally:
        _cli(compute, "cluster", "uninstall", "-n", "myaks", "--keep-crd")
