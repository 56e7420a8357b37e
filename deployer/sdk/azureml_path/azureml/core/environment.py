"""azureml.core.environment -> openscore.sdk.environment."""

from openscore.sdk.environment import DockerSection, Environment, PythonSection

__all__ = ["DockerSection", "Environment", "PythonSection"]
