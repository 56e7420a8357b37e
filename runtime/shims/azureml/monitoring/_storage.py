"""Where ModelDataCollector rows go on disk, and how they are appended safely.

The folder layout is Azure's blob layout under a local root, so the files can later be synced to
the `modeldata` container unchanged. Writers in several threads or worker processes append to the
same file; an flock around "write the header if the file is empty, then append" keeps exactly
one header and whole rows.
"""

import fcntl
import json
import os
from datetime import datetime
from typing import Any

CONFIG_MAP_DEFAULT = "/var/azureml-app/model_config_map.json"
_CONNECTION_STRING_KEYS = ("accountname=", "blobendpoint=", "sharedaccesssignature=", "usedevelopmentstorage=")


def storage_root() -> tuple[str, str | None]:
    """Return (absolute root folder, note for the log or None).

    AML_MODEL_DC_STORAGE is used when it is a path; an Azure connection string cannot be used here, so
    OPENSCORE_MDC_DIR, else ./modeldata-collection, takes its place.
    """
    storage = os.environ.get("AML_MODEL_DC_STORAGE", "").strip()
    is_connection_string = any(key in storage.lower() for key in _CONNECTION_STRING_KEYS)
    if storage and not is_connection_string:
        return os.path.abspath(storage), None
    root = os.path.abspath(os.environ.get("OPENSCORE_MDC_DIR") or "modeldata-collection")
    note = None
    if is_connection_string:
        note = (f"openscore: AML_MODEL_DC_STORAGE is an Azure storage connection string, which openscore does not "
                f"upload to; collected data is written under {root} instead.")
    return root, note


def load_config_map() -> dict[str, Any] | None:
    """Read model_config_map.json (path from AML_MODEL_CONFIG_MAP), or None when there is none."""
    path = os.environ.get("AML_MODEL_CONFIG_MAP") or CONFIG_MAP_DEFAULT
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"ModelDataCollector cannot read the model config map {path}: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"ModelDataCollector: the model config map {path} must hold a JSON object")
    return data


def csv_path(root: str, parts: list[str], when: datetime, filename: str) -> str:
    """modeldata/<sub>/<rg>/<ws>/<service>/<model>/<version>/<designation>/<yyyy>/<mm>/<dd>/<filename> under root."""
    safe = [_segment(p) for p in parts]
    return os.path.join(root, "modeldata", *safe, f"{when:%Y}", f"{when:%m}", f"{when:%d}", _segment(filename))


def _segment(value: str) -> str:
    # A name must not climb out of (or add levels to) the layout.
    value = str(value).replace("/", "_").replace("\\", "_").replace("\0", "_")
    return "_" if value in ("", ".", "..") else value


def append(path: str, header: str, body: str) -> None:
    """Append `body` to the CSV at `path`, preceded by `header` when the file is new or empty."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a", encoding="utf-8", newline="") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # released when the file is closed
        text = header + body if os.fstat(f.fileno()).st_size == 0 else body
        f.write(text)
