"""`openscore model register/list/show/download/update/delete` as real processes on a real workspace: a file
and a folder, versions 1, 2 per name, the same bytes stored once, tags/properties/description, JSON and table
output, downloads byte for byte, and a registered version that never changes."""

from __future__ import annotations

import filecmp
import json
import sqlite3
from pathlib import Path

import deploykit as kit
import pytest


@pytest.fixture
def site(tmp_path):
    src = tmp_path / "src"
    (src / "folder" / "sub").mkdir(parents=True)
    (src / "weights.bin").write_bytes(bytes(range(256)) * 64)
    (src / "folder" / "model.onnx").write_bytes(b"onnx-bytes" * 100)
    (src / "folder" / "sub" / "vocab.txt").write_text("a\nb\nc\n")
    return {"ws": tmp_path / "ws", "src": src, "tmp": tmp_path}


def _blobs(ws: Path) -> list[Path]:
    return sorted(p for p in (ws / "artifacts" / "sha256").rglob("*") if p.is_file())


def _ok(site, *args: str) -> str:
    r = kit.cli(site["ws"], *args, cwd=site["src"])
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _json(site, *args: str):
    return json.loads(_ok(site, *args))


def _bad(site, *args: str) -> str:
    before = kit.dump(site["ws"])
    r = kit.cli(site["ws"], *args, cwd=site["src"])
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert kit.dump(site["ws"]) == before
    return r.stderr


def test_register_a_file_and_a_folder_as_versions_stored_once(site):
    ws = site["ws"]
    one = _json(site, "model", "register", "-n", "weights", "-p", "weights.bin", "--tag", "stage=dev",
                "--property", "auc=0.91", "-d", "first weights", "--model-framework", "Onnx")
    assert (one["name"], one["version"], one["id"]) == ("weights", 1, "weights:1")
    assert one["tags"] == {"stage": "dev"} and one["properties"] == {"auc": "0.91"}
    assert one["description"] == "first weights" and one["framework"] == "Onnx"
    assert one["fileName"] == "weights.bin" and one["isFolder"] is False and one["size"] == 256 * 64
    assert len(_blobs(ws)) == 1
    two = _json(site, "model", "register", "-n", "weights", "-p", "weights.bin")
    assert two["version"] == 2 and two["digest"] == one["digest"]
    assert len(_blobs(ws)) == 1  # the same bytes, stored once
    f1 = _json(site, "model", "register", "-n", "bundle", "-p", "folder")
    f2 = _json(site, "model", "register", "-n", "bundle", "-p", "folder")
    assert (f1["version"], f2["version"]) == (1, 2) and f1["isFolder"] is True and f1["digest"] == f2["digest"]
    assert len(_blobs(ws)) == 2
    (site["src"] / "folder" / "sub" / "vocab.txt").write_text("a\nb\nc\nd\n")
    f3 = _json(site, "model", "register", "-n", "bundle", "-p", "folder")
    assert f3["version"] == 3 and f3["digest"] != f1["digest"] and len(_blobs(ws)) == 3


def test_list_show_and_their_json_and_table(site):
    _ok(site, "model", "register", "-n", "weights", "-p", "weights.bin", "--tag", "stage=dev")
    _ok(site, "model", "register", "-n", "weights", "-p", "weights.bin", "--tag", "stage=prod")
    _ok(site, "model", "register", "-n", "bundle", "-p", "folder")
    listed = _json(site, "model", "list")
    assert sorted(m["id"] for m in listed) == ["bundle:1", "weights:1", "weights:2"]
    assert [m["id"] for m in _json(site, "model", "list", "-n", "weights", "--latest")] == ["weights:2"]
    assert [m["id"] for m in _json(site, "model", "list", "--tag", "stage=dev")] == ["weights:1"]
    assert sorted(m["id"] for m in _json(site, "model", "list", "--tag", "stage")) == ["weights:1", "weights:2"]
    assert _json(site, "model", "show", "-n", "weights")["version"] == 2            # the latest
    assert _json(site, "model", "show", "-n", "weights", "-v", "1")["tags"] == {"stage": "dev"}
    assert _json(site, "model", "show", "-i", "weights:1", "-o", "json")["id"] == "weights:1"
    table = _ok(site, "model", "list", "-o", "table").splitlines()
    assert table[0].split()[:3] == ["name", "version", "framework"]
    assert set(table[1]) <= {"-", " "}
    rows = sorted(line.split()[:2] for line in table[2:])
    assert rows == [["bundle", "1"], ["weights", "1"], ["weights", "2"]]
    shown = _ok(site, "model", "show", "-i", "bundle:1", "-o", "table").splitlines()
    assert len(shown) == 3 and shown[2].split()[:2] == ["bundle", "1"]


def test_download_gives_the_registered_bytes_back(site):
    _ok(site, "model", "register", "-n", "weights", "-p", "weights.bin")
    _ok(site, "model", "register", "-n", "bundle", "-p", "folder")
    out = site["tmp"] / "out"
    path = Path(_ok(site, "model", "download", "-i", "weights:1", "-t", str(out)).strip())
    assert path == out / "weights.bin" and path.read_bytes() == (site["src"] / "weights.bin").read_bytes()
    folder = Path(_ok(site, "model", "download", "-n", "bundle", "-t", str(out)).strip())
    cmp = filecmp.dircmp(folder, site["src"] / "folder")
    assert folder == out / "folder" and not cmp.left_only and not cmp.right_only and not cmp.diff_files
    assert (folder / "sub" / "vocab.txt").read_text() == "a\nb\nc\n"
    msg = _bad(site, "model", "download", "-i", "weights:1", "-t", str(out))
    assert "already exists" in msg and "--overwrite" in msg
    _ok(site, "model", "download", "-i", "weights:1", "-t", str(out), "--overwrite")


def test_update_changes_tags_and_description_and_only_adds_properties(site):
    _ok(site, "model", "register", "-n", "weights", "-p", "weights.bin", "--tag", "stage=dev", "--tag", "team=a",
        "--property", "auc=0.91")
    up = _json(site, "model", "update", "-i", "weights:1", "--add-tag", "stage=prod", "--remove-tag", "team",
               "--add-property", "owner=me", "-d", "promoted")
    assert up["tags"] == {"stage": "prod"} and up["properties"] == {"auc": "0.91", "owner": "me"}
    assert up["description"] == "promoted"
    assert _json(site, "model", "show", "-i", "weights:1") == up
    assert "auc" in _bad(site, "model", "update", "-i", "weights:1", "--add-property", "auc=0.99")
    assert "nosuchtag" in _bad(site, "model", "update", "-i", "weights:1", "--remove-tag", "nosuchtag")
    assert "weights" in _bad(site, "model", "update", "-i", "weights:5", "--add-tag", "x=y")


def test_delete_removes_a_version_and_its_bytes_once_unused(site):
    ws = site["ws"]
    _ok(site, "model", "register", "-n", "weights", "-p", "weights.bin")
    _ok(site, "model", "register", "-n", "weights", "-p", "weights.bin")
    assert "--version" in _bad(site, "model", "delete", "-n", "weights")  # which version is not guessed
    assert _ok(site, "model", "delete", "-i", "weights:1").strip() == "Deleted model weights:1"
    assert len(_blobs(ws)) == 1  # version 2 still holds the bytes
    assert "has no version 1 (registered versions: 2)" in _bad(site, "model", "show", "-i", "weights:1")
    _ok(site, "model", "delete", "-n", "weights", "--version", "2")
    assert _blobs(ws) == [] and _json(site, "model", "list") == []
    # a deleted version's number is never given to other bytes: weights:2 keeps meaning what it meant
    again = _json(site, "model", "register", "-n", "weights", "-p", "weights.bin")
    assert again["version"] == 3 and len(_blobs(ws)) == 1


def test_a_registered_version_never_changes(site):
    ws, src = site["ws"], site["src"]
    one = _json(site, "model", "register", "-n", "weights", "-p", "weights.bin")
    original = (src / "weights.bin").read_bytes()
    (src / "weights.bin").write_bytes(b"retrained")
    (blob,) = _blobs(ws)
    assert blob.stat().st_mode & 0o222 == 0  # stored read-only
    out = site["tmp"] / "out"
    path = Path(_ok(site, "model", "download", "-i", "weights:1", "-t", str(out)).strip())
    assert path.read_bytes() == original
    two = _json(site, "model", "register", "-n", "weights", "-p", "weights.bin")
    assert two["version"] == 2 and two["digest"] != one["digest"]
    assert _json(site, "model", "show", "-i", "weights:1") == one
    # no verb rewrites a version's bytes or its stored fields
    conn = sqlite3.connect(ws / "workspace.db")
    try:
        row = conn.execute("SELECT digest, size, file_name FROM models WHERE name = 'weights' AND version = 1"
                           ).fetchone()
    finally:
        conn.close()
    assert row == (one["digest"].removeprefix("sha256:"), len(original), "weights.bin")


@pytest.mark.parametrize("args, says", [
    (("model", "register", "-p", "weights.bin"), "the following arguments are required: -n/--name"),
    (("model", "show", "-i", "weights:1", "--bogus"), "unrecognized arguments: --bogus"),
    (("model", "list", "-o", "yaml"), "invalid choice: 'yaml'"),
    (("service", "list", "extra"), "unrecognized arguments: extra"),
])
def test_a_verbs_usage_mistake_is_one_line_and_exit_1(site, args, says):
    """Not argparse's usage text and exit 2: the line names the mistake and where the help is."""
    msg = _bad(site, *args)
    assert says in msg and f"openscore {args[0]} {args[1]}: error:" in msg and "--help" in msg
