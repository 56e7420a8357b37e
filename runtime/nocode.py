"""`--model` and `--device`: no-code ONNX serving defaults, the environment the built-in entry script and
`accelerators.current_device()` read in every worker, and the start-up check of an explicit device.

The model is loaded into the data plane's registry in place of init(); /score and the Open Inference Protocol
answer from there through the same data plane as a user's score.py (slots, timeouts, headers, metrics, logs).
runtime/nocode_score.py is the entry script it stands on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from openscore.runtime.settings import ServerSettings, SettingsError

log = logging.getLogger("openscore.worker")

NOCODE_SCRIPT = str(Path(__file__).resolve().with_name("nocode_score.py"))
ENV_MODEL = "OPENSCORE_MODEL"
ENV_DEVICE = "OPENSCORE_DEVICE"
ENV_MAX_BATCH_SIZE = "OPENSCORE_MAX_BATCH_SIZE"
ENV_MAX_QUEUE_DELAY_MS = "OPENSCORE_MAX_QUEUE_DELAY_MS"
ENV_INTRA_OP_THREADS = "OPENSCORE_INTRA_OP_THREADS"


def apply_model_defaults(s: ServerSettings, *, explicit: Mapping[str, Any], cwd: str, model_from_cli: bool) -> None:
    """--model: resolve the path (flag: against cwd; variable: against the app root), default the device to
    `auto`, use the built-in entry script when none is given, and let concurrent requests reach the batcher."""
    assert s.model
    base = cwd if model_from_cli else s.app_root
    s.model = os.path.realpath(os.path.join(base, s.model))
    if not os.path.isfile(s.model):
        raise SettingsError(f"model {s.model} does not exist (--model / {ENV_MODEL})")
    if s.device is None:
        s.device = "auto"
    if s.entry_script is None:
        s.entry_script = NOCODE_SCRIPT
    if "max_concurrent_requests" not in explicit:
        # No thread per slot on this path (the model is awaited); two batches' worth keeps the device fed.
        s.max_concurrent_requests = min(4096, 2 * s.max_batch_size)


def export_environment(s: ServerSettings) -> None:
    """Before workers fork: what nocode_score.init() and `accelerators.current_device()` read."""
    threads = str(s.intra_op_threads) if s.intra_op_threads else None
    for key, value in ((ENV_MODEL, s.model), (ENV_DEVICE, s.device), (ENV_INTRA_OP_THREADS, threads)):
        if value:
            os.environ[key] = value
        else:
            os.environ.pop(key, None)
    os.environ[ENV_MAX_BATCH_SIZE] = str(s.max_batch_size)
    os.environ[ENV_MAX_QUEUE_DELAY_MS] = repr(s.max_queue_delay_ms)


def check_device(device: str | None) -> None:
    """In a worker, before init(): an explicitly requested device that is absent stops the server (exit 3)
    instead of init() silently running elsewhere. Runs after fork: CUDA must not be initialised in the master."""
    if not device or device in ("auto", "cpu"):
        return
    from openscore.accelerators.devices import resolve_device
    resolve_device(device)  # DeviceNotFoundError names the device and what the machine has


def is_nocode(s: ServerSettings) -> bool:
    """True when the server answers from a --model with the built-in entry script (not a user's score.py)."""
    return bool(s.model) and s.entry_script is not None and str(s.entry_script_path()) == NOCODE_SCRIPT


def load_configured_model() -> Any:
    """In a worker: the model of --model on --device behind the dynamic batcher (from the exported environment)."""
    from openscore.accelerators import load_model

    path = os.environ[ENV_MODEL]
    threads = os.environ.get(ENV_INTRA_OP_THREADS)
    model = load_model(path, os.environ.get(ENV_DEVICE) or "auto",
                       max_batch_size=int(os.environ.get(ENV_MAX_BATCH_SIZE, "32")),
                       max_queue_delay_ms=float(os.environ.get(ENV_MAX_QUEUE_DELAY_MS, "0")),
                       backend_options={"intra_op_num_threads": int(threads)} if threads else None)
    d = model.describe()
    log.info("Model %s loaded from %s on %s (%s); inputs %s; outputs %s; max batch size %d", d["name"], path,
             d["device"], ", ".join(d["providers"]) or "-", _specs(d["inputs"]), _specs(d["outputs"]),
             d["max_batch_size"])
    return model


def _specs(specs: list[dict]) -> str:
    return ", ".join(f"{t['name']}:{t['dtype']}{t['shape']}" for t in specs)
