"""Loading a user's entry script the way azmlinfsrv does (spec 1.3) and deciding its input mode (1.4)."""

from __future__ import annotations

import enum
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openscore.runtime.shim_loader import rawhttp_requested

REQUEST_HEADERS = "request_headers"


class EntryScriptError(Exception):
    """The entry script cannot be served (missing init/run, bad run() signature, ...)."""


class InputMode(enum.Enum):
    PLAIN = "plain"      # run() gets the raw body as str (GET: the query as a JSON string)
    RAW = "rawhttp"      # run() gets the request object
    SCHEMA = "schema"    # run() gets one keyword argument per JSON key (@input_schema)


@dataclass
class EntryScript:
    module: Any
    init: Callable[[], Any]
    run: Callable[..., Any]
    mode: InputMode
    data_param: str                   # the first parameter that is not request_headers
    params: list[inspect.Parameter]   # run()'s parameters other than request_headers
    wants_request_headers: bool
    is_async: bool
    path: Path


def _is_schema_decorated(run: Callable[..., Any]) -> bool:
    try:
        from inference_schema.schema_util import is_schema_decorated
    except ImportError:  # pragma: no cover - inference-schema is a dependency
        return False
    try:
        return bool(is_schema_decorated(run)) and "input_schema" in _schemas_of(run)
    except Exception:
        return False


def _schemas_of(run: Callable[..., Any]) -> dict[str, Any]:
    from inference_schema.schema_util import __functions_schema__, _get_decorators, _get_function_full_qual_name
    name = _get_function_full_qual_name(_get_decorators(run)[-1])
    return __functions_schema__.get(name, {})


def load_entry_script(path: str | Path) -> EntryScript:
    """Import the script as module `entry_module` (not put in sys.modules, as Azure) and analyse run()."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location("entry_module", str(path))
    if spec is None or spec.loader is None:
        raise EntryScriptError(f"cannot load entry script {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # exceptions propagate: the caller logs them and exits 3

    init = getattr(module, "init", None)
    run = getattr(module, "run", None)
    if not callable(init) or not callable(run):
        missing = [n for n, f in (("init", init), ("run", run)) if not callable(f)]
        raise EntryScriptError(f"entry script {path} must define init() and run(); missing: {', '.join(missing)}")
    driver = getattr(module, "driver_module", None)
    if driver is not None and callable(getattr(driver, "run", None)):
        run = driver.run  # legacy SDK main.py: the outer init is kept (spec 1.3)

    raw = rawhttp_requested()
    schema = _is_schema_decorated(run)
    if raw and schema:
        raise EntryScriptError("run() cannot be decorated with both @rawhttp and @input_schema")

    try:
        sig = inspect.signature(run)
    except (TypeError, ValueError) as e:
        raise EntryScriptError(f"cannot inspect the signature of run(): {e}") from None
    params: list[inspect.Parameter] = []
    wants_headers = False
    for p in sig.parameters.values():
        if p.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            raise EntryScriptError(
                f"run() parameter '{p.name}' is {p.kind.description}; only named parameters are supported "
                "(no *args, **kwargs or positional-only parameters)")
        if p.name == REQUEST_HEADERS:
            wants_headers = True
        else:
            params.append(p)
    if not params:
        raise EntryScriptError("run() must take at least one parameter besides request_headers")

    mode = InputMode.RAW if raw else InputMode.SCHEMA if schema else InputMode.PLAIN
    is_async = inspect.iscoroutinefunction(inspect.unwrap(run)) or inspect.iscoroutinefunction(run)
    return EntryScript(module=module, init=init, run=run, mode=mode, data_param=params[0].name,
                       params=params, wants_request_headers=wants_headers, is_async=is_async, path=path)
