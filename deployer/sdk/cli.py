"""`openscore azureml run script.py [args...]`: run an Azure ML deploy script against the local workspace.

The workspace comes from the script itself (Workspace.from_config() finds config.json as azureml-core does),
or from --workspace / $OPENSCORE_WORKSPACE for Workspace.get / Workspace(...).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def add_azureml_command(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "azureml", help="run Azure ML SDK scripts with openscore.sdk at Azure's import paths",
        description="Azure ML (SDK v1) compatibility: run a deploy script unchanged, its `azureml.core` imports "
                    "answered by openscore.sdk (only where azureml-core is not installed).")
    sub = parser.add_subparsers(dest="azureml_command", required=True, metavar="VERB")
    run = sub.add_parser("run", help="run SCRIPT with Azure's import paths served by openscore.sdk",
                         description="Run SCRIPT (with ARGS) as `python SCRIPT ARGS` would, with `from azureml.core "
                                     "import Workspace, Model, ...` resolving to openscore.sdk. Exit status: the "
                                     "script's; 1 with the traceback for an uncaught exception.")
    run.add_argument("script", help="the Python script (written for azureml-core)")
    run.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    run.add_argument("--workspace", "-w", dest="workspace_folder", default=None,
                     help="workspace folder for Workspace.get()/Workspace(...) (default: $OPENSCORE_WORKSPACE, "
                          "a config.json's, ~/.openscore); Workspace.from_config() still reads config.json")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from openscore.sdk.run_azure import RunError, run_script
    if args.workspace_folder:
        os.environ["OPENSCORE_WORKSPACE"] = args.workspace_folder
    try:
        return run_script(args.script, args.args)
    except RunError as e:
        print(f"openscore azureml run: error: {e}", file=sys.stderr)
        return 1
