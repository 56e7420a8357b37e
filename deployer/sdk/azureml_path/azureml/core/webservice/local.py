"""azureml.core.webservice.local -> openscore.sdk.local."""

from openscore.sdk.deploy_configuration import LocalWebserviceDeploymentConfiguration
from openscore.sdk.local import LocalWebservice

__all__ = ["LocalWebservice", "LocalWebserviceDeploymentConfiguration"]
