"""Pure parts of the cluster deploy: the replica count an apply gives, and the in-image paths."""

from __future__ import annotations

from pathlib import Path

from openscore.deployer.cluster_deploy import cluster_keys, replica_count
from openscore.deployer.packaging import Package
from openscore.router.config import AutoscaleSpec, VersionSpec


def _spec(**kw) -> VersionSpec:
    return VersionSpec(name="v", entry_script="/var/azureml-app/score.py", app_root="/var/azureml-app", **kw)


def test_a_fixed_count_is_applied_and_an_autoscaled_version_keeps_its_current_count_within_bounds():
    assert replica_count(_spec(num_replicas=2), 5) == 2
    scaled = _spec(autoscale=AutoscaleSpec(min_replicas=1, max_replicas=4))
    assert replica_count(scaled, None) == 1
    assert replica_count(scaled, 3) == 3
    assert replica_count(scaled, 9) == 4


def test_the_router_document_names_the_image_paths_not_the_hosts(tmp_path: Path):
    root = tmp_path / "deployments" / "svc" / "d1"
    pkg = Package("d1", root, root / "src" / "score.py", "azureml-models/m/1", {"A": "1"})
    assert cluster_keys(pkg, "r/openscore-app@sha256:ab") == {
        "entryScript": "/var/azureml-app/src/score.py", "sourceDirectory": "/var/azureml-app",
        "environmentVariables": {"A": "1"}, "image": "r/openscore-app@sha256:ab",
        "replicaArgs": ["--model-dir", "azureml-models/m/1"]}
