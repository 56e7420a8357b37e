"""The models a server serves: name -> (version -> model), owned by the server's data plane.

A no-code server (`--model`) registers its one model as version "1"; the registry is the place more models
would be added. Lookups fail with ModelNotFound, whose message says what the server does serve.
"""

from __future__ import annotations

from typing import Any

DEFAULT_VERSION = "1"


class ModelNotFound(LookupError):
    """No such model or version (answered 404)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ModelRegistry:
    def __init__(self) -> None:
        self._models: dict[str, dict[str, Any]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._models.values())

    def add(self, model: Any, version: str = DEFAULT_VERSION) -> None:
        """Register `model` (anything with a `name`) under its name and `version`; a duplicate is an error."""
        versions = self._models.setdefault(model.name, {})
        if version in versions:
            raise ValueError(f"model {model.name!r} version {version!r} is already registered")
        versions[version] = model

    def get(self, name: str, version: str | None = None) -> Any:
        """The model `name` at `version` (None: the newest registered). Raises ModelNotFound."""
        versions = self._models.get(name)
        if versions is None:
            if not self._models:
                raise ModelNotFound(f"model {name!r} not found: this server serves an entry script; serve a "
                                    "model with --model for the Open Inference Protocol")
            raise ModelNotFound(f"model {name!r} not found; this server serves "
                                f"{', '.join(repr(n) for n in self._models)}")
        if version is None:
            return versions[next(reversed(versions))]
        model = versions.get(version)
        if model is None:
            raise ModelNotFound(f"model {name!r} has no version {version!r}; versions: {', '.join(versions)}")
        return model

    def versions(self, name: str) -> list[str]:
        return list(self._models.get(name, {}))

    def only(self) -> Any:
        """The single registered model (what no-code /score answers with); None unless exactly one."""
        if len(self) != 1:
            return None
        (versions,) = self._models.values()
        (model,) = versions.values()
        return model
