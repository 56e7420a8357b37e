"""azureml.core -> openscore.sdk."""

from openscore.sdk import ComputeTarget, Environment, Model, Webservice, Workspace
from openscore.sdk.conda_dependencies import CondaDependencies

__all__ = ["ComputeTarget", "CondaDependencies", "Environment", "Model", "Webservice", "Workspace"]
