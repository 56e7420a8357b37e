"""azureml.core.authentication: the credential classes Azure scripts construct for Workspace(auth=...).

A local workspace needs no sign-in: each class takes azureml-core's arguments and is ignored by Workspace.
"""

from typing import Any


class AbstractAuthentication:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs


class InteractiveLoginAuthentication(AbstractAuthentication):
    pass


class ServicePrincipalAuthentication(AbstractAuthentication):
    pass


class AzureCliAuthentication(AbstractAuthentication):
    pass


class MsiAuthentication(AbstractAuthentication):
    pass


__all__ = ["AbstractAuthentication", "AzureCliAuthentication", "InteractiveLoginAuthentication",
           "MsiAuthentication", "ServicePrincipalAuthentication"]
