"""`model deploy --rebuild` under a service still running from the environment: the rebuild goes to a new
folder and new services switch to it, while the running one keeps its interpreter and its packages' files
(on the previous commit the rebuild deleted them and rebuilt in place)."""

from __future__ import annotations

from pathlib import Path

import deploykit as kit
import pytest

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

WHERE_PY = '''
import sys


def init():
    pass


def run(raw_data):
    import six  # imported per request: a replica whose venv vanished fails here
    return {"prefix": sys.prefix, "six": six.__file__}
'''


def test_a_rebuild_leaves_the_running_service_its_interpreter(tmp_path):
    folder = tmp_path
    ws = folder / "ws"
    kit.write_script(folder / "src", "score.py", WHERE_PY)
    kit.write_json(folder / "ic.json", {"entryScript": "score.py", "sourceDirectory": "src", "environment": {
        "name": "withsix", "python": {"condaDependencies": {"dependencies": ["python=3.11", {"pip": ["six"]}]}}}})
    try:
        first = kit.cli(ws, "model", "deploy", "-n", "oldsvc", "--ic", "ic.json", cwd=folder, timeout=240)
        assert first.returncode == 0, first.stdout + first.stderr
        old = kit.cli_json(ws, "service", "run", "-n", "oldsvc", "-d", "{}")
        old_marker = (Path(old["prefix"]) / "openscore-env.json").read_text()

        second = kit.cli(ws, "model", "deploy", "-n", "newsvc", "--ic", "ic.json", "--rebuild", cwd=folder,
                         timeout=240)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "building" in second.stdout
        new = kit.cli_json(ws, "service", "run", "-n", "newsvc", "-d", "{}")
        assert new["prefix"] != old["prefix"] and Path(new["six"]).is_relative_to(new["prefix"])

        again = kit.cli_json(ws, "service", "run", "-n", "oldsvc", "-d", "{}")
        assert again == old  # the same interpreter, its own files
        assert (Path(old["prefix"]) / "openscore-env.json").read_text() == old_marker

        # a third service without --rebuild gets the new build
        third = kit.cli(ws, "model", "deploy", "-n", "thirdsvc", "--ic", "ic.json", cwd=folder, timeout=240)
        assert third.returncode == 0 and "reusing the built environment" in third.stdout
        assert kit.cli_json(ws, "service", "run", "-n", "thirdsvc", "-d", "{}")["prefix"] == new["prefix"]
    finally:
        kit.stop_router(ws)
