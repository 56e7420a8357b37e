"""Turning run()'s return value into a response, by azmlinfsrv's rules (spec 1.5)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Response as WerkzeugResponse

JSON_CONTENT_TYPE = "application/json"


class UnserializableResult(Exception):
    """run() returned a value that cannot be JSON-encoded (Azure: 500, x-ms-run-function-failed False)."""


@dataclass
class EncodedResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _numpy_default(value: Any) -> Any:
    """`--response-json numpy`: numpy arrays and scalars become lists and numbers instead of a 500."""
    tolist = getattr(value, "tolist", None)
    if tolist is not None and type(value).__module__ == "numpy":
        return tolist()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def encode_result(value: Any, numpy_json: bool = False) -> EncodedResponse:
    """A werkzeug/Flask Response (AMLResponse included) passes as is; anything else is json.dumps-ed."""
    if isinstance(value, WerkzeugResponse):
        body = value.get_data()
        headers = [(k, v) for k, v in value.headers.items() if k.lower() != "content-length"]
        if value.status_code >= 500:
            headers = [(k, v) for k, v in headers if k.lower() != "x-ms-run-function-failed"]
            headers.append(("x-ms-run-function-failed", "True"))
        return EncodedResponse(value.status_code, headers, body)
    if value is None:
        value = {}
    try:
        text = json.dumps(value, default=_numpy_default) if numpy_json else json.dumps(value)
    except (TypeError, ValueError, OverflowError) as e:
        raise UnserializableResult(f"run() returned a value that cannot be encoded as JSON: {e}") from e
    return EncodedResponse(200, [("Content-Type", JSON_CONTENT_TYPE)], text.encode())
