"""Fixtures that start real `python -m openscore router` processes (which start real replicas) on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routerkit import RouterStarter


@pytest.fixture
def start_router(tmp_path):
    starter = RouterStarter(tmp_path)
    yield starter
    leftovers = starter.stop_all()
    assert not leftovers, f"replica processes survived the router: {leftovers}"


@pytest.fixture(scope="module")
def module_router(tmp_path_factory):
    starter = RouterStarter(tmp_path_factory.mktemp("router"))
    yield starter
    leftovers = starter.stop_all()
    assert not leftovers, f"replica processes survived the router: {leftovers}"
