"""The model registry against a real workspace: versions, content-addressed storage, folders, tags and
properties, download, delete, and registration from several processes at once."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time

import pytest

from openscore.deployer.errors import ConflictError, DeployError, NotFoundError
from openscore.deployer.workspace import Workspace


@pytest.fixture
def model_file(tmp_path, write):
    return write(tmp_path / "src" / "sklearn_regression_model.pkl", b"pickled-bytes" * 100)


@pytest.fixture
def model_folder(tmp_path, write):
    root = tmp_path / "src" / "mnist"
    write(root / "model.onnx", b"onnx" * 50)
    write(root / "labels" / "classes.txt", "zero\none\n")
    write(root / "run.sh", "#!/bin/sh\n").chmod(0o755)
    (root / "empty").mkdir()
    return root


def test_each_registration_of_a_name_is_its_next_version(ws, model_file):
    assert [ws.models.register("m", model_file).version for _ in range(3)] == [1, 2, 3]
    assert ws.models.register("other", model_file).version == 1
    assert ws.models.get("m").version == 3
    assert ws.models.get("m", 2).id == "m:2"
    assert ws.models.resolve("m:1").version == 1
    assert ws.models.resolve("m").version == 3
    assert [r.id for r in ws.models.list()] == ["m:1", "m:2", "m:3", "other:1"]
    assert [r.id for r in ws.models.list(latest=True)] == ["m:3", "other:1"]
    assert [r.id for r in ws.models.list("other")] == ["other:1"]


def test_the_same_bytes_are_stored_once(ws, model_file, tmp_path, write):
    copy = write(tmp_path / "elsewhere" / "copy.pkl", model_file.read_bytes())
    a, b, c = ws.models.register("a", model_file), ws.models.register("a", copy), ws.models.register("b", model_file)
    assert a.digest == b.digest == c.digest
    assert ws.artifacts.digests() == [a.digest]
    ws.models.register("a", write(tmp_path / "changed.pkl", b"other bytes"))
    assert len(ws.artifacts.digests()) == 2
    assert not list((ws.artifacts_dir / "tmp").iterdir())  # no temporary files left


def test_a_folder_model_round_trips_and_has_a_stable_digest(ws, model_folder, tmp_path):
    rec = ws.models.register("mnist", model_folder)
    assert rec.is_dir and rec.file_name == "mnist"
    assert rec.size == 200 + len("zero\none\n") + len("#!/bin/sh\n")
    os.utime(model_folder / "model.onnx", (1, 1))  # times are not content
    assert ws.models.register("mnist", model_folder).digest == rec.digest
    out = ws.models.materialize(rec, tmp_path / "out")
    assert out == tmp_path / "out" / "mnist"
    assert (out / "model.onnx").read_bytes() == b"onnx" * 50
    assert (out / "labels" / "classes.txt").read_text() == "zero\none\n"
    assert (out / "empty").is_dir()
    assert os.stat(out / "run.sh").st_mode & stat.S_IXUSR
    (model_folder / "labels" / "classes.txt").write_text("changed")
    assert ws.models.register("mnist", model_folder).digest != rec.digest


def test_a_registered_model_does_not_change_when_its_source_does(ws, model_file, tmp_path):
    rec = ws.models.register("m", model_file)
    model_file.write_bytes(b"retrained")
    assert ws.models.download("m", 1, tmp_path / "dl").read_bytes() == b"pickled-bytes" * 100
    assert not os.stat(ws.artifacts.path(rec.digest)).st_mode & 0o222  # the blob itself is read-only
    assert ws.models.register("m", model_file).version == 2  # a change is a new version


def test_tags_and_properties(ws, model_file):
    ws.models.register("m", model_file, tags={"area": "diabetes", "stage": "dev"}, properties={"auc": "0.9"},
                       description="first", model_framework="ScikitLearn", model_framework_version="1.3")
    ws.models.register("m", model_file, tags={"area": "iris"})
    assert [r.id for r in ws.models.list(tags=["area=diabetes"])] == ["m:1"]
    assert [r.id for r in ws.models.list(tags=["area"])] == ["m:1", "m:2"]
    assert [r.id for r in ws.models.list(tags={"stage": None}, properties=[("auc", "0.9")])] == ["m:1"]
    assert ws.models.list(properties=["auc=0.5"]) == []

    rec = ws.models.update("m", 1, add_tags={"stage": "prod"}, remove_tags=["area"], add_properties={"f1": "0.8"},
                           description="promoted")
    assert rec.tags == {"stage": "prod"}
    assert rec.properties == {"auc": "0.9", "f1": "0.8"}
    assert rec.description == "promoted"
    assert ws.models.get("m", 1).to_json()["framework"] == "ScikitLearn"
    with pytest.raises(ConflictError, match="properties cannot be changed"):
        ws.models.update("m", 1, add_properties={"auc": "0.99"})
    with pytest.raises(NotFoundError, match="no tag 'nope'"):
        ws.models.update("m", 1, remove_tags=["nope"])
    assert ws.models.get("m", 1).properties["auc"] == "0.9"  # the refused update changed nothing


def test_to_json_has_azures_keys(ws, model_file):
    doc = ws.models.register("m", model_file, tags={"k": "v"}).to_json()
    assert {"name", "version", "id", "tags", "properties", "description", "createdTime", "framework",
            "frameworkVersion"} <= set(doc)
    assert doc["id"] == "m:1" and doc["framework"] == "Custom"


def test_download(ws, model_file, model_folder, tmp_path):
    ws.models.register("m", model_file)
    target = tmp_path / "dl"
    path = ws.models.download("m", None, target)
    assert path == target / "sklearn_regression_model.pkl" and path.read_bytes() == model_file.read_bytes()
    with pytest.raises(ConflictError, match="already exists"):
        ws.models.download("m", 1, target)
    path.write_bytes(b"stale")
    ws.models.download("m", 1, target, exist_ok=True)
    assert path.read_bytes() == model_file.read_bytes()
    ws.models.register("mnist", model_folder)
    assert (ws.models.download("mnist", 1, target) / "labels" / "classes.txt").is_file()


def test_unknown_models_and_bad_input_are_named(ws, model_file, tmp_path):
    ws.models.register("m", model_file)
    ws.models.register("m", model_file)
    with pytest.raises(NotFoundError, match=r"model 'm' has no version 7 \(registered versions: 1, 2\)"):
        ws.models.get("m", 7)
    with pytest.raises(NotFoundError, match="no model named 'nope'"):
        ws.models.resolve("nope:1")
    with pytest.raises(DeployError, match="NAME:VERSION"):
        ws.models.resolve("m:latest")
    with pytest.raises(DeployError, match="not valid"):
        ws.models.register("-bad name", model_file)
    with pytest.raises(DeployError, match="not valid"):
        ws.models.register("x" * 256, model_file)
    with pytest.raises(NotFoundError, match="does not exist"):
        ws.models.register("m", tmp_path / "missing.pkl")
    assert [r.version for r in ws.models.list("m")] == [1, 2]  # refused registrations left nothing


def test_a_folder_link_inside_a_model_folder_is_refused(ws, model_folder, tmp_path):
    (model_folder / "loop").symlink_to(model_folder)
    with pytest.raises(DeployError, match="symlink to a folder"):
        ws.models.register("mnist", model_folder)
    assert ws.models.list() == []


def test_deleting_a_model_a_service_uses_is_refused_naming_it(ws, model_file):
    ws.models.register("m", model_file)
    rec = ws.models.register("m", model_file)
    with ws.transaction() as db:
        db.execute("INSERT INTO service_models VALUES ('myservice', 'm', 2)")
    with pytest.raises(ConflictError, match="used by service myservice"):
        ws.models.delete("m", 2)
    assert ws.models.get("m", 2) == rec
    ws.models.delete("m", 1)  # version 1 is not used: it goes, its blob stays (version 2 has the same bytes)
    assert ws.artifacts.exists(rec.digest)
    with ws.transaction() as db:
        db.execute("DELETE FROM service_models")
    ws.models.delete("m", 2)
    assert ws.models.list() == []
    assert not ws.artifacts.exists(rec.digest)  # the last user gone, the bytes go too
    with pytest.raises(NotFoundError):
        ws.models.delete("m", 2)


REGISTER_MANY = """
import sys
from pathlib import Path
from openscore.deployer.workspace import Workspace
ws = Workspace(sys.argv[1])
path = Path(sys.argv[2])
sys.stdin.readline()  # start together
start = __import__('time').monotonic()
versions = [ws.models.register("shared", path).version for _ in range(int(sys.argv[3]))]
print(' '.join(map(str, versions)))
print(f'{(__import__("time").monotonic() - start) / len(versions) * 1000:.1f}', file=sys.stderr)
"""


def test_concurrent_registrations_from_two_processes_get_distinct_versions(ws, model_file):
    n = 15
    procs = [subprocess.Popen([sys.executable, "-c", REGISTER_MANY, str(ws.root), str(model_file), str(n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    time.sleep(0.5)  # both interpreters up
    outs = [p.communicate("go\n", timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    got = [int(v) for out, _ in outs for v in out.split()]
    assert sorted(got) == list(range(1, 2 * n + 1))
    assert all("locked" not in err for _, err in outs)
    print(f"register: {', '.join(err.strip() for _, err in outs)} ms per registration (two processes at once)")
    assert [r.version for r in Workspace(ws.root).models.list("shared")] == list(range(1, 2 * n + 1))


def test_an_unreadable_model_file_is_named_and_registers_nothing(ws, model_file, run_python):
    model_file.chmod(0o000)
    code = ("import sys\nfrom openscore.deployer.errors import DeployError\n"
            "from openscore.deployer.workspace import Workspace\n"
            f"try:\n    Workspace({str(ws.root)!r}).models.register('m', {str(model_file)!r})\n"
            "except DeployError as e:\n    print(e); sys.exit(7)\n")
    proc = run_python(code, modes_apply=True)
    model_file.chmod(0o644)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "Permission denied" in proc.stdout and str(model_file) in proc.stdout
    assert ws.models.list() == [] and ws.artifacts.digests() == []
    assert list((ws.artifacts_dir / "tmp").iterdir()) == []
