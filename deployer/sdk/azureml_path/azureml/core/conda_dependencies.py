"""azureml.core.conda_dependencies -> openscore.sdk.conda_dependencies."""

from openscore.sdk.conda_dependencies import CondaDependencies

__all__ = ["CondaDependencies"]
