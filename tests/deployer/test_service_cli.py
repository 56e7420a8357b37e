"""Bad input through the real CLI (`python -m openscore ...` on a real SQLite workspace): each mistake is one
clear line on stderr naming the problem, exit 1, no traceback, and the workspace exactly as it was (its
database rows and its stored files, compared before and after)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import deploykit as kit
import pytest

pytestmark = pytest.mark.timeout(240)

USED_MODEL = "usedmodel"
SERVICE = "usersvc"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A workspace with a registered model, an environment and one running service that uses a model, and the
    files a deploy reads (good ones, and the broken ones each test names)."""
    folder = kit.journey(tmp_path_factory.mktemp("badcli"))
    ws = folder / "ws"
    kit.write_script(folder / "echo", "score.py", kit.ECHO_PY)
    kit.write_json(folder / "echo_ic.json", {"entryScript": "score.py", "sourceDirectory": "echo"})
    assert kit.cli(ws, "model", "register", "-n", "mymodel", "-p", "sklearn_regression_model.pkl",
                   cwd=folder).returncode == 0
    assert kit.cli(ws, "model", "register", "-n", USED_MODEL, "-p", "data.json", cwd=folder).returncode == 0
    dep = kit.cli(ws, "model", "deploy", "-n", SERVICE, "-m", f"{USED_MODEL}:1", "--ic", "echo_ic.json",
                  "--ct", "local", cwd=folder)
    try:
        assert dep.returncode == 0, dep.stdout + dep.stderr
        yield {"folder": folder, "ws": ws}
    finally:
        kit.stop_router(ws)


def refused(site, *args: str, words: tuple[str, ...], env: dict[str, str] | None = None,
            prefix: list[str] | None = None) -> str:
    """Run `openscore ARGS`; assert exit 1, one line naming the problem (each of `words`), no traceback, and
    the workspace unchanged. Returns the message."""
    ws, folder = site["ws"], site["folder"]
    before = kit.dump(ws)
    if prefix:
        r = subprocess.run([*prefix, sys.executable, "-m", "openscore", *args], cwd=folder,
                           env=env or kit.env_for(ws), capture_output=True, text=True, timeout=120)
    else:
        r = kit.cli(ws, *args, cwd=folder, env=env)
    assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert kit.dump(ws) == before
    return lines[0]


def deploy(*extra: str, name: str = "newsvc", ic: str = "echo_ic.json") -> tuple[str, ...]:
    return ("model", "deploy", "-n", name, "--ic", ic, *extra)


def test_an_unknown_model_version_is_named(site):
    msg = refused(site, *deploy("-m", "mymodel:9"), words=("mymodel", "9"))
    assert "version" in msg


def test_an_unknown_model_name_is_named(site):
    refused(site, *deploy("-m", "nosuchmodel:1"), words=("nosuchmodel",))
    refused(site, *deploy("-m", "nosuchmodel"), words=("nosuchmodel",))


@pytest.mark.parametrize("name", ["ab", "a" * 33, "MyService", "1service", "my_service", "service-", "my.svc"])
def test_a_service_name_breaking_azures_rule_is_refused(site, name):
    msg = refused(site, *deploy(name=name), words=("Invalid service name",))
    assert "3" in msg and "32" in msg  # the rule is spelled out


def test_a_missing_entry_script_is_named(site):
    kit.write_json(site["folder"] / "noentry.json", {"entryScript": "nosuch.py", "sourceDirectory": "echo"})
    refused(site, *deploy(ic="noentry.json"), words=("nosuch.py", "not found"))


def test_a_source_directory_that_does_not_exist_is_named(site):
    kit.write_json(site["folder"] / "nosrc.json", {"entryScript": "score.py", "sourceDirectory": "nosuchdir"})
    refused(site, *deploy(ic="nosrc.json"), words=("nosuchdir",))


def test_an_inference_config_that_does_not_exist_is_named(site):
    refused(site, *deploy(ic="missing_ic.json"), words=("missing_ic.json",))


def test_a_conda_only_package_is_named(site):
    kit.write_json(site["folder"] / "conda_ic.json", {
        "entryScript": "score.py", "sourceDirectory": "echo",
        "environment": {"name": "condaonly", "python": {"condaDependencies": {
            "channels": ["conda-forge"], "dependencies": ["python=3.11", "cudatoolkit=11.8", {"pip": ["numpy"]}]}}}})
    refused(site, *deploy(ic="conda_ic.json"), words=("cudatoolkit",))


def test_a_deploymentconfig_with_conflicting_keys_is_refused_with_azures_rule(site):
    folder = site["folder"]
    kit.write_json(folder / "conflict.json", {"computeType": "aks", "numReplicas": 2,
                                              "autoScaler": {"autoscaleEnabled": True}})
    refused(site, *deploy("--dc", "conflict.json"), words=("numReplicas", "autoscale"))
    kit.write_json(folder / "minmax.json", {"computeType": "aks", "autoScaler": {
        "autoscaleEnabled": True, "minReplicas": 4, "maxReplicas": 2}})
    refused(site, *deploy("--dc", "minmax.json"), words=("minReplicas", "maxReplicas"))


def test_an_update_with_conflicting_keys_or_a_bad_file_changes_nothing(site):
    folder = site["folder"]
    kit.write_json(folder / "conflict_update.json", {"computeType": "aks", "numReplicas": 2,
                                                     "autoScaler": {"autoscaleEnabled": True}})
    refused(site, "service", "update", "-n", SERVICE, "--dc", "conflict_update.json",
            words=("numReplicas", "autoscale"))
    refused(site, "service", "update", "-n", SERVICE, "-m", "mymodel:9", words=("mymodel", "9"))
    refused(site, "service", "update", "-n", "nosuch", "--description", "x", words=("nosuch",))


def test_registering_an_environment_with_a_conda_only_package_is_named(site):
    kit.write_json(site["folder"] / "condaenv.json", {"name": "condaenv", "python": {"condaDependencies": {
        "dependencies": ["python=3.11", "cudatoolkit=11.8"]}}})
    refused(site, "environment", "register", "-f", "condaenv.json", words=("cudatoolkit",))
    (site["folder"] / "notenv.json").write_text("[[[")
    refused(site, "environment", "register", "-f", "notenv.json", words=("notenv.json",))


def test_a_config_file_neither_json_nor_yaml_is_named(site):
    folder = site["folder"]
    (folder / "garbage.json").write_text("{computeType: [aks\n  : : :\n\t}")
    refused(site, *deploy("--dc", "garbage.json"), words=("garbage.json", "JSON", "YAML"))
    (folder / "garbage_ic.json").write_text("entryScript: [score.py\n: :")
    refused(site, *deploy(ic="garbage_ic.json"), words=("garbage_ic.json",))


def test_a_compute_target_that_does_not_exist_lists_the_attached_ones(site):
    refused(site, *deploy("--ct", "myaks"), words=("myaks", "attached targets: local"))
    refused(site, *deploy("-ct", "myaks"), words=("myaks", "local"))


def test_show_and_delete_of_a_service_that_does_not_exist(site):
    refused(site, "service", "show", "-n", "nosuch", words=("No service with name nosuch",))
    refused(site, "service", "delete", "-n", "nosuch", words=("No service with name nosuch",))
    refused(site, "service", "get-keys", "-n", "nosuch", words=("nosuch",))


def test_deleting_a_model_a_service_uses_names_the_service(site):
    refused(site, "model", "delete", "-i", f"{USED_MODEL}:1", words=(f"{USED_MODEL}:1", SERVICE))


def test_deleting_a_model_that_does_not_exist_is_named(site):
    refused(site, "model", "delete", "-i", "mymodel:7", words=("mymodel", "7"))


@pytest.mark.parametrize("verb", [("service", "list"), ("model", "list"), ("service", "show", "-n", SERVICE),
                                  ("environment", "list")])
def test_an_unknown_output_format_is_named(site, verb):
    refused(site, *verb, "-o", "xml", words=("xml", "json", "table"))


def test_an_image_build_of_an_unknown_environment_is_named(site):
    refused(site, "image", "build", "-n", "nosuchenv", words=("nosuchenv",))


def test_an_image_build_without_an_environment_is_a_usage_line(site):
    refused(site, "image", "build", words=("-n/--name",))


def test_a_second_deploy_of_a_running_service_needs_overwrite(site):
    refused(site, *deploy("-m", f"{USED_MODEL}:1", name=SERVICE), words=(SERVICE, "--overwrite"))


def test_a_workspace_on_a_read_only_folder_is_named_and_left_as_it_was(site, tmp_path):
    """root ignores file modes: the command then runs without the capabilities that override them (setpriv
    drops CAP_DAC_OVERRIDE), so the folder's 0555 binds it as it binds any user."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: file modes cannot be made to apply")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
    ws = tmp_path / "rows"
    folder = site["folder"]
    assert kit.cli(ws, "model", "register", "-n", "mymodel", "-p", "sklearn_regression_model.pkl",
                   cwd=folder).returncode == 0
    ro = {"ws": ws, "folder": folder}
    paths = [ws, *ws.rglob("*")]
    for p in paths:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        env = kit.env_for(ws)
        refused(ro, "model", "register", "-n", "another", "-p", "data.json", env=env, prefix=prefix,
                words=(str(ws), "not writable"))
        refused(ro, *deploy("-m", "mymodel:1"), env=env, prefix=prefix, words=(str(ws), "not writable"))
    finally:
        for p in paths:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert kit.cli_json(ws, "model", "show", "-i", "mymodel:1")["version"] == 1


def test_a_bad_tag_and_a_bad_model_reference_are_named(site):
    refused(site, "model", "register", "-n", "tagged", "-p", "data.json", "--tag", "novalue", words=("novalue",))
    refused(site, *deploy("-m", "mymodel:latest"), words=("mymodel:latest",))
    refused(site, "model", "register", "-n", "bad name!", "-p", "data.json", words=("bad name!",))
    refused(site, "model", "register", "-n", "nofile", "-p", "nosuch.pkl", words=("nosuch.pkl",))


def test_the_workspace_still_serves_after_all_the_refusals(site):
    show = kit.cli_json(site["ws"], "service", "show", "-n", SERVICE)
    assert show["state"] == "Healthy"
    keys = kit.cli_json(site["ws"], "service", "get-keys", "-n", SERVICE)
    assert kit.score(show["scoringUri"], keys["primaryKey"], {"x": 1}).status_code == 200
    assert not (Path(site["ws"]) / "deployments" / "newsvc").exists()
