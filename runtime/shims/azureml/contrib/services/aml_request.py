"""`@rawhttp` and `AMLRequest`, as in azureml-contrib-services / azmlinfsrv (spec 1.6).

`rawhttp` flips a process-wide flag instead of wrapping run(): the server reads `_rawHttpRequested`
once, after loading the entry script, to decide that run() gets the request object itself.
"""

from typing import Callable, TypeVar

from werkzeug.wrappers import Request

_F = TypeVar("_F", bound=Callable)

_rawHttpRequested = False


def rawhttp(func: _F) -> _F:
    """Ask for raw HTTP access in run(); returns `func` unchanged."""
    global _rawHttpRequested
    _rawHttpRequested = True
    return func


class AMLRequest(Request):
    """For type hints only: run() receives the server's werkzeug-compatible request, not an instance of this."""
