"""`--model` and `--device`: no-code ONNX serving defaults, the environment the built-in entry script and
`accelerators.current_device()` read in every worker, and the start-up check of an explicit device.

The model is loaded into the data plane's registry in place of init(); /score and the Open Inference Protocol
answer from there through the same data plane as a user's score.py (slots, timeouts, headers, metrics, logs).
runtime/nocode_score.py is the entry script it stands on.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from openscore.runtime.settings import ENV_MODEL, NOCODE_SCRIPT, ServerSettings

log = logging.getLogger("openscore.worker")

ENV_DEVICE = "OPENSCORE_DEVICE"
ENV_MAX_BATCH_SIZE = "OPENSCORE_MAX_BATCH_SIZE"
ENV_MAX_QUEUE_DELAY_MS = "OPENSCORE_MAX_QUEUE_DELAY_MS"
ENV_INTRA_OP_THREADS = "OPENSCORE_INTRA_OP_THREADS"


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
