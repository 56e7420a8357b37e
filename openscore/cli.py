"""The `openscore` command: each component registers its subcommands through the `openscore.commands`
entry-point group, so this module knows none of them and no component imports another's CLI.

An entry point names a function `register(subparsers)` that adds one subcommand and sets `func` on it;
the component's heavy dependencies are imported only when its command runs. A call that names its command
(`openscore serve ...`) loads that command's entry point alone: one component's start-up never pays for
importing the others' registrations.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from openscore import __version__

GROUP = "openscore.commands"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `openscore` parser with every registered command, or only `command` when one by that name exists."""
    parser = argparse.ArgumentParser(prog="openscore", description="Self-hosted model serving, Azure ML style.")
    parser.add_argument("--version", action="version", version=f"openscore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    found = sorted(entry_points(group=GROUP), key=lambda ep: ep.name)
    if not found:
        parser.error("no commands are registered: install openscore (pip install -e . from the clone)")
    if any(ep.name == command for ep in found):
        found = [ep for ep in found if ep.name == command]
    for ep in found:
        try:
            register = ep.load()
        except ImportError as e:  # a component whose extra is not installed offers no command
            sub.add_parser(ep.name, help=f"unavailable: {e}").set_defaults(func=_unavailable(ep.name, e))
            continue
        register(sub)
    return parser


def _unavailable(name: str, error: ImportError) -> Callable[[argparse.Namespace], int]:
    def run(_args: argparse.Namespace) -> int:
        print(f"openscore {name}: error: {error}", file=sys.stderr)
        return 1
    return run


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # the command is the first word (the top-level parser's only options, --help and --version, take no value)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    return int(args.func(args) or 0)
