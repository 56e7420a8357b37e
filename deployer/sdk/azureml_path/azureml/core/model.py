"""azureml.core.model -> openscore.sdk (Model and InferenceConfig live here in azureml-core)."""

from openscore.sdk.inference_config import InferenceConfig
from openscore.sdk.model import Model

__all__ = ["InferenceConfig", "Model"]
