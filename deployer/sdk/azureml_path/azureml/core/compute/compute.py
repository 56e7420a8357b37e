"""azureml.core.compute.compute -> openscore.sdk.compute."""

from openscore.sdk.compute import ComputeTarget

__all__ = ["ComputeTarget"]
