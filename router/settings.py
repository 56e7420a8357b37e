"""Every knob of `openscore router`, in one typed place.

Sources, strongest first: command-line flags, `OPENSCORE_ROUTER_<FIELD>` environment variables (e.g.
`OPENSCORE_ROUTER_PORT`, `OPENSCORE_ROUTER_SCALE_DOWN_WINDOW_S`), then the defaults below. The object is
built and validated once at start; the modules it configures receive plain values from it, so pydantic
never runs on a request.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "OPENSCORE_ROUTER_"
LogLevel = Literal["debug", "info", "warning", "error", "critical"]


class RouterSettingsError(ValueError):
    """A bad setting; `key` is the flag or variable it came from, the message is one line."""

    def __init__(self, key: str, rule: str):
        super().__init__(f"{key}: {rule}")
        self.key = key
        self.rule = rule


class RouterSettings(BaseSettings):
    """The router's configuration. Field names are the flags' (`--scale-down-window-s`) and, upper-cased
    with the prefix, the variables' names."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True,
                                      case_sensitive=False, populate_by_name=True)

    # where the desired state lives, and what to apply at start
    workspace: Path | None = Field(None, description="folder holding the desired state, keys and replica logs")
    config: Path | None = Field(None, description="services file (JSON or YAML) applied at start")
    # Kubernetes mode: the desired state is ScoringService objects and Secrets, replicas are pods
    kubernetes: bool = Field(False, description="take the desired state and replicas from a Kubernetes cluster")
    namespace: str | None = Field(None, min_length=1, description="with kubernetes: the namespace (default: the "
                                                                  "pod's own, or the kubeconfig context's)")
    kubeconfig: Path | None = Field(None, description="with kubernetes: a kubeconfig file instead of the pod's "
                                                      "service account")
    status_interval_s: float = Field(2.0, gt=0, allow_inf_nan=False,
                                     description="with kubernetes: a service's status is written at most this "
                                                 "often")
    # several router pods (docs/router-ha.md)
    advertise_address: str | None = Field(None, min_length=3, description="with kubernetes: host:port at which the "
                                          "other routers reach this one (default: $POD_IP and the port)")
    lease_duration_s: float = Field(10.0, ge=1, le=300, allow_inf_nan=False,
                                    description="with kubernetes: a service's coordinator Lease; another router "
                                                "takes over within this after its holder dies")
    # listening
    host: str = Field("127.0.0.1", min_length=1, description="bind address")
    port: int = Field(8080, ge=0, le=65535, description="port (0: any free port)")
    tls_cert: Path | None = Field(None, description="PEM certificate (chain): serve HTTPS, TLS 1.2 or later")
    tls_key: Path | None = Field(None, description="PEM private key for tls_cert")
    # auth
    admin_key: SecretStr | None = Field(None, description="admin API key")
    admin_key_file: Path | None = Field(None, description="file holding the admin API key")
    token_lifetime_s: int = Field(3600, gt=0, description="lifetime of issued tokens, seconds")
    # lifecycle and scaling
    scale_down_window_s: float = Field(60.0, ge=0, allow_inf_nan=False,
                                       description="stable window before scaling down, seconds")
    graceful_timeout_s: float = Field(30.0, ge=0, allow_inf_nan=False, description="drain time on SIGTERM")
    drain_timeout_s: float = Field(330.0, ge=0, allow_inf_nan=False,
                                   description="longest wait for an old replica's in-flight requests")
    # slow and idle clients
    request_buffer_bytes: int = Field(1024 * 1024, ge=0, le=64 * 1024 * 1024,
                                      description="request bodies up to this size are read whole before a "
                                                  "replica slot is taken")
    body_timeout_s: float = Field(30.0, gt=0, allow_inf_nan=False,
                                  description="a request body must arrive within this, plus 1 s per "
                                              "min_upload_bytes_per_s bytes received, else 408")
    min_upload_bytes_per_s: float = Field(32 * 1024.0, gt=0, allow_inf_nan=False,
                                          description="the slowest upload rate the body deadline allows")
    header_timeout_s: float = Field(15.0, gt=0, allow_inf_nan=False,
                                    description="a request's headers must arrive within this, seconds")
    max_connections: int = Field(4096, ge=1, le=1_000_000,
                                 description="open client connections at most; idle ones are closed first")
    # logging
    access_log: bool = Field(True, description="one line per request")
    log_level: LogLevel = Field("info", description="debug, info, warning, error or critical")
    # replicas of the local process target
    probe_interval_s: float = Field(0.1, gt=0, allow_inf_nan=False,
                                    description="readiness probe period while a replica is not ready")
    ready_probe_interval_s: float = Field(1.0, gt=0, allow_inf_nan=False,
                                          description="readiness probe period once a replica is ready")
    replica_graceful_s: float = Field(10.0, ge=0, allow_inf_nan=False,
                                      description="a replica's drain time before it is killed")
    max_backoff_s: float = Field(10.0, gt=0, allow_inf_nan=False,
                                 description="longest wait before restarting a crashing replica")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _tls_pair(self) -> RouterSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        return self


def _source_name(field: str, flags: Mapping[str, Any]) -> str:
    """Where a field's value came from, as the user wrote it: the flag, else the variable."""
    if flags.get(field) is not None:
        return "--" + field.replace("_", "-")
    return ENV_PREFIX + field.upper()


def load_router_settings(flags: Mapping[str, Any]) -> RouterSettings:
    """Merge flags (None = not given) over `OPENSCORE_ROUTER_*` variables; raises RouterSettingsError naming
    the flag or variable."""
    given = {k: v for k, v in flags.items() if v is not None and k in RouterSettings.model_fields}
    try:
        return RouterSettings(**given)
    except ValidationError as e:
        raise _first_error(e, given) from None


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per `OPENSCORE_ROUTER_*` variable that names no setting (a typo is ignored, not fatal)."""
    environ = os.environ if environ is None else environ
    known = [ENV_PREFIX + f.upper() for f in RouterSettings.model_fields]
    out = []
    for name in sorted(environ):
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known:
            near = difflib.get_close_matches(name.upper(), known, n=1)
            out.append(f"ignoring unknown environment variable {name}"
                       + (f" (did you mean {near[0]}?)" if near else ""))
    return out


def _first_error(e: ValidationError, flags: Mapping[str, Any]) -> RouterSettingsError:
    err = e.errors(include_url=False)[0]
    loc = [str(p) for p in err.get("loc", ())]
    msg = err.get("msg", "is invalid").removeprefix("Value error, ")
    if not loc:  # a model-level rule: the TLS pair
        if flags.get("tls_cert") or flags.get("tls_key"):
            return RouterSettingsError("--tls-cert", "--tls-cert and --tls-key go together")
        return RouterSettingsError(f"{ENV_PREFIX}TLS_CERT",
                                   f"{ENV_PREFIX}TLS_CERT and {ENV_PREFIX}TLS_KEY go together")
    field = loc[0]
    if err.get("type") == "extra_forbidden":
        return RouterSettingsError(ENV_PREFIX + field.upper(), "is not a router setting")
    value = err.get("input")
    shown = "" if field == "admin_key" else f" (got {value!r})"
    return RouterSettingsError(_source_name(field, flags), f"{msg}{shown}")
