"""Source snapshots: what .amlignore / .gitignore leave out (gitignore's own rules), determinism, and
unpacking."""

from __future__ import annotations

import os

import pytest

from openscore.deployer.errors import NotFoundError
from openscore.deployer.snapshot import extract_snapshot, snapshot_files, snapshot_source


@pytest.fixture
def source(tmp_path, write):
    src = tmp_path / "source"
    write(src / "score.py", "def init(): pass\ndef run(x): return x\n")
    write(src / "utils" / "helpers.py", "X = 1\n")
    write(src / "utils" / "helpers.pyc", b"\0")
    write(src / "logs" / "a.log", "log\n")
    write(src / "keep.log", "keep\n")
    write(src / "debug.log", "noise\n")
    write(src / "data" / "big.csv", "1,2\n")
    write(src / "sub" / "data" / "nested.csv", "3,4\n")
    write(src / "top.txt", "root\n")
    write(src / "sub" / "top.txt", "nested\n")
    write(src / ".git" / "HEAD", "ref: refs/heads/main\n")
    return src


def names(src):
    return [n for n, _ in snapshot_files(src)]


def test_gitignore_rules_negation_folders_and_anchors(source, write):
    write(source / ".gitignore", "*.pyc\n*.log\n!keep.log\ndata/\n/top.txt\n")
    assert names(source) == [".gitignore", "keep.log", "score.py", "sub/top.txt", "utils/helpers.py"]


def test_amlignore_is_used_instead_of_gitignore(source, write):
    write(source / ".gitignore", "*.py\n")
    write(source / ".amlignore", "logs/\n*.log\n")
    got = names(source)
    assert "score.py" in got and "utils/helpers.py" in got  # .gitignore is not read at all
    assert not any(n.endswith(".log") for n in got)
    assert "data/big.csv" in got


def test_without_an_ignore_file_everything_but_git_is_taken(source):
    got = names(source)
    assert "utils/helpers.pyc" in got and "debug.log" in got
    assert not any(n.startswith(".git/") for n in got)


def test_a_snapshot_is_deterministic_and_changes_with_the_content(ws, source, write):
    first = snapshot_source(ws, source)
    os.utime(source / "score.py", (1, 1))
    assert snapshot_source(ws, source) == first
    write(source / "score.py", "def init(): pass\ndef run(x): return 2 * x\n")
    changed = snapshot_source(ws, source)
    assert changed.digest != first.digest
    write(source / "new.py", "")
    assert snapshot_source(ws, source).files == changed.files + 1
    assert len(ws.artifacts.digests()) == 3


def test_extract_gives_back_the_snapshotted_files(ws, source, write, tmp_path):
    write(source / ".amlignore", "data/\n")
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    snap = snapshot_source(ws, source)
    out = tmp_path / "app"
    extract_snapshot(ws, snap.digest, out)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == names(source)
    assert (out / "utils" / "helpers.py").read_text() == "X = 1\n"
    assert os.access(out / "run.sh", os.X_OK)
    assert snap.files == len(files)


def test_a_workspace_inside_the_source_folder_is_not_snapshotted(tmp_path, source):
    from openscore.deployer.workspace import Workspace
    inner = Workspace(source / ".openscore")
    snap = snapshot_source(inner, source)
    out = tmp_path / "app"
    extract_snapshot(inner, snap.digest, out)
    assert not (out / ".openscore").exists()
    inner.close()


def test_unknown_snapshots_and_missing_folders_are_named(ws, tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        snapshot_source(ws, tmp_path / "missing")
    with pytest.raises(NotFoundError, match="not in the workspace"):
        extract_snapshot(ws, "0" * 64, tmp_path / "out")
    assert not (tmp_path / "out").exists()
