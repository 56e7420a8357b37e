"""Compute target lookups: `ComputeTarget(ws, name)` / `AksCompute(ws, name)`.

The only target attached to an openscore workspace is `local`, the embedded local target behind the
workspace's router. Clusters (create, attach, detach) arrive with the Kubernetes target; until then those
calls say so instead of pretending.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from openscore.sdk.exceptions import ComputeTargetException

if TYPE_CHECKING:
    from openscore.sdk.workspace import Workspace

LOCAL = "local"
ATTACHED = (LOCAL,)
_NO_CLUSTERS = ("{what} is not available yet: openscore attaches Kubernetes clusters with its Kubernetes target. "
                "Until then deploy to the embedded local target: ComputeTarget(ws, 'local'), or no deployment_target.")


def _no_clusters(what: str) -> NoReturn:
    raise ComputeTargetException(_NO_CLUSTERS.format(what=what))


class ComputeTarget:
    """An attached compute target; `ComputeTarget(ws, name)` looks one up by name."""

    _compute_type = "Local"

    def __new__(cls, workspace: Workspace, name: str) -> ComputeTarget:
        if name not in ATTACHED:
            raise ComputeTargetException(
                f"ComputeTargetNotFound: Compute target with name {name!r} not found in provided workspace. "
                f"Attached compute targets: {', '.join(ATTACHED)} (the embedded local target; clusters are "
                "attached with openscore's Kubernetes target)")
        return super().__new__(cls)

    def __init__(self, workspace: Workspace, name: str) -> None:
        self.workspace = workspace
        self.name = name
        self.type = self._compute_type
        self.provisioning_state = "Succeeded"

    @staticmethod
    def list(workspace: Workspace) -> list[ComputeTarget]:
        return [ComputeTarget(workspace, n) for n in ATTACHED]

    @staticmethod
    def create(workspace: Any, name: str, provisioning_configuration: Any) -> NoReturn:
        _no_clusters("ComputeTarget.create")

    @staticmethod
    def attach(workspace: Any, name: str, attach_configuration: Any) -> NoReturn:
        _no_clusters("ComputeTarget.attach")

    def wait_for_completion(self, show_output: bool = False, *args: Any, **kwargs: Any) -> None:
        """The local target is always provisioned."""

    def get_status(self) -> str:
        return self.provisioning_state

    def detach(self) -> NoReturn:
        _no_clusters("detach")

    def delete(self) -> NoReturn:
        _no_clusters("delete")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, type={self.type!r})"


class AksCompute(ComputeTarget):
    """`AksCompute(ws, name)`: the same lookup; `local` stands in for a cluster until Kubernetes arrives."""

    _compute_type = "AKS"

    @staticmethod
    def provisioning_configuration(*args: Any, **kwargs: Any) -> NoReturn:
        _no_clusters("AksCompute.provisioning_configuration")

    @staticmethod
    def attach_configuration(*args: Any, **kwargs: Any) -> NoReturn:
        _no_clusters("AksCompute.attach_configuration")
