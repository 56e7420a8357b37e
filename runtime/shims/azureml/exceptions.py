"""The azureml-core exception types that entry scripts catch, for the openscore shims.

Only the hierarchy and the `.message` attribute matter to scripts; `logger=` and other keyword
arguments that azureml-core passes are accepted and ignored.
"""

from typing import Any


class AzureMLException(Exception):
    """Base of every Azure ML SDK error."""

    def __init__(self, exception_message: str = "", inner_exception: BaseException | None = None,
                 **kwargs: Any) -> None:
        super().__init__(exception_message)
        self.message = exception_message
        self.inner_exception = inner_exception


class UserErrorException(AzureMLException):
    """The caller asked for something that cannot work."""


class WebserviceException(AzureMLException):
    """Raised by model and web-service operations (azureml.core.model, azureml.core.webservice)."""

    def __init__(self, exception_message: str = "", status_code: int | None = None,
                 logger: Any = None, **kwargs: Any) -> None:
        super().__init__(exception_message, **kwargs)
        self.status_code = status_code


class ModelNotFoundException(WebserviceException):
    """The model is neither under azureml-models/ nor in the working directory."""
