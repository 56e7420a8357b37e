"""The workspace folder: its database (WAL, migrations, concurrent use), how it is found, and the clear
error for a folder it cannot write."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from openscore.deployer import schema
from openscore.deployer.errors import DeployError, NotFoundError
from openscore.deployer.workspace import Workspace, find_config


def test_a_new_workspace_has_its_database_in_wal_mode_at_the_latest_schema(tmp_path):
    ws = Workspace(tmp_path / "new" / "ws")
    assert (ws.root / "workspace.db").is_file()
    db = ws.db()
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == schema.LATEST
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"models", "environments", "services", "service_models", "operations", "snapshots"} <= tables


def test_a_version_1_workspace_is_migrated_and_keeps_its_models(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    conn = sqlite3.connect(root / "workspace.db", isolation_level=None)
    conn.executescript(schema.MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO models (name, version, digest, file_name, is_dir, size, created) "
                 "VALUES ('m', 1, ?, 'model.pkl', 0, 3, 0)", ("a" * 64,))
    conn.close()

    ws = Workspace(root)
    db = ws.db()
    assert db.execute("PRAGMA user_version").fetchone()[0] == schema.LATEST
    assert [r["name"] for r in db.execute("SELECT name FROM models")] == ["m"]
    db.execute("INSERT INTO service_models VALUES ('svc', 'm', 1)")  # the tables migration 2 added are there
    assert ws.models.get("m").file_name == "model.pkl"


def test_a_workspace_from_a_newer_openscore_is_refused_untouched(tmp_path):
    root = tmp_path / "future"
    root.mkdir()
    conn = sqlite3.connect(root / "workspace.db", isolation_level=None)
    conn.execute(f"PRAGMA user_version = {schema.LATEST + 1}")
    conn.close()
    with pytest.raises(DeployError, match="newer than this openscore"):
        Workspace(root)
    conn = sqlite3.connect(root / "workspace.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.LATEST + 1
    assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    conn.close()


def test_two_processes_opening_an_old_workspace_migrate_it_once(tmp_path):
    root = tmp_path / "old"
    root.mkdir()
    conn = sqlite3.connect(root / "workspace.db", isolation_level=None)
    conn.executescript(schema.MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    code = f"from openscore.deployer.workspace import Workspace; Workspace({str(root)!r}); print('ok')"
    from subprocess import PIPE, Popen
    procs = [Popen([sys.executable, "-c", code], stdout=PIPE, stderr=PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert Workspace(root).db().execute("PRAGMA user_version").fetchone()[0] == schema.LATEST


def test_each_thread_gets_its_own_connection(ws):
    seen: list[object] = []

    def work():
        seen.append(ws.db())
        with ws.transaction() as db:
            db.execute("INSERT INTO operations VALUES (?, 'deploy', 1, 0)", (threading.current_thread().name,))

    threads = [threading.Thread(target=work, name=f"t{i}") for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 4
    assert ws.db().execute("SELECT count(*) FROM operations").fetchone()[0] == 4


def test_a_failed_transaction_writes_nothing(ws):
    with pytest.raises(RuntimeError), ws.transaction() as db:
        db.execute("INSERT INTO operations VALUES ('svc', 'deploy', 1, 0)")
        raise RuntimeError("boom")
    assert ws.db().execute("SELECT count(*) FROM operations").fetchone()[0] == 0


# ------------------------------------------------------------------------------------------- unwritable
def _readonly_open(run_python, folder: Path) -> tuple[int, str]:
    """Open `folder` as a workspace where the file modes apply (as nobody when the tests run as root)."""
    code = ("import sys\nfrom openscore.deployer.errors import DeployError\n"
            "from openscore.deployer.workspace import Workspace\n"
            f"try:\n    Workspace({str(folder)!r})\nexcept DeployError as e:\n    print(e); sys.exit(7)\n")
    proc = run_python(code, modes_apply=True)
    return proc.returncode, proc.stdout + proc.stderr


def test_a_read_only_folder_is_a_clear_error_naming_it(tmp_path, run_python, make_read_only):
    folder = tmp_path / "ro"
    folder.mkdir()
    make_read_only(folder)
    rc, out = _readonly_open(run_python, folder)
    assert rc == 7, out
    assert str(folder) in out and "not writable" in out
    assert list(folder.iterdir()) == []  # nothing was left behind


def test_an_existing_workspace_on_a_read_only_folder_is_a_clear_error(tmp_path, write, run_python, make_read_only):
    folder = tmp_path / "ws"
    ws = Workspace(folder)
    write(tmp_path / "m.bin", b"model")
    ws.models.register("m", tmp_path / "m.bin")
    ws.close()
    make_read_only(folder)
    before = sorted((p.name, p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    rc, out = _readonly_open(run_python, folder)
    assert rc == 7, out
    assert str(folder) in out
    assert sorted((p.name, p.stat().st_size) for p in folder.rglob("*") if p.is_file()) == before


def test_a_workspace_path_that_is_a_file_is_refused(tmp_path, write):
    write(tmp_path / "afile", "x")
    with pytest.raises(DeployError, match="not a folder"):
        Workspace(tmp_path / "afile")


# --------------------------------------------------------------------------------------------- finding
def test_find_explicit_wins_over_everything(isolated, monkeypatch, write):
    monkeypatch.setenv("OPENSCORE_WORKSPACE", str(isolated / "from-env"))
    write(isolated / "config.json", json.dumps({"workspace_name": "w"}))
    assert Workspace.find(isolated / "explicit").root == isolated / "explicit"


def test_find_environment_variable_wins_over_config_json(isolated, monkeypatch, write):
    monkeypatch.setenv("OPENSCORE_WORKSPACE", str(isolated / "from-env"))
    write(isolated / "config.json", json.dumps({"workspace_name": "w"}))
    assert Workspace.find().root == isolated / "from-env"


def test_find_config_json_in_cwd_puts_the_workspace_beside_it(isolated, write):
    write(isolated / "config.json", json.dumps({"subscription_id": "s", "resource_group": "r",
                                                 "workspace_name": "w"}))
    assert Workspace.find().root == isolated / ".openscore"


def test_find_config_json_in_a_parent_folder(isolated, monkeypatch, write):
    write(isolated / "config.json", json.dumps({"workspace_name": "w"}))
    deep = isolated / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert Workspace.find().root == isolated / ".openscore"


def test_find_dot_azureml_config_json_and_its_workspace_key(isolated, write):
    write(isolated / ".azureml" / "config.json", json.dumps({"workspace_name": "w",
                                                              "openscoreWorkspace": "state/ws"}))
    write(isolated / "config.json", json.dumps({"workspace_name": "other"}))  # .azureml/ is looked at first
    assert find_config() == isolated / ".azureml" / "config.json"
    assert Workspace.find().root == isolated / "state" / "ws"


def test_find_passes_over_a_config_json_that_is_not_azures(isolated, write):
    write(isolated / "config.json", json.dumps({"eslint": True}))
    assert find_config() is None
    assert Workspace.find().root == Path(os.environ["HOME"]) / ".openscore"


def test_find_defaults_to_the_home_folder(isolated):
    ws = Workspace.find()
    assert ws.root == Path(os.environ["HOME"]) / ".openscore"
    assert (ws.root / "workspace.db").is_file()


def test_find_start_folder_is_searched_instead_of_cwd(isolated, write):
    project = isolated / "project"
    write(project / "config.json", json.dumps({"workspace_name": "w"}))
    assert Workspace.find(start=project / "sub").root == project / ".openscore"


def test_find_without_create_reports_a_missing_workspace(isolated):
    with pytest.raises(NotFoundError, match="does not exist"):
        Workspace.find(isolated / "nowhere", create=False)
    assert not (isolated / "nowhere").exists()


def test_a_bad_workspace_key_in_config_json_is_named(isolated, write):
    write(isolated / "config.json", json.dumps({"workspace_name": "w", "openscoreWorkspace": 3}))
    with pytest.raises(DeployError, match="openscoreWorkspace must be a folder path"):
        Workspace.find()
