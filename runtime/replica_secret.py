"""The per-replica credential: with OPENSCORE_REPLICA_SECRET set, only a caller that knows it (the router that
started the replica) is served, so a replica's loopback port is no side door around the router's keys.

Probes (GET/HEAD of `/`, `/healthz`, `/readyz`, `/slots`) stay open: they reveal nothing and the router and
kubelets probe without it. Unset, nothing is checked (a standalone server, as Azure's).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

HEADER = "x-openscore-replica-secret"
PROBES = frozenset({"/", "/healthz", "/readyz", "/slots"})
REFUSED_MESSAGE = f"Forbidden: this replica serves only its router (the {HEADER} header is missing or wrong)."


class ReplicaSecret:
    __slots__ = ("_secret",)

    def __init__(self, secret: str):
        self._secret = secret.encode("utf-8", "surrogateescape")

    def __repr__(self) -> str:  # never the value, in logs or tracebacks
        return "ReplicaSecret(<hidden>)"

    def allows(self, method: str, path: str, headers: Mapping[str, str]) -> bool:
        if path in PROBES and method in ("GET", "HEAD"):
            return True
        sent = headers.get(HEADER)
        if sent is None:
            return False
        return hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), self._secret)
