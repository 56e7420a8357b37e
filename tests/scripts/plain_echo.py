"""Plain (undecorated) run(): returns what Azure scripts typically return, chosen by the input."""
import json
import os

import numpy as np


def init():
    global model_dir
    model_dir = os.getenv("AZUREML_MODEL_DIR")
    print("init done, cwd", os.getcwd())


def run(raw_data, request_headers):
    if raw_data == "":
        return {"empty": True}
    try:
        data = json.loads(raw_data)
    except ValueError:
        return {"raw": raw_data}
    if not isinstance(data, dict):
        return {"value": data}
    what = data.get("return")
    if what == "str":
        return "New Model A"
    if what == "json_str":
        return json.dumps({"ok": True})
    if what == "none":
        return None
    if what == "unicode":
        return {"text": "é"}
    if what == "numpy":
        return np.arange(3)
    if what == "error_string":
        try:
            raise ValueError("bad thing")
        except ValueError as e:
            return str(e)
    if what == "raise":
        raise RuntimeError("boom")
    if what == "headers":
        return request_headers
    if what == "env":
        return {"model_dir": model_dir, "cwd": os.getcwd(), "app_root": os.getenv("AML_APP_ROOT")}
    if what == "print":
        print("hello from run")
        return {"printed": True}
    return {"echo": data}
