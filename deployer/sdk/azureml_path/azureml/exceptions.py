"""azureml.exceptions -> openscore.sdk.exceptions."""

from openscore.sdk.exceptions import (
    AzureMLException,
    ComputeTargetException,
    ModelNotFoundException,
    UserErrorException,
    WebserviceException,
)

__all__ = ["AzureMLException", "ComputeTargetException", "ModelNotFoundException", "UserErrorException",
           "WebserviceException"]
