"""azureml.core.compute.aks -> openscore.sdk.compute."""

from openscore.sdk.compute import AksCompute

__all__ = ["AksCompute"]
