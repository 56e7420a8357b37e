"""An aksendpoint through the real CLI: `model deploy` with an aksendpoint deploymentconfig, then the version
verbs (create with a traffic percentile, update, default and control, delete), the router's split measured
by the version each answer names, and `service show -o json` showing the versions as they were set.

The router splits by smooth weighted round-robin (router/balancer.py TrafficSplitter): exact shares over
every full cycle, no randomness, so the counts are checked against the shares to within the one request a
cycle's phase can move between versions (its state survives a spec change)."""

from __future__ import annotations

import deploykit as kit
import pytest

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

N = 200
SLACK = 2  # requests a smooth round-robin's phase can shift per version over any window


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("endpoint")
    ws = folder / "ws"
    kit.write_script(folder / "echo", "score.py", kit.ECHO_PY)
    kit.write_json(folder / "ic.json", {"entryScript": "score.py", "sourceDirectory": "echo"})
    kit.write_json(folder / "endpoint.json", {"computeType": "aksendpoint", "versionName": "blue",
                                              "authEnabled": True, "description": "the A/B endpoint"})
    kit.write_json(folder / "model.json", {"weights": [1, 2, 3]})
    assert kit.cli(ws, "model", "register", "-n", "abmodel", "-p", "model.json", cwd=folder).returncode == 0
    dep = kit.cli(ws, "model", "deploy", "-n", "abendpoint", "-m", "abmodel:1", "--ic", "ic.json",
                  "--dc", "endpoint.json", cwd=folder)
    try:
        assert dep.returncode == 0, dep.stdout + dep.stderr
        assert 'AKSENDPOINT service creation operation finished, operation "Succeeded"' in dep.stdout
        yield {"folder": folder, "ws": ws}
    finally:
        kit.stop_router(ws)


def _cli(ep, *args: str):
    r = kit.cli(ep["ws"], *args, cwd=ep["folder"])
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def _show(ep) -> dict:
    return kit.cli_json(ep["ws"], "service", "show", "-n", "abendpoint", "-o", "json")


def _split(ep) -> dict[str, int]:
    show = _show(ep)
    assert show["state"] == "Healthy"
    key = kit.cli_json(ep["ws"], "service", "get-keys", "-n", "abendpoint")["primaryKey"]
    return dict(kit.split(show["scoringUri"], key, N))


def _close(counts: dict[str, int], expected: dict[str, int]) -> None:
    assert set(counts) == {k for k, v in expected.items() if v}, counts
    for name, want in expected.items():
        assert abs(counts.get(name, 0) - want) <= SLACK, (counts, expected)


def test_the_endpoint_versions_split_traffic_as_set_and_show_says_so(endpoint):
    ep = endpoint
    show = _show(ep)
    assert show["computeType"] == "AKSENDPOINT"
    assert set(show["versions"]) == {"blue"}
    assert show["versions"]["blue"]["isDefault"] is True
    assert _split(ep) == {"blue": N}

    # create a version with 30 %: the default takes the rest
    _cli(ep, "service", "create-version", "-n", "abendpoint", "--version-name", "green", "-m", "abmodel:1",
         "--ic", "ic.json", "--traffic-percentile", "30")
    show = _show(ep)
    assert show["versions"]["green"]["trafficPercentile"] == 30
    assert show["versions"]["green"]["isDefault"] is False and show["versions"]["green"]["type"] == "Treatment"
    assert show["versions"]["blue"]["isDefault"] is True
    counts = _split(ep)
    assert counts["blue"] > counts["green"] > 0
    _close(counts, {"blue": 140, "green": 60})

    # update it to 80 %: the shares turn round
    _cli(ep, "service", "update-version", "-n", "abendpoint", "--version-name", "green", "--traffic-percentile",
         "80")
    assert _show(ep)["versions"]["green"]["trafficPercentile"] == 80
    counts = _split(ep)
    assert counts["green"] > counts["blue"] > 0
    _close(counts, {"blue": 40, "green": 160})

    # green becomes the default and the control: blue is neither any more, and has no share of its own
    _cli(ep, "service", "update-version", "-n", "abendpoint", "--version-name", "green", "--is-default",
         "--is-control-version-type")
    versions = _show(ep)["versions"]
    assert versions["green"]["isDefault"] is True and versions["green"]["type"] == "Control"
    assert versions["blue"]["isDefault"] is False and versions["blue"]["type"] == "Treatment"
    assert _split(ep) == {"green": N}

    # blue gets 20 % back; 25 would make 105 with green's 80, which is refused and changes nothing
    before = kit.dump(ep["ws"])
    over = kit.cli(ep["ws"], "service", "update-version", "-n", "abendpoint", "--version-name", "blue",
                   "--traffic-percentile", "25")
    assert over.returncode == 1 and "trafficPercentile values add up to 105, must be <= 100" in over.stderr
    assert kit.dump(ep["ws"]) == before
    _cli(ep, "service", "update-version", "-n", "abendpoint", "--version-name", "blue", "--traffic-percentile",
         "20")
    _close(_split(ep), {"blue": 40, "green": 160})

    # each version answers on its own URI too
    show = _show(ep)
    key = kit.cli_json(ep["ws"], "service", "get-keys", "-n", "abendpoint")["primaryKey"]
    for vname, v in show["versions"].items():
        r = kit.score(v["scoringUri"], key, {"x": 1})
        assert r.status_code == 200 and r.headers["azureml-model-deployment"] == vname

    # delete blue: green takes everything, and show lists it alone
    _cli(ep, "service", "delete-version", "-n", "abendpoint", "--version-name", "blue")
    show = _show(ep)
    assert set(show["versions"]) == {"green"} and show["versions"]["green"]["isDefault"] is True
    assert _split(ep) == {"green": N}


def test_version_verbs_refuse_bad_input_and_leave_the_endpoint_as_it_was(endpoint):
    ep = endpoint
    before = kit.dump(ep["ws"])
    cases = [
        (("service", "update-version", "-n", "abendpoint", "--version-name", "nosuch", "--traffic-percentile",
          "10"), "no version nosuch"),
        (("service", "create-version", "-n", "abendpoint", "--version-name", "Bad_Name", "--ic", "ic.json"),
         "Invalid version name"),
        (("service", "create-version", "-n", "abendpoint", "--version-name", "toomuch", "--ic", "ic.json",
          "--traffic-percentile", "150"), "trafficPercentile"),
        (("service", "delete-version", "-n", "abendpoint", "--version-name", "nosuch"), "no version nosuch"),
        (("service", "create-version", "-n", "nosuchendpoint", "--version-name", "greener", "--ic", "ic.json"),
         "No service with name nosuchendpoint"),
    ]
    for args, words in cases:
        r = kit.cli(ep["ws"], *args, cwd=ep["folder"])
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert words in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert kit.dump(ep["ws"]) == before
