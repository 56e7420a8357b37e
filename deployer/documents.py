"""Reading the JSON or YAML files users hand the deployer (inferenceconfig, deploymentconfig, environment
definitions, conda specs): Azure's CLI takes either spelling, so does this."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openscore.deployer.errors import DeployError, NotFoundError


def parse_document(text: str, source: str, what: str) -> dict[str, Any]:
    """`text` as a JSON object, else as a YAML mapping; anything else is a DeployError naming `source`."""
    try:
        doc = json.loads(text)
    except ValueError as json_error:
        import yaml  # the deployer extra; JSON alone needs nothing

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as yaml_error:
            first = str(yaml_error).splitlines()[0] if str(yaml_error) else type(yaml_error).__name__
            raise DeployError(f"{what} {source} is neither JSON nor YAML (JSON: {json_error}; YAML: {first})") \
                from None
        if not isinstance(doc, dict):  # YAML reads almost any text as a string: it was meant as neither
            raise DeployError(f"{what} {source} is neither JSON nor YAML holding an object "
                              f"(JSON: {json_error}; YAML read it as {type(doc).__name__})") from None
    if not isinstance(doc, dict):
        raise DeployError(f"{what} {source} must hold a JSON object / YAML mapping, not {type(doc).__name__}")
    return doc


def load_document(path: str | Path, what: str) -> dict[str, Any]:
    """The object in the JSON or YAML file `path`; `what` names it in messages ("inference config")."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise DeployError(f"{what} {path} is a folder, not a file") from None
    except OSError as e:
        raise DeployError(f"{what} {path} cannot be read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DeployError(f"{what} {path} is neither JSON nor YAML (not UTF-8 text)") from None
    return parse_document(text, str(path), what)
