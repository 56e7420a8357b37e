"""Run a deploy script written for Azure ML with openscore.sdk answering at Azure's import paths.

    openscore azureml run deploy.py [args...]      # or: python -m openscore.sdk.run_azure deploy.py [args...]

`azureml_path/` goes on sys.path right after the script's own folder, so `from azureml.core import
Workspace`, `azureml.core.webservice`, `azureml.core.model`, `azureml.core.compute`, `azureml.core.environment`,
`azureml.core.conda_dependencies` and `azureml.exceptions` are openscore.sdk's classes. Only in this process:
nothing is set in the environment, so the router and replicas a deploy starts see no such path (a replica's
`azureml.core.model` stays the scoring runtime's). Refused when azureml-core is installed: the script would
then mix two SDKs, and which one it meant is not for openscore to guess.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import runpy
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

AZUREML_PATH = Path(__file__).resolve().parent / "azureml_path"


class RunError(Exception):
    """The script cannot be run (it is missing, or azureml-core is installed); the message says why."""


def azureml_core_installed() -> str | None:
    """Where a real azureml-core is (its distribution, or an importable azureml.core), else None."""
    try:
        dist = importlib.metadata.distribution("azureml-core")
        return f"azureml-core {dist.version}"
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        spec = importlib.util.find_spec("azureml.core")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or Path(spec.origin).resolve().is_relative_to(AZUREML_PATH):
        return None
    return f"azureml.core at {spec.origin}"


def run_script(script: str, args: Sequence[str]) -> int:
    """Run `script` as __main__ with `args`; its exit status (1 with the traceback for an uncaught exception)."""
    path = Path(script)
    if not path.is_file():
        raise RunError(f"script {script} does not exist" if not path.exists() else f"script {script} is not a file")
    real = azureml_core_installed()
    if real is not None:
        raise RunError(f"{real} is installed in this environment ({sys.prefix}): `openscore azureml run` serves "
                       "Azure's import paths only where azureml-core is absent. Run the script in an environment "
                       "without azureml-core (e.g. a fresh venv with openscore), or import openscore.sdk directly.")
    for name in [m for m in sys.modules if m == "azureml" or m.startswith("azureml.")]:
        del sys.modules[name]  # nothing imported earlier under these names may shadow the SDK's
    script_dir = str(path.absolute().parent)
    saved_path, saved_argv = list(sys.path), list(sys.argv)
    sys.path[:0] = [script_dir, str(AZUREML_PATH)]
    sys.argv = [str(path), *args]
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as e:
        code = e.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.path[:], sys.argv = saved_path, saved_argv
        sys.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[2].strip() if __doc__ else "usage: run_azure script.py [args]")
        return 0 if args else 2
    try:
        return run_script(args[0], args[1:])
    except RunError as e:
        print(f"openscore azureml run: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
