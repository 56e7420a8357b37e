"""openscore stand-in for azureml-core: just what entry scripts use inside a scoring container."""

from .model import Model
from .workspace import Workspace

__all__ = ["Model", "Workspace"]
