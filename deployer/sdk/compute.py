"""Compute targets: `ComputeTarget(ws, name)` / `AksCompute(ws, name)`, `ComputeTarget.list(ws)` and
`ComputeTarget.attach(ws, name, AksCompute.attach_configuration(kubeconfig=...))`.

`local` is the embedded local target behind the workspace's router; every other name is a Kubernetes
cluster attached to the workspace (openscore.deployer.computes, the same records as `openscore compute`).
Azure creates AKS clusters; openscore attaches existing ones by kubeconfig, so `create` says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from openscore.deployer.errors import DeployError
from openscore.sdk.exceptions import ComputeTargetException

if TYPE_CHECKING:
    from openscore.deployer.computes import Compute, ComputeRegistry
    from openscore.sdk.workspace import Workspace

LOCAL = "local"


def _registry(workspace: Workspace) -> ComputeRegistry:
    from openscore.deployer.computes import ComputeRegistry
    return ComputeRegistry(workspace.store)


def _attached(workspace: Workspace) -> list[str]:
    return [LOCAL, *(c.name for c in _registry(workspace).list())]


@dataclass(frozen=True)
class AksAttachConfiguration:
    """What `AksCompute.attach_configuration` returns: a cluster by its kubeconfig."""

    kubeconfig: str
    context: str | None = None
    namespace: str | None = None
    registry: str | None = None
    instance_types_file: str | None = None
    fpga_resource: str | None = None
    runtime_image: str | None = None


class ComputeTarget:
    """An attached compute target; `ComputeTarget(ws, name)` looks one up by name (an AksCompute for a
    cluster, as azureml-core returns the subclass)."""

    _compute_type = "Local"

    def __new__(cls, workspace: Workspace, name: str) -> ComputeTarget:
        if name == LOCAL:
            return super().__new__(cls)
        try:
            _registry(workspace).get(name)
        except DeployError:
            raise ComputeTargetException(
                f"ComputeTargetNotFound: Compute target with name {name!r} not found in provided workspace. "
                f"Attached compute targets: {', '.join(_attached(workspace))} (clusters are attached with "
                "ComputeTarget.attach or `openscore compute attach`)") from None
        return super().__new__(AksCompute if cls is ComputeTarget else cls)

    def __init__(self, workspace: Workspace, name: str) -> None:
        self.workspace = workspace
        self.name = name
        self.type = self._compute_type
        self.provisioning_state = "Succeeded"
        self._compute: Compute | None = None if name == LOCAL else _registry(workspace).get(name)

    @staticmethod
    def list(workspace: Workspace) -> list[ComputeTarget]:
        return [ComputeTarget(workspace, n) for n in _attached(workspace)]

    @staticmethod
    def create(workspace: Any, name: str, provisioning_configuration: Any) -> NoReturn:
        raise ComputeTargetException("ComputeTarget.create: openscore does not provision clusters; attach an "
                                     "existing Kubernetes cluster with ComputeTarget.attach(ws, name, "
                                     "AksCompute.attach_configuration(kubeconfig=PATH))")

    @staticmethod
    def attach(workspace: Workspace, name: str, attach_configuration: AksAttachConfiguration) -> AksCompute:
        """Attach a cluster (checks that it answers); ComputeTargetException on any bad input."""
        if not isinstance(attach_configuration, AksAttachConfiguration):
            raise ComputeTargetException("attach_configuration must come from AksCompute.attach_configuration")
        c = attach_configuration
        try:
            _registry(workspace).attach(name, c.kubeconfig, context=c.context, namespace=c.namespace,
                                        registry=c.registry, instance_types_file=c.instance_types_file,
                                        fpga_resource=c.fpga_resource, runtime_image=c.runtime_image)
        except DeployError as e:
            raise ComputeTargetException(str(e)) from None
        return AksCompute(workspace, name)

    def wait_for_completion(self, show_output: bool = False, *args: Any, **kwargs: Any) -> None:
        """Attaching is synchronous: an attached compute is ready."""

    def get_status(self) -> str:
        return self.provisioning_state

    def serialize(self) -> dict[str, Any]:
        if self._compute is None:
            return {"name": self.name, "computeType": self.type}
        return self._compute.to_json()

    def detach(self) -> None:
        """Forget the cluster (refused while services are deployed there); the cluster is not touched."""
        if self._compute is None:
            raise ComputeTargetException("the embedded local target cannot be detached")
        try:
            _registry(self.workspace).detach(self.name)
        except DeployError as e:
            raise ComputeTargetException(str(e)) from None

    def delete(self) -> NoReturn:
        raise ComputeTargetException("openscore does not delete clusters: detach() forgets an attached one")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, type={self.type!r})"


class AksCompute(ComputeTarget):
    """A Kubernetes cluster attached to the workspace (`local` stands in for one on the embedded target)."""

    _compute_type = "AKS"

    @property
    def namespace(self) -> str | None:
        return self._compute.namespace if self._compute else None

    @property
    def instance_types(self) -> Mapping[str, Any]:
        """The cluster's instance types by name (Azure's documents)."""
        return {t["metadata"]["name"]: t for t in self.serialize().get("instanceTypes", [])}

    @staticmethod
    def provisioning_configuration(*args: Any, **kwargs: Any) -> NoReturn:
        raise ComputeTargetException("AksCompute.provisioning_configuration: openscore does not provision "
                                     "clusters; attach one with AksCompute.attach_configuration(kubeconfig=PATH)")

    @staticmethod
    def attach_configuration(resource_group: str | None = None, cluster_name: str | None = None,
                             resource_id: str | None = None, cluster_purpose: str | None = None, *,
                             kubeconfig: str | None = None, context: str | None = None,
                             namespace: str | None = None, registry: str | None = None,
                             instance_types_file: str | None = None,
                             fpga_resource: str | None = None,
                             runtime_image: str | None = None) -> AksAttachConfiguration:
        """Azure names a cluster by resource group and name; openscore's Kubernetes target by kubeconfig."""
        if not kubeconfig:
            raise ComputeTargetException("AksCompute.attach_configuration needs kubeconfig=PATH: openscore's "
                                         "Kubernetes target attaches a cluster by its kubeconfig, not by "
                                         "resource_group/cluster_name/resource_id")
        return AksAttachConfiguration(str(kubeconfig), context, namespace, registry, instance_types_file,
                                      fpga_resource, runtime_image)
