"""Turning an HTTP request into run()'s keyword arguments, for each input mode (spec 1.4)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from openscore.runtime.entry_script import REQUEST_HEADERS, EntryScript, InputMode
from openscore.runtime.incoming_request import IncomingRequest


class InputError(Exception):
    """The request cannot be given to run(): answered with `status` and `{"message": ...}`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _maybe_json(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def query_to_dict(query_string: str) -> dict[str, Any]:
    """Azure's GET rule: each value json-decoded when possible, else kept as str; repeated keys -> list."""
    grouped: dict[str, list[Any]] = {}
    for key, value in parse_qsl(query_string, keep_blank_values=True):
        grouped.setdefault(key, []).append(_maybe_json(value))
    return {k: v[0] if len(v) == 1 else v for k, v in grouped.items()}


def title_case_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """`dict(flask.request.headers)`: WSGI Title-Case keys, repeated headers joined by ','."""
    out: dict[str, str] = {}
    for k, v in headers.items():
        tk = k.replace("_", "-").title()
        out[tk] = f"{out[tk]},{v}" if tk in out else v
    return out


def is_json_content_type(content_type: str) -> bool:
    mt = content_type.split(";", 1)[0].strip().lower()
    return mt == "application/json" or (mt.startswith("application/") and mt.endswith("+json"))


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _plain_argument(req: IncomingRequest) -> str:
    if req.method == "GET":
        return json.dumps(query_to_dict(req.query_string))
    ct = req.content_type.split(";", 1)[0].strip().lower()
    if ct in _FORM_TYPES:
        return ""  # Flask moved the body into request.form/files, so Azure's run() sees "" (spec 1.4)
    try:
        return req.body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(400, f"Input cannot be decoded as UTF-8: {e}") from None


def _schema_arguments(script: EntryScript, req: IncomingRequest) -> dict[str, Any]:
    if req.method == "GET":
        payload: Any = query_to_dict(req.query_string)
    else:
        if not is_json_content_type(req.content_type):
            raise InputError(415, "Expects Content-Type to be application/json")
        if not req.body.strip():
            raise InputError(400, "POST body is empty. Expecting a JSON dictionary.")
        try:
            payload = orjson.loads(req.body)
        except orjson.JSONDecodeError as e:
            raise InputError(400, f"POST body could not be decoded as JSON: {e}") from None
        if not isinstance(payload, dict):
            raise InputError(400, "POST body should be a JSON dictionary.")
    kwargs: dict[str, Any] = {}
    for p in script.params:
        if p.name in payload:
            kwargs[p.name] = payload[p.name]
        elif p.default is not p.empty:
            kwargs[p.name] = p.default
        else:
            raise InputError(400, f"A value is not provided for the '{p.name}' parameter.")
    return kwargs


def run_arguments(script: EntryScript, req: IncomingRequest) -> dict[str, Any]:
    """The keyword arguments for run(), or InputError. RAW mode needs the werkzeug request built."""
    if script.mode is InputMode.PLAIN:
        kwargs: dict[str, Any] = {script.data_param: _plain_argument(req)}
    elif script.mode is InputMode.SCHEMA:
        kwargs = _schema_arguments(script, req)
    else:
        from openscore.runtime.rawhttp_request import build_request  # werkzeug loads only for @rawhttp scripts
        kwargs = {script.data_param: build_request(req)}
    if script.wants_request_headers:
        kwargs[REQUEST_HEADERS] = title_case_headers(req.headers)
    return kwargs
