"""azureml.core.workspace -> openscore.sdk.workspace."""

from openscore.sdk.workspace import Workspace

__all__ = ["Workspace"]
