"""The entry script `openscore serve --model model.onnx` stands on (Azure's no-code deployment).

The server never calls this run(): the data plane answers /score from its model registry, with the model that
`nocode.load_configured_model()` loaded in place of init(). The module gives the worker the entry-script surface
the rest of the server expects (a script to load, a run() signature for the generated swagger document).
/score takes `{"data": X}` (X a (nested) list for a one-input model, a list in input order, or an object of input
name -> list) or `{"<input name>": list, ...}`, and answers `{"<output name>": (nested) list, ...}`.
"""

from __future__ import annotations

from typing import Any


def init() -> None:
    """Nothing: the worker loads the model into the data plane's registry."""


def run(raw_data: str) -> Any:
    raise RuntimeError("no-code /score is answered by the data plane, not by this run()")
