"""Fixtures for the deployer's tests: a real workspace (SQLite, artifact store) in a tmp folder, and a
process environment that cannot reach the user's own workspace (~/.openscore, $OPENSCORE_WORKSPACE)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from openscore.deployer.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    """HOME and cwd in tmp_path, no $OPENSCORE_WORKSPACE: finding a workspace sees only what a test makes."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("OPENSCORE_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def ws(tmp_path) -> Iterator[Workspace]:
    w = Workspace(tmp_path / "ws")
    yield w
    w.close()


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.fixture
def write():
    """write(path, text-or-bytes) -> path, making its folders."""
    return _write


@pytest.fixture
def make_read_only() -> Iterator:
    """make_read_only(folder): take write permission off `folder` and everything in it (given back after)."""
    done: list[Path] = []

    def apply(folder: Path) -> None:
        for p in [folder, *folder.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
            done.append(p)

    yield apply
    for p in done:
        p.chmod(0o755 if p.is_dir() else 0o644)


# root ignores file modes: a child that must see them runs without the capabilities that override them
DROP_OVERRIDES = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def _run_python(code: str, *, modes_apply: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENSCORE_WORKSPACE"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    prefix: list[str] = []
    if modes_apply and os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: file modes cannot be made to apply")
        prefix = DROP_OVERRIDES
    return subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)


@pytest.fixture
def run_python():
    """run_python(code, modes_apply=False) -> CompletedProcess: a fresh interpreter of this venv; with
    modes_apply, file permissions bind it even when the tests run as root."""
    return _run_python
