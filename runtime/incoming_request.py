"""The transport-neutral request the data plane scores: plain values, no framework objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class IncomingRequest:
    """What the transport hands the scoring logic: plain values, no framework objects."""

    method: str
    path: str
    query_string: str
    headers: Mapping[str, str]           # case-insensitive mapping with .items() and .getall()
    body: bytes = b""
    scheme: str = "http"
    host: str = "localhost"
    remote: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")
