"""azureml.core.webservice -> openscore.sdk."""

from openscore.sdk.aks import AksEndpoint, AksWebservice
from openscore.sdk.local import LocalWebservice
from openscore.sdk.webservice import Webservice

__all__ = ["AksEndpoint", "AksWebservice", "LocalWebservice", "Webservice"]
