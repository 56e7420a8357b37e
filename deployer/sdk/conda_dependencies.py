"""`CondaDependencies`: azureml-core's editor of a conda specification (channels, conda and pip packages).

It only holds the document; what the packages mean (pip install, mapped conda names, azureml-* skipped) is
decided by openscore.deployer.environments when the environment is built.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from openscore.sdk.exceptions import UserErrorException

DEFAULT_PYTHON_VERSION = "3.11"


def _base_name(spec: str) -> str:
    """`numpy==1.26` / `numpy>=1` / `numpy=1.26` / `numpy` -> `numpy` (the package a spec names)."""
    for i, ch in enumerate(spec):
        if ch in "=<>!~[ ;":
            return spec[:i].strip().lower()
    return spec.strip().lower()


class CondaDependencies:
    """A conda environment document: `name`, `channels`, `dependencies` (conda specs plus one `{"pip": [...]}`)."""

    def __init__(self, conda_dependencies_file_path: str | None = None,
                 _underlying_structure: dict[str, Any] | None = None) -> None:
        if conda_dependencies_file_path is not None:
            from openscore.deployer.documents import load_document
            from openscore.sdk.exceptions import as_webservice_errors
            with as_webservice_errors():
                doc = load_document(conda_dependencies_file_path, "conda specification")
        elif _underlying_structure is not None:
            doc = copy.deepcopy(_underlying_structure)
        else:
            doc = {"name": "project_environment", "dependencies": [f"python={DEFAULT_PYTHON_VERSION}"],
                   "channels": ["conda-forge"]}
        deps = doc.get("dependencies") or []
        if not isinstance(deps, list):
            raise UserErrorException(f"conda specification: dependencies must be a list, got {type(deps).__name__}")
        doc["dependencies"] = deps
        self._conda_dependencies = doc

    @staticmethod
    def create(pip_indexurl: str | None = None, pip_packages: list[str] | None = None,
               conda_packages: list[str] | None = None, python_version: str = DEFAULT_PYTHON_VERSION,
               pin_sdk_version: bool = True) -> CondaDependencies:
        """A new specification with these packages (`pin_sdk_version` is accepted: there is no SDK to pin)."""
        cd = CondaDependencies()
        cd.set_python_version(python_version)
        if pip_indexurl:
            cd.set_pip_option(f"--index-url {pip_indexurl}")
        for p in conda_packages or []:
            cd.add_conda_package(p)
        for p in pip_packages or []:
            cd.add_pip_package(p)
        return cd

    # -- reading
    def _pip_list(self, create: bool = False) -> list[str] | None:
        for dep in self._conda_dependencies["dependencies"]:
            if isinstance(dep, dict) and "pip" in dep:
                return dep["pip"]
        if not create:
            return None
        pip: list[str] = []
        self._conda_dependencies["dependencies"].append({"pip": pip})
        return pip

    @property
    def conda_packages(self) -> list[str]:
        return [d for d in self._conda_dependencies["dependencies"] if isinstance(d, str)]

    @property
    def pip_packages(self) -> list[str]:
        return [p for p in self._pip_list() or [] if not p.startswith("-")]

    @property
    def pip_options(self) -> list[str]:
        return [p for p in self._pip_list() or [] if p.startswith("-")]

    @property
    def conda_channels(self) -> list[str]:
        return list(self._conda_dependencies.get("channels") or [])

    def get_python_version(self) -> str | None:
        for dep in self.conda_packages:
            if _base_name(dep) == "python":
                return dep.partition("=")[2].lstrip("=") or None
        return None

    # -- editing (azureml-core replaces a package of the same name rather than listing it twice)
    def add_conda_package(self, conda_package: str) -> None:
        self.remove_conda_package(_base_name(conda_package))
        self._conda_dependencies["dependencies"].insert(len(self.conda_packages), conda_package)

    def remove_conda_package(self, conda_package: str) -> None:
        name = _base_name(conda_package)
        self._conda_dependencies["dependencies"] = [
            d for d in self._conda_dependencies["dependencies"] if not (isinstance(d, str) and _base_name(d) == name)]

    def add_pip_package(self, pip_package: str) -> None:
        pip = self._pip_list(create=True)
        assert pip is not None
        name = _base_name(pip_package)
        pip[:] = [p for p in pip if p.startswith("-") or _base_name(p) != name] + [pip_package]

    def remove_pip_package(self, pip_package: str) -> None:
        pip = self._pip_list()
        if pip is not None:
            name = _base_name(pip_package)
            pip[:] = [p for p in pip if p.startswith("-") or _base_name(p) != name]

    def set_pip_option(self, pip_option: str) -> None:
        pip = self._pip_list(create=True)
        assert pip is not None
        flag = pip_option.split()[0]
        pip[:] = [p for p in pip if p.split()[0] != flag] + [pip_option]

    def add_channel(self, channel: str) -> None:
        channels = self._conda_dependencies.setdefault("channels", [])
        if channel not in channels:
            channels.append(channel)

    def remove_channel(self, channel: str) -> None:
        channels = self._conda_dependencies.get("channels") or []
        self._conda_dependencies["channels"] = [c for c in channels if c != channel]

    def set_python_version(self, version: str) -> None:
        self.add_conda_package(f"python={version}")

    # -- writing
    def as_dict(self) -> dict[str, Any]:
        """The document, as an Environment's python.condaDependencies holds it."""
        return copy.deepcopy(self._conda_dependencies)

    def serialize_to_string(self) -> str:
        import yaml
        return str(yaml.safe_dump(self._conda_dependencies, sort_keys=False))

    def save(self, path: str | None = None) -> str:
        """Write the YAML document (azureml-core's default name: conda_dependencies.yml) and return its path."""
        target = Path(path or "conda_dependencies.yml")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.serialize_to_string())
        return str(target)

    def save_to_file(self, base_directory: str, conda_file_path: str | None = None) -> str:
        return self.save(str(Path(base_directory) / (conda_file_path or "conda_dependencies.yml")))

    def __repr__(self) -> str:
        return f"CondaDependencies({self._conda_dependencies!r})"
