"""Fixtures for the SDK's tests (sdkkit.py): a project folder with config.json, and its workspace; every router
a test's workspace started is stopped by its recorded pid afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sdkkit import Project


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    p = Project(tmp_path / "project")
    yield p
    if p.workspace.exists():
        p.router().stop()


@pytest.fixture
def sdk_ws(project: Project, monkeypatch: pytest.MonkeyPatch):
    """openscore.sdk's Workspace.from_config() in this process, cwd = the project folder."""
    monkeypatch.chdir(project.root)
    monkeypatch.setenv("HOME", str(project.home))
    monkeypatch.delenv("OPENSCORE_WORKSPACE", raising=False)
    from openscore.sdk import Workspace
    ws = Workspace.from_config()
    yield ws
    ws.store.close()

