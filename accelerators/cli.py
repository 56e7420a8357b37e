"""`openscore devices`: what this machine offers (CPU, CUDA devices, OpenCL platforms and devices).

Registered on the `openscore` command through the `openscore.commands` entry point.
"""

from __future__ import annotations

import argparse
import json


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:.1f} GiB"


def format_inventory(inv: dict) -> str:
    rows = [("DEVICE", "TYPE", "MEMORY", "UNITS", "DESCRIPTION")]
    for d in inv["devices"]:
        desc = d["description"] + (f" [{d['platform']}]" if d["platform"] else "")
        rows.append((d["name"], d["type"], _gib(d["memory_bytes"]), str(d["compute_units"] or "-"), desc))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows]
    lines += [f"note: {k}: {v}" for k, v in inv["notes"].items()]
    return "\n".join(lines)


def run_devices(args: argparse.Namespace) -> int:
    from .devices import inventory  # only when the command runs: `openscore --help` stays cheap

    inv = inventory()
    print(json.dumps(inv, indent=2) if getattr(args, "json", False) else format_inventory(inv))
    return 0


def add_devices_command(subparsers) -> argparse.ArgumentParser:
    """Register `devices` on an argparse subparsers object; returns the new parser."""
    p = subparsers.add_parser("devices", help="list CPU, CUDA and OpenCL devices on this machine")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_devices)
    return p
