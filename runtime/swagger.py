"""The `/swagger.json` documents, built the way azmlinfsrv 1.5.1 builds them.

The document is a template (``swagger_template.json``) with the service name, version and path prefix filled in,
and ``ServiceInput``/``ServiceOutput`` taken from inference-schema's decorators on run(). A user can ship their own
document instead. Documents are built on first request and cached: a broken schema must cost one route a 500, not
the server its startup.

Errors that ``SwaggerDocuments.get`` raises, and what the server answers:

* ``SwaggerVersionError`` -> 404 ``{"message": str(exc)}`` (Azure's exact texts);
* ``SwaggerGenerationError`` -> 500; ``str(exc)`` says what failed, ``exc.__cause__`` holds the original exception
  for the log.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from functools import cache
from importlib import resources
from typing import Any

from inference_schema.schema_util import (
    get_input_schema,
    get_output_schema,
    get_supported_versions,
    is_schema_decorated,
)

logger = logging.getLogger("openscore.swagger")

VERSIONS = ("2", "3", "3.1")
# ?version= values azmlinfsrv accepts, mapped to the version they stand for (no others: "2.0.0" is invalid there too).
_ALIASES = {"2": "2", "2.0": "2", "3": "3", "3.0": "3", "3.1": "3.1"}
# inference-schema's names for the versions (what get_supported_versions returns).
_SCHEMA_NAMES = {"2": "2.0", "3": "3.0", "3.1": "3.1"}
# User documents per version, first found wins. As in azmlinfsrv, plain `swagger.json` stands for version 2 only
# (it predates OpenAPI 3 support) and beats `swagger2.json`.
USER_FILES = {"2": ("swagger.json", "swagger2.json"), "3": ("swagger3.json",), "3.1": ("swagger3.1.json",)}
# What an undecorated run() takes and returns, as far as anyone can tell.
_UNDECORATED_SCHEMA: dict[str, Any] = {"type": "object", "example": {}}


class SwaggerVersionError(ValueError):
    """The requested version is unknown or not available for this script; str(exc) is azmlinfsrv's 404 message."""


class SwaggerGenerationError(RuntimeError):
    """A document could not be built or a user document could not be read; the server answers 500."""


def _invalid_message(query_value: str, available: Iterable[str]) -> str:
    return f"Swagger version [{query_value}] is not valid. Supported versions: [{', '.join(available)}]."


def parse_swagger_version(query_value: str | None) -> str:
    """Map a ``?version=`` value to "2", "3" or "3.1"; a missing value means "2", as in azmlinfsrv."""
    if query_value is None:
        return "2"
    try:
        return _ALIASES[query_value]
    except KeyError:
        raise SwaggerVersionError(_invalid_message(query_value, VERSIONS)) from None


def normalize_path_prefix(prefix: str | None) -> str:
    """``SERVICE_PATH_PREFIX`` as it goes in front of each path: "" or "/a/b" (never "//" nor a trailing "/")."""
    stripped = (prefix or "").strip().strip("/")
    return f"/{stripped}" if stripped else ""


@cache
def _template_text() -> str:
    package = resources.files(__package__ or "openscore.runtime")
    return package.joinpath("swagger_template.json").read_text(encoding="utf-8")


def _substitute(node: Any, values: dict[str, str]) -> Any:
    """Fill placeholders in keys and strings of the parsed template, so any name (quotes included) stays valid JSON."""
    if isinstance(node, str):
        for placeholder, value in values.items():
            node = node.replace(placeholder, value)
        return node
    if isinstance(node, dict):
        return {_substitute(k, values): _substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    return node


class SwaggerDocuments:
    """The `/swagger.json` bodies of one loaded entry script, per version, built on first use and cached."""

    def __init__(self, run_func: Callable[..., Any], *, service_name: str = "ML service",
                 service_version: str = "1.0", path_prefix: str = "", app_root: str | None = None,
                 entry_script_dir: str | None = None) -> None:
        self._run = run_func
        self._values = {
            "$SERVICE_NAME$": service_name,
            "$SERVICE_VERSION$": service_version,
            "$PATH_PREFIX$": normalize_path_prefix(path_prefix),
        }
        # app_root first (azmlinfsrv looks only there); beside the entry script second, for scripts outside it.
        self._dirs = list(dict.fromkeys(os.path.abspath(d) for d in (app_root, entry_script_dir) if d))
        self._user_docs: dict[str, bytes | None] = {}
        self._bodies: dict[str, bytes] = {}
        self._supported: list[str] | None = None

    def get(self, version_query: str | None) -> bytes:
        """The JSON body for ``?version=<version_query>`` (None: no query parameter).

        Raises SwaggerVersionError (404) or SwaggerGenerationError (500), see the module docstring.
        """
        if version_query is None:
            version = "2"
        elif (alias := _ALIASES.get(version_query)) is not None:
            version = alias
        else:
            raise SwaggerVersionError(_invalid_message(version_query, self.supported_versions()))
        body = self._bodies.get(version)
        if body is None:
            if version not in self.supported_versions():
                raise SwaggerVersionError(
                    f"Swagger version [{version_query or version}] is not supported for the scoring script. "
                    f"Supported swagger versions: [{', '.join(self.supported_versions())}].")
            body = self._user_document(version) or self._generate(version)
            self._bodies[version] = body
        return body

    def supported_versions(self) -> list[str]:
        """Versions this script can be served in: a user document exists, or every decorator supports it.

        Never raises: a version whose user document is unreadable, or any version when the decorators cannot be
        inspected, counts as supported, so that asking for it gives the 500 that explains the problem.
        """
        if self._supported is None:
            try:
                schema_versions = set(get_supported_versions(self._run))
            except Exception:
                schema_versions = set(_SCHEMA_NAMES.values())
            self._supported = [v for v in VERSIONS if _SCHEMA_NAMES[v] in schema_versions or self._has_user_document(v)]
        return list(self._supported)

    def _has_user_document(self, version: str) -> bool:
        try:
            return self._user_document(version) is not None
        except SwaggerGenerationError:
            return True

    def _user_document(self, version: str) -> bytes | None:
        """The user's own document for this version, read once and served byte for byte (it must be JSON)."""
        if version in self._user_docs:
            return self._user_docs[version]
        data = None
        for path in (os.path.join(d, name) for d in self._dirs for name in USER_FILES[version]):
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise SwaggerGenerationError(f"Cannot read the swagger file {path}: {exc}") from exc
            try:
                json.loads(data)
            except ValueError as exc:
                raise SwaggerGenerationError(f"The swagger file {path} is not valid JSON: {exc}") from exc
            logger.info("Serving swagger version %s from the user's file %s", version, path)
            break
        self._user_docs[version] = data
        return data

    def _generate(self, version: str) -> bytes:
        try:
            if is_schema_decorated(self._run):
                service_input, service_output = get_input_schema(self._run), get_output_schema(self._run)
            else:
                service_input = service_output = _UNDECORATED_SCHEMA
            template = json.loads(_template_text())["2" if version == "2" else "3"]
            doc = _substitute(template, self._values)
            schemas = doc["definitions"] if version == "2" else doc["components"]["schemas"]
            schemas["ServiceInput"] = service_input
            schemas["ServiceOutput"] = service_output
            if version == "3.1":
                doc["openapi"] = "3.1.0"
            # azmlinfsrv sends json.dumps(doc) with default settings; same bytes here (NaN samples included).
            return json.dumps(doc).encode("ascii")
        except Exception as exc:
            raise SwaggerGenerationError(
                f"Could not generate the swagger {version} document: {type(exc).__name__}: {exc}") from exc
