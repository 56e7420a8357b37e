"""What `openscore` imports before a command runs: registering commands must not load numpy, onnxruntime or
the server (every `openscore` call paid for them), and a named command loads no other component's code.
Checked from sys.modules in a fresh interpreter: behaviour, not timing (bench figures are in the README)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("numpy", "onnxruntime", "aiohttp", "openscore.accelerators.backend", "openscore.runtime.worker")


def _modules_after(code: str) -> set[str]:
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_building_the_whole_parser_imports_no_heavy_dependency():
    loaded = _modules_after("from openscore.cli import build_parser\nbuild_parser()")
    assert "openscore.accelerators.cli" in loaded and "openscore.runtime.cli" in loaded  # the commands are there
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_a_named_command_loads_only_its_own_registration():
    loaded = _modules_after("from openscore.cli import main\ntry:\n    main(['serve', '--help'])\n"
                            "except SystemExit:\n    pass")
    assert "openscore.runtime.cli" in loaded
    others = {m for m in loaded if m.startswith(("openscore.router", "openscore.deployer", "openscore.sdk",
                                                 "openscore.accelerators"))}
    assert not others, sorted(others)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_help_still_lists_every_command_and_an_unknown_one_is_refused():
    out = subprocess.run([sys.executable, "-m", "openscore", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for name in ("serve", "devices", "router"):
        assert name in out.stdout, out.stdout
    bad = subprocess.run([sys.executable, "-m", "openscore", "nosuch"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid choice: 'nosuch'" in bad.stderr and "serve" in bad.stderr


def test_the_accelerators_names_still_import_on_first_use():
    loaded = _modules_after("import openscore.accelerators as a\nassert a.load_model and a.InvalidInputError\n"
                            "from openscore.accelerators import TensorSpec, metrics\nassert metrics.ModelMetrics")
    assert {"numpy", "openscore.accelerators.model", "openscore.accelerators.metrics"} <= loaded
