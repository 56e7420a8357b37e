"""The errors openscore.images raises: each message names what went wrong and where."""

from __future__ import annotations


class ImageError(Exception):
    """An image could not be found, built, written or pushed."""


class RegistryError(ImageError):
    """The registry refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status
