"""Fixtures for tests against a real Kubernetes v1.20 cluster (tests/cluster/clusterkit.py).

`cluster` (session): with OPENSCORE_TEST_CLUSTER=DIR, the cluster already running there (`python -m
tests.cluster.clusterkit up --dir DIR`, e.g. the shared dev cluster /work/devcluster); otherwise one started for
the session (control plane, fake GPU/FPGA nodes, the real node and a registry) and stopped at its end. Without the
binaries it skips, and with OPENSCORE_REQUIRE_CLUSTER_TESTS=1 (.ci/run) a skip is a failure.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.clusterkit import Cluster, ClusterError, missing_tools


@dataclass
class ClusterInfo:
    """What a test needs to reach the cluster; `info` is the whole cluster.json."""

    folder: Path
    kubeconfig: Path
    api_server: str
    registry: str | None
    real_node: str | None
    fake_nodes: list[str]
    info: dict[str, Any] = field(default_factory=dict)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
        """`kubectl --kubeconfig <admin> ARGS` (text output); check=True raises with kubectl's stderr."""
        proc = subprocess.run(["kubectl", f"--kubeconfig={self.kubeconfig}", *args], capture_output=True,
                              text=True, input=input, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)


def _running(folder: Path) -> ClusterInfo:
    if not (folder / "READY").exists():
        raise ClusterError(f"OPENSCORE_TEST_CLUSTER={folder}: no READY file there (is `clusterkit up` running?)")
    info = json.loads((folder / "cluster.json").read_text())
    return ClusterInfo(folder, Path(info["kubeconfig"]), info["api_server"], info.get("registry"),
                       info.get("real_node"), info.get("fake_nodes", []), info)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterInfo]:
    """A running cluster: OPENSCORE_TEST_CLUSTER's, or one of this session's own."""
    shared = os.environ.get("OPENSCORE_TEST_CLUSTER")
    if shared:
        yield _running(Path(shared))
        return
    missing = missing_tools(real_node=True)
    if missing:
        pytest.skip("no test cluster: missing " + ", ".join(missing))
    folder = tmp_path_factory.mktemp("cluster")
    c = Cluster(folder, real_node=True).start()
    try:
        d = c.describe()
        yield ClusterInfo(folder, c.kubeconfig, c.api_server, d["registry"], d["real_node"], d["fake_nodes"], d)
    finally:
        c.stop()
    # the session's cluster is the one test of a full stop: it must leave the machine as it found it
    left = c.leftovers()
    assert not left, f"the test cluster's stop left behind: {left}"


def _namespace_name(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{stem}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(cluster: ClusterInfo, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (without waiting: its objects go in the background)."""
    name = _namespace_name(request.node.name)
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "openscore.io/test=true")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _base_image(cluster: ClusterInfo) -> str:
    """A local cpu runtime image: OPENSCORE_TEST_BASE_IMAGE, the dev cluster's `base_image`, the image tests'
    localhost/openscore-test:cpu-<source hash> when built, else built now (images/build.sh, minutes)."""
    from tests.images.test_image import build_runtime_image, require_podman, source_hash
    require_podman()
    named = os.environ.get("OPENSCORE_TEST_BASE_IMAGE") or cluster.info.get("base_image")
    if named:
        return named
    tag = f"localhost/openscore-test:cpu-{source_hash()[:16]}"
    exists = subprocess.run(["podman", "image", "exists", tag], capture_output=True, timeout=60)
    if exists.returncode != 0:
        build_runtime_image("cpu", tag)
    return tag


@pytest.fixture(scope="session")
def runtime_image(cluster: ClusterInfo) -> str:
    """`<registry>/openscore-test-runtime:<tag>`: the cpu runtime image with THIS checkout's openscore package
    as one more layer, in the cluster's registry (ENTRYPOINT `openscore serve --port 5001`)."""
    if cluster.registry is None:
        pytest.skip("the cluster has no registry (started without its real node)")
    from tests.cluster.imagekit import checkout_image, push_local_image
    base = push_local_image(_base_image(cluster), cluster.registry)
    return checkout_image(base, cluster.registry).by_tag


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """With OPENSCORE_REQUIRE_CLUSTER_TESTS=1 (.ci/run, which builds the binaries first), a test that uses the
    cluster and skips fails instead: a green CI must say the cluster tests ran."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if (report.skipped and os.environ.get("OPENSCORE_REQUIRE_CLUSTER_TESTS") == "1"
            and "cluster" in getattr(item, "fixturenames", ())):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"cluster test skipped where it is required (OPENSCORE_REQUIRE_CLUSTER_TESTS=1): {reason}"
