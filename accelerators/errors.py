"""Exceptions raised by accelerators; each names what failed so a startup log or an HTTP error says why."""

from __future__ import annotations


class AcceleratorError(Exception):
    """Base class for every error this package raises on purpose."""


class DeviceNotFoundError(AcceleratorError):
    """An explicitly requested device is absent or not really usable (a startup error, never a fallback)."""


class UnsupportedModelError(AcceleratorError):
    """The backend cannot run this model: names the operator, data type or attribute at load time."""


class InvalidInputError(AcceleratorError, ValueError):
    """One request's inputs do not match the model; fails only that request."""


class QueueFullError(AcceleratorError):
    """The model's bounded queue is full; the caller should retry later (HTTP 503/429)."""


class QueueTimeoutError(AcceleratorError, TimeoutError):
    """A request waited in the queue longer than its timeout; fails only that request."""


class BatcherClosedError(AcceleratorError):
    """The model is shutting down and does not accept (or no longer runs) this request."""


class ExecutionError(AcceleratorError):
    """The device failed while running a batch that held only this request."""


class InvalidDeviceNameError(AcceleratorError, ValueError):
    """A device string that is not one of the documented forms."""
