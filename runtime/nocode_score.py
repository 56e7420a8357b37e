"""The built-in entry script of `openscore serve --model model.onnx` (Azure's no-code deployment).

init() loads the model named by OPENSCORE_MODEL on OPENSCORE_DEVICE behind the dynamic batcher. run() takes
`{"data": X}`, where X is a (nested) list for a one-input model, a list in input order for several inputs,
or an object of input name -> list; it answers an object of output name -> (nested) list. The model is also
published as `v2_model`, which the server's Open Inference Protocol routes serve.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import orjson
from werkzeug.wrappers import Response

from openscore.accelerators import InvalidInputError, Model, QueueFullError, QueueTimeoutError, load_model
from openscore.runtime.run_threads import FAST_RUN_S  # a model this fast runs on the loop thread: no handoff

log = logging.getLogger("openscore.worker")
v2_model: Model | None = None


def init() -> None:
    global v2_model
    path = os.environ["OPENSCORE_MODEL"]
    threads = os.environ.get("OPENSCORE_INTRA_OP_THREADS")
    v2_model = load_model(path, os.environ.get("OPENSCORE_DEVICE") or "auto",
                          max_batch_size=int(os.environ.get("OPENSCORE_MAX_BATCH_SIZE", "32")),
                          max_queue_delay_ms=float(os.environ.get("OPENSCORE_MAX_QUEUE_DELAY_MS", "0")),
                          backend_options={"intra_op_num_threads": int(threads)} if threads else None)
    d = v2_model.describe()
    log.info("Model %s loaded from %s on %s (%s); inputs %s; outputs %s; max batch size %d", d["name"], path,
             d["device"], ", ".join(d["providers"]) or "-", _specs(d["inputs"]), _specs(d["outputs"]),
             d["max_batch_size"])


def _specs(specs: list[dict]) -> str:
    return ", ".join(f"{t['name']}:{t['dtype']}{t['shape']}" for t in specs)


def _error(status: int, message: str) -> Response:
    return Response(orjson.dumps({"message": message}), status=status, content_type="application/json")


async def run(raw_data: str) -> Any:
    assert v2_model is not None
    try:
        doc = orjson.loads(raw_data)
    except orjson.JSONDecodeError as e:
        return _error(400, f"The request body is not valid JSON: {e}")
    if not isinstance(doc, dict) or "data" not in doc:
        names = ", ".join(t.name for t in v2_model.inputs)
        return _error(400, 'Expected a JSON object {"data": ...}: a list for a one-input model, a list in input '
                           f"order, or an object of input name -> list (inputs: {names}).")
    try:
        outputs = await v2_model.predict_async(doc["data"], inline_below_s=FAST_RUN_S)
    except InvalidInputError as e:
        return _error(400, f"Invalid input: {e}")
    except (QueueFullError, QueueTimeoutError) as e:
        return _error(503, str(e))
    return {name: arr.tolist() for name, arr in outputs.items()}
