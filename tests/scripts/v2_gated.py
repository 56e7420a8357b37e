"""An entry script whose init() and run() wait for files the test creates, and which publishes a model for the
Open Inference Protocol as `v2_model` (so V2 and /score share one server's slots).

FAULT_DIR: the test's folder. init() writes `init-started`, then waits (at most 30 s) for `release-init` unless
GATE_INIT is unset; it loads V2_MODEL_PATH as `v2_model`. run() writes `run-started` and waits for `release-run`.
"""

import os
import time

from openscore.accelerators import load_model

v2_model = None


def _wait(name):
    path = os.path.join(os.environ["FAULT_DIR"], name)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not os.path.exists(path):
        time.sleep(0.02)


def init():
    global v2_model
    open(os.path.join(os.environ["FAULT_DIR"], "init-started"), "w").close()
    if os.environ.get("GATE_INIT"):
        _wait("release-init")
    v2_model = load_model(os.environ["V2_MODEL_PATH"], "cpu")


def run(data):
    open(os.path.join(os.environ["FAULT_DIR"], "run-started"), "w").close()
    _wait("release-run")
    return {"ok": True}
