"""Helpers for the SDK's tests: a project folder as Azure's docs assume one (config.json, the sklearn model,
src/score.py), its workspace in `.openscore/` beside config.json, and `openscore azureml run` as a real process.
(conftest.py stops every router a test's workspace started, by its recorded pid.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from openscore.deployer.local_router import LocalRouter
from tests.deployer.deploykit import SCORE_PY, make_model, write_json, write_script

SNIPPETS = Path(__file__).resolve().parent / "snippets"
CONFIG = {"subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "myresourcegroup",
          "workspace_name": "myworkspace"}


class Project:
    """A folder with config.json, sklearn_regression_model.pkl and src/score.py; its workspace is `.openscore/`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root.parent / "home"
        self.home.mkdir(exist_ok=True)
        write_json(root / "config.json", CONFIG)
        make_model(root / "sklearn_regression_model.pkl")
        write_script(root / "src", "score.py", SCORE_PY)

    @property
    def workspace(self) -> Path:
        return self.root / ".openscore"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AZUREML_", "AML_", "OPENSCORE_", "PYTHONPATH"))}
        env.update(HOME=str(self.home), PYTHONUNBUFFERED="1", **extra)
        return env

    def azureml_run(self, script: str | Path, *args: str, timeout: float = 180.0,
                    **env: str) -> subprocess.CompletedProcess[str]:
        """`openscore azureml run SCRIPT ARGS` in the project folder."""
        return subprocess.run([sys.executable, "-m", "openscore", "azureml", "run", str(script), *args],
                              cwd=self.root, env=self.env(**env), capture_output=True, text=True, timeout=timeout)

    def router(self) -> LocalRouter:
        return LocalRouter(self.workspace)


def lines_after(text: str, prefix: str) -> str:
    """What follows `prefix` on the first output line starting with it."""
    for line in text.splitlines():
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise AssertionError(f"no line starting with {prefix!r} in:\n{text}")


def config_json() -> str:
    return json.dumps(CONFIG)
