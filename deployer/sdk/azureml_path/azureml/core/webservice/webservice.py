"""azureml.core.webservice.webservice -> openscore.sdk.webservice."""

from openscore.sdk.webservice import Webservice, WebserviceAccessToken

__all__ = ["Webservice", "WebserviceAccessToken"]
