"""Make the Azure ML compatibility shims in runtime/shims importable, only where the real package is missing.

Entry scripts import `azureml.*` modules that openscore does not want to depend on (azureml-core alone
pulls in hundreds of MB, azureml-monitoring's native library no longer loads). A finder appended to
the END of `sys.meta_path` is asked only after every normal finder has failed, so an installed real
package always wins, module by module: with azureml-core installed, `azureml.core.model` is the real
one while `azureml.contrib.services.aml_request` can still come from here.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import cast

SHIM_ROOT = Path(__file__).resolve().parent / "shims"

# The modules whose `_rawHttpRequested` flag means "run() wants the raw request" (see rawhttp_requested()).
RAWHTTP_MODULES = ("azureml.contrib.services.aml_request", "azureml_inference_server_http.api.aml_request")

# Another import path for the same module object, so both paths share one state (the rawhttp flag).
_ALIASES = {
    "azureml_inference_server_http.api.aml_request": "azureml.contrib.services.aml_request",
    "azureml_inference_server_http.api.aml_response": "azureml.contrib.services.aml_response",
}
# scikit-learn < 0.23 shipped joblib as sklearn.externals.joblib; old scripts (and pickles) still name it.
_SKLEARN_JOBLIB_ALIAS = {"sklearn.externals.joblib": "joblib"}


class _AliasLoader(importlib.abc.Loader):
    """Loads a name as another module: the import system returns whatever exec_module leaves in sys.modules."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        name = module.__name__
        target = importlib.import_module(self.target)
        sys.modules[name] = target
        # Submodules already loaded under the target name get the alias name too, so that
        # `sklearn.externals.joblib.numpy_pickle` (named in old pickles) is not loaded a second time.
        prefix = self.target + "."
        for sub_name, sub_module in list(sys.modules.items()):
            if sub_name.startswith(prefix):
                sys.modules.setdefault(name + sub_name[len(self.target):], sub_module)


class _ShimFinder(importlib.abc.MetaPathFinder):
    """Serves the shim files and aliases by module name; being last in sys.meta_path, only for missing modules."""

    _openscore_shim_finder = True  # recognised across reloads of this module, for idempotence

    def __init__(self, files: dict[str, tuple[str, bool]], aliases: dict[str, str]) -> None:
        self.files = files
        self.aliases = aliases

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        alias = self.aliases.get(fullname)
        if alias is not None:
            return importlib.util.spec_from_loader(fullname, _AliasLoader(alias))
        entry = self.files.get(fullname)
        if entry is None:
            return None
        file, is_package = entry
        return importlib.util.spec_from_file_location(
            fullname, file, submodule_search_locations=[os.path.dirname(file)] if is_package else None)


def _shim_files() -> dict[str, tuple[str, bool]]:
    """Module name -> (file, is_package) for every .py under runtime/shims."""
    files: dict[str, tuple[str, bool]] = {}
    for path in SHIM_ROOT.rglob("*.py"):
        parts = path.relative_to(SHIM_ROOT).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        files[".".join(parts[:-1] if is_package else parts)] = (str(path), is_package)
    return files


def _installed_finder() -> _ShimFinder | None:
    # by marker, not isinstance: the finder must be recognised across reloads of this module
    return cast("_ShimFinder | None", next((f for f in sys.meta_path if getattr(f, "_openscore_shim_finder", False)),
                                          None))


def install_shims(*, sklearn_joblib_alias: bool = False) -> list[str]:
    """Make the shims importable (call before loading the entry script); returns the module names served.

    Each name is served only when no real package provides it. `sklearn_joblib_alias=True` also makes
    `sklearn.externals.joblib` the real `joblib` module, where scikit-learn no longer has it.
    Idempotent: a second call reconfigures the one finder and keeps it last in sys.meta_path.
    """
    aliases = dict(_ALIASES)
    if sklearn_joblib_alias:
        aliases.update(_SKLEARN_JOBLIB_ALIAS)
    finder = _installed_finder()
    if finder is None:
        finder = _ShimFinder(_shim_files(), aliases)
    else:
        sys.meta_path.remove(finder)
        finder.aliases = aliases
    sys.meta_path.append(finder)
    return sorted([*finder.files, *finder.aliases])


def uninstall_shims() -> None:
    """Stop serving shims to later imports; modules already imported stay in sys.modules."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "_openscore_shim_finder", False)]


def rawhttp_requested() -> bool:
    """True when the entry script applied `@rawhttp` (from any import path); check after loading the script."""
    return any(getattr(sys.modules.get(name), "_rawHttpRequested", False) for name in RAWHTTP_MODULES)
