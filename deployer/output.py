"""What the read verbs print: `--output json` (the default, as `az`) or `--output table` (chosen columns)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

FORMATS = ("json", "table")


def render(data: Any, fmt: str, columns: Sequence[str] | None = None) -> str:
    if fmt == "table":
        rows = data if isinstance(data, list) else [data]
        return table([r for r in rows if isinstance(r, Mapping)], columns)
    return json.dumps(data, indent=2, sort_keys=False, default=str)


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (list, tuple)):
        return ", ".join(_cell(x) for x in v)
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={_cell(x)}" for k, x in v.items())
    return str(v).replace("\n", " ")


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain text table; `columns` picks (and orders) the keys, else every scalar key of the first row."""
    if columns is None:
        columns = [k for k, v in rows[0].items() if not isinstance(v, (Mapping, list))] if rows else []
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def emit(data: Any, fmt: str, out: TextIO, columns: Sequence[str] | None = None) -> None:
    out.write(render(data, fmt, columns) + "\n")
