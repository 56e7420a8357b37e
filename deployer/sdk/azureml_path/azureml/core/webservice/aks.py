"""azureml.core.webservice.aks -> openscore.sdk.aks."""

from openscore.sdk.aks import AksEndpoint, AksWebservice
from openscore.sdk.deploy_configuration import AksEndpointDeploymentConfiguration, AksServiceDeploymentConfiguration

__all__ = ["AksEndpoint", "AksEndpointDeploymentConfiguration", "AksServiceDeploymentConfiguration", "AksWebservice"]
