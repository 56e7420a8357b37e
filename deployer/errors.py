"""The one exception family the deployer raises for anything a user can fix: the CLI prints the message and
exits 1, the SDK wraps it in WebserviceException. `status` says which kind of failure it is, as an HTTP
status would (400 bad input, 404 not found, 409 conflict)."""

from __future__ import annotations


class DeployError(Exception):
    """A user-facing failure: the message says what is wrong and how to fix it."""

    status: int = 400


class NotFoundError(DeployError):
    status = 404


class ConflictError(DeployError):
    status = 409
