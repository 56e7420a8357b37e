"""The SDK's compute targets without a cluster: azureml-core's names, Azure's not-found text listing what is
attached, and attach's bad input as ComputeTargetException with nothing recorded."""

from __future__ import annotations

import json
import socket

import pytest

from openscore.sdk import AksCompute, ComputeTarget, ComputeTargetException


def _unreachable_kubeconfig(path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "only",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "only", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def test_only_local_is_attached_at_first(sdk_ws):
    assert [(c.name, c.type) for c in ComputeTarget.list(sdk_ws)] == [("local", "Local")]
    assert list(sdk_ws.compute_targets) == ["local"]
    with pytest.raises(ComputeTargetException, match=r"'myaks' not found.*Attached compute targets: local"):
        ComputeTarget(sdk_ws, "myaks")


def test_attach_refuses_bad_input_and_records_nothing(sdk_ws, tmp_path):
    with pytest.raises(ComputeTargetException, match="kubeconfig=PATH"):
        AksCompute.attach_configuration(resource_group="rg", cluster_name="c")
    with pytest.raises(ComputeTargetException, match="does not exist"):
        ComputeTarget.attach(sdk_ws, "myaks", AksCompute.attach_configuration(kubeconfig=str(tmp_path / "no")))
    config = AksCompute.attach_configuration(kubeconfig=str(_unreachable_kubeconfig(tmp_path / "kc")))
    with pytest.raises(ComputeTargetException, match="cannot be reached"):
        ComputeTarget.attach(sdk_ws, "myaks", config)
    with pytest.raises(ComputeTargetException, match="attach_configuration"):
        ComputeTarget.attach(sdk_ws, "myaks", {"kubeconfig": "x"})
    with pytest.raises(ComputeTargetException, match="does not provision"):
        ComputeTarget.create(sdk_ws, "myaks", None)
    assert [c.name for c in ComputeTarget.list(sdk_ws)] == ["local"]
