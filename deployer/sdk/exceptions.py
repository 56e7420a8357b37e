"""The azureml-core exception types, at the names deploy scripts catch (`azureml.exceptions`).

Every failure of the deployer (`openscore.deployer.errors.DeployError`) reaches an SDK caller as a
WebserviceException carrying the deployer's message and its HTTP-ish status, as azureml-core's do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from openscore.deployer.errors import DeployError, NotFoundError


class AzureMLException(Exception):
    """Base of every Azure ML SDK error; `message` holds the text, as in azureml-core."""

    def __init__(self, exception_message: str = "", inner_exception: BaseException | None = None,
                 **kwargs: Any) -> None:
        super().__init__(exception_message)
        self.message = exception_message
        self.inner_exception = inner_exception


class UserErrorException(AzureMLException):
    """The caller asked for something that cannot work (a missing config.json, a bad argument)."""


class WebserviceException(AzureMLException):
    """Raised by model and web-service operations (azureml.core.model, azureml.core.webservice)."""

    def __init__(self, exception_message: str = "", status_code: int | None = None,
                 logger: Any = None, **kwargs: Any) -> None:
        super().__init__(exception_message, **kwargs)
        self.status_code = status_code


class ModelNotFoundException(WebserviceException):
    """No model of that name (and version) in the workspace or on disk."""


class ComputeTargetException(AzureMLException):
    """A compute target that is not attached, or an operation no local target offers."""


@contextmanager
def as_webservice_errors(not_found: type[WebserviceException] = WebserviceException) -> Iterator[None]:
    """Re-raise the deployer's errors as azureml-core's: `not_found` for a NotFoundError."""
    try:
        yield
    except NotFoundError as e:
        raise not_found(str(e), status_code=e.status) from e
    except DeployError as e:
        raise WebserviceException(str(e), status_code=e.status) from e
