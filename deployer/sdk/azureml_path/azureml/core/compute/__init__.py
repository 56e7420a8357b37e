"""azureml.core.compute -> openscore.sdk.compute."""

from openscore.sdk.compute import AksCompute, ComputeTarget

__all__ = ["AksCompute", "ComputeTarget"]
