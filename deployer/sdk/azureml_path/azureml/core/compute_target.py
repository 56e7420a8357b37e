"""azureml.core.compute_target (older scripts import ComputeTarget from here)."""

from openscore.sdk.compute import ComputeTarget

__all__ = ["ComputeTarget"]
