"""`openscore serve` settings: every bad value is exit 1 and one line naming the key; a config.json key that
names no variable is ignored (as Azure does) with a warning naming the nearest, and the server still starts."""

from __future__ import annotations

import json

import pytest
import requests


@pytest.mark.parametrize("args,env,config,first_words", [
    (["--port", "abc"], {}, None, "--port must be an integer"),
    ([], {"WORKER_COUNT": "abc"}, None, "WORKER_COUNT must be an integer"),
    ([], {"SCORING_TIMEOUT_MS": "-1"}, None, "SCORING_TIMEOUT_MS must be >= 1"),
    (["--max-queue-delay-ms", "nan"], {}, None, "--max-queue-delay-ms must be >= 0"),
    ([], {"OPENSCORE_ACCESS_LOG": "perhaps"}, None, "OPENSCORE_ACCESS_LOG must be true or false"),
    ([], {}, {"WORKER_COUNT": 2.5}, "WORKER_COUNT (in "),
    ([], {}, [1, 2], "config file "),
])
def test_a_bad_value_exits_1_with_one_line(serve, tmp_path, args, env, config, first_words):
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
    server = serve("plain_echo.py", *args, env=env, cwd=tmp_path, wait=False)
    assert server.wait_exit(30) == 1
    lines = server.log().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"openscore serve: error: {first_words}"), lines


def test_a_misspelt_config_file_key_is_warned_and_the_server_starts(serve, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"SCORING_TIMOUT_MS": 5, "WORKER_TIMEOUT": 30,
                                                       "SERVICE_NAME": "from-config"}))
    server = serve("plain_echo.py", cwd=tmp_path)
    assert requests.post(server.url + "/score", json={"a": 1}, timeout=10).status_code == 200
    log = server.log()
    assert (f"config file {tmp_path / 'config.json'}: ignoring unknown key SCORING_TIMOUT_MS "
            "(did you mean SCORING_TIMEOUT_MS?)") in log
    assert "WORKER_TIMEOUT" not in log  # an Azure variable openscore does not use is known, not warned
    assert "unknown key SERVICE_NAME" not in log
