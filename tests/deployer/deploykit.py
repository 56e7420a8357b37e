"""Helpers for the lifecycle tests: the docs' journey files, the `openscore` CLI as a real process, a dump of
the workspace to compare before and after a refused command, and stopping a workspace's router by its pid."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from openscore.deployer.local_router import LocalRouter

ROOT = Path(__file__).resolve().parents[2]
ROW = [0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.020, -0.018]
DATA = {"data": [ROW]}

# Azure's sklearn sample (entry_scripts/sklearn_json) with the docs' file name; a "probe" body reports where
# the script runs, so the layout Azure promises (cwd = app root, AZUREML_MODEL_DIR) can be checked.
SCORE_PY = '''
import json
import os

import joblib
import numpy as np


def init():
    global model
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "sklearn_regression_model.pkl")
    model = joblib.load(model_path)
    print("model loaded from", model_path)


def run(raw_data):
    doc = json.loads(raw_data)
    if "probe" in doc:
        return {"modelDir": os.getenv("AZUREML_MODEL_DIR"), "cwd": os.getcwd(),
                "files": sorted(os.path.relpath(os.path.join(d, f)) for d, _, fs in os.walk("azureml-models")
                                for f in fs),
                "version": os.getenv("SERVICE_VERSION")}
    return model.predict(np.array(doc["data"])).tolist()
'''

ECHO_PY = '''
import json
import os
import time

INIT_S = float(os.environ.get("ECHO_INIT_S", "0"))


def init():
    time.sleep(INIT_S)


def run(raw_data):
    return {"echo": json.loads(raw_data), "version": os.getenv("SERVICE_VERSION"),
            "modelDir": os.getenv("AZUREML_MODEL_DIR"), "cwd": os.getcwd(),
            "files": sorted(os.path.relpath(os.path.join(d, f)) for d, _, fs in os.walk("azureml-models")
                            for f in fs)}
'''

FAILING_PY = '''
def init():
    print("loading the model before failing")
    raise ValueError("fault_init_error: model could not be loaded")


def run(data):
    return data
'''

DOCS_DEPLOYMENT_CONFIG = {
    "computeType": "aks",
    "autoScaler": {"autoscaleEnabled": True, "minReplicas": 1, "maxReplicas": 3, "refreshPeriodInSeconds": 1,
                   "targetUtilization": 70},
    "dataCollection": {"storageEnabled": True}, "authEnabled": True,
    "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 1.0},
}


def make_model(path: Path) -> Path:
    """The sklearn sample's Ridge regression, saved with joblib as the docs' file name."""
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    x, y = load_diabetes(return_X_y=True)
    joblib.dump(Ridge(alpha=0.5).fit(x, y), path)
    return path


def journey(folder: Path) -> Path:
    """The docs' files in `folder`: sklearn_regression_model.pkl, src/score.py, inferenceconfig.json,
    deploymentconfig.json, data.json."""
    folder.mkdir(parents=True, exist_ok=True)
    make_model(folder / "sklearn_regression_model.pkl")
    write_script(folder / "src", "score.py", SCORE_PY)
    write_json(folder / "inferenceconfig.json", {"entryScript": "score.py", "sourceDirectory": "src"})
    write_json(folder / "deploymentconfig.json", DOCS_DEPLOYMENT_CONFIG)
    write_json(folder / "data.json", DATA)
    return folder


def write_script(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / name
    p.write_text(textwrap.dedent(text).lstrip())
    return p


def write_json(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    return path


def env_for(ws_root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZUREML_", "AML_", "OPENSCORE_"))}
    env["OPENSCORE_WORKSPACE"] = str(ws_root)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def cli(ws_root: Path, *args: str, cwd: Path | None = None, timeout: float = 120.0,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`openscore ARGS` as a real process on the workspace."""
    return subprocess.run([sys.executable, "-m", "openscore", *args], cwd=cwd or ws_root.parent,
                          env=env or env_for(ws_root), capture_output=True, text=True, timeout=timeout)


def cli_json(ws_root: Path, *args: str, cwd: Path | None = None) -> Any:
    r = cli(ws_root, *args, cwd=cwd)
    assert r.returncode == 0, f"openscore {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout)


def last_json(text: str) -> Any:
    """The JSON document that ends a command's output (after its progress lines)."""
    start = text.index("\n{") + 1 if not text.startswith("{") else 0
    return json.loads(text[start:])


def dump(ws_root: Path) -> tuple[list[str], list[str]]:
    """Everything a refused command must leave as it was: the database's rows and the stored files."""
    db = ws_root / "workspace.db"
    rows: list[str] = []
    if db.exists():
        conn = sqlite3.connect(db)
        try:
            rows = list(conn.iterdump())
        finally:
            conn.close()
    files = sorted(str(p.relative_to(ws_root)) for sub in ("artifacts", "deployments", "envs")
                   for p in (ws_root / sub).rglob("*") if (ws_root / sub).exists())
    return rows, files


def stop_router(ws_root: Path) -> None:
    """Stop the router the workspace started (SIGTERM by its recorded pid; it stops its replicas)."""
    LocalRouter(ws_root).stop()


def router_pid(ws_root: Path) -> int | None:
    rec = LocalRouter(ws_root).record()
    return rec.pid if rec else None


def score(uri: str, key: str | None, body: Any = DATA, timeout: float = 30.0) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return requests.post(uri, data=json.dumps(body), headers=headers, timeout=timeout)


def split(uri: str, key: str | None, n: int) -> Counter[str]:
    """Which version answered each of `n` requests (the router's azureml-model-deployment header)."""
    seen: Counter[str] = Counter()
    with requests.Session() as s:
        for _ in range(n):
            r = s.post(uri, data=json.dumps({"x": 1}), timeout=30,
                       headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"}
                                                                       if key else {})})
            assert r.status_code == 200, r.text
            seen[r.headers["azureml-model-deployment"]] += 1
    return seen


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)
