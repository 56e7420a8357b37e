"""Typed service configuration, read from Azure's deploymentconfig keys (spec 2.1, 2.2) and validated.

A *service* is always an endpoint with one or more versions: an `aks` service is an endpoint with a single
version named after it, an `aksendpoint` declares up to six `versions`. Keeping one shape means routing,
scaling and metrics never special-case the two Azure types.

Every error names the key path and the rule, e.g. ``services.echo.autoScaler.maxReplicas: must be >=
autoScaler.minReplicas (3)``. Unknown keys are ignored, as Azure's parser does, with a warning that names
the nearest known key (`config_warnings`; the key list and a JSON Schema are in router/config_schema.py).

Paths: in a services file, a relative `sourceDirectory` or `modelDir` resolves against the file's folder and a
relative `entryScript` against `sourceDirectory` (Azure's rule), else against the file's folder. A document
with no folder of its own (the admin API: `base_dir=None`) must give absolute paths; a relative one is refused
naming the key. With no `sourceDirectory`, the entry script's folder is the app root (the replica's cwd).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

log = logging.getLogger("openscore.router.config")
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
NAMESPACE_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{,61}[a-z0-9])?$")
MAX_VERSIONS = 6
MAX_SCORING_TIMEOUT_MS = 300_000
MAX_MIRROR_PERCENT = 50.0  # Azure online endpoints' limit on mirrored (shadow) traffic
# Upper bounds, so a typo (100000) is a 400 naming the key rather than a fork bomb: replicas of one version
# (numReplicas, autoScaler.min/maxReplicas) and worker processes per replica (openscore's `workers`).
MAX_REPLICAS = 100
MAX_WORKERS = 64
# `openscore serve` flags the router sets itself: a replica listens where its router says (loopback)
_RESERVED_REPLICA_ARGS = ("--host", "--port")
CONTROL, TREATMENT = "Control", "Treatment"

# Version-level keys an aksendpoint may NOT set per version (they are endpoint-level, spec 2.2).
_ENDPOINT_LEVEL = ("authEnabled", "tokenAuthEnabled", "keys", "namespace")


class ConfigError(ValueError):
    """An invalid service configuration; `key` is the dotted path, the message says the rule."""

    def __init__(self, key: str, rule: str):
        super().__init__(f"{key}: {rule}")
        self.key = key
        self.rule = rule


@dataclass(frozen=True)
class AutoscaleSpec:
    enabled: bool = True
    min_replicas: int = 1
    max_replicas: int = 10
    refresh_seconds: float = 1.0
    target_utilization: float = 70.0  # percent, as Azure

    @property
    def target_fraction(self) -> float:
        return self.target_utilization / 100.0


@dataclass(frozen=True)
class ResourceSpec:
    """containerResourceRequirements: per-replica requests and limits (Azure's defaults)."""
    cpu: float = 0.1                       # cores requested
    memory_gb: float = 0.5                 # memoryInGB requested
    cpu_limit: float | None = None         # cpuLimit
    memory_gb_limit: float | None = None   # memoryInGBLimit
    gpu: int = 0                           # containerResourceRequirements.gpu


@dataclass(frozen=True)
class LivenessSpec:
    """livenessProbeRequirements (Azure's defaults, spec 2.1)."""
    period_s: int = 10                     # periodSeconds
    initial_delay_s: int = 310             # initialDelaySeconds
    timeout_s: int = 2                     # timeoutSeconds
    success_threshold: int = 1             # successThreshold
    failure_threshold: int = 3             # failureThreshold


@dataclass(frozen=True)
class VersionSpec:
    """One deployable version: what its replicas run, how many, and the router limits in front of them."""

    name: str
    entry_script: str                      # absolute path
    app_root: str                          # absolute path; the replica's cwd (sourceDirectory)
    model_dir: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)
    slots_per_replica: int = 1             # maxConcurrentRequestsPerContainer
    max_queue_wait_ms: int = 500           # maxQueueWaitMs
    scoring_timeout_ms: int = 60_000       # scoringTimeoutMs
    num_replicas: int | None = None        # fixed count; None = autoscale
    autoscale: AutoscaleSpec = AutoscaleSpec()
    traffic_percentile: float = 0.0
    is_default: bool = False
    version_type: str = TREATMENT
    workers: int = 1                       # openscore extension: worker processes per replica
    replica_args: tuple[str, ...] = ()     # openscore extension: extra `openscore serve` flags
    resources: ResourceSpec = ResourceSpec()
    gpu_cores: int | None = None           # gpuCores (the file's top-level key); wins over resources.gpu
    liveness: LivenessSpec = LivenessSpec()
    namespace: str | None = None           # the service's (endpoint-level for an aksendpoint)
    image: str | None = None               # container image (Kubernetes targets; the local target ignores it)
    instance_type: str | None = None       # instanceType: the pool (SKU) its replicas run on
    python: str | None = None              # pythonInterpreter: the replica's interpreter (a built environment)

    @property
    def gpus(self) -> int:
        """GPUs per replica: gpuCores, else containerResourceRequirements.gpu."""
        return self.gpu_cores if self.gpu_cores is not None else self.resources.gpu

    def launch_fingerprint(self) -> tuple[Any, ...]:
        """What, if changed, needs new replicas (everything else applies in the router)."""
        return (self.entry_script, self.app_root, self.model_dir, tuple(sorted(self.environment.items())),
                self.slots_per_replica, self.scoring_timeout_ms, self.workers, self.replica_args,
                self.resources, self.gpus, self.liveness, self.namespace, self.image, self.instance_type,
                self.python)

    @property
    def initial_replicas(self) -> int:
        return self.num_replicas if self.num_replicas is not None else self.autoscale.min_replicas


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    compute_type: str                      # "aks" or "aksendpoint"
    versions: Mapping[str, VersionSpec]
    auth_enabled: bool = True
    token_auth_enabled: bool = False
    primary_key: str | None = None         # from the file's `keys`; else generated by the store
    secondary_key: str | None = None
    description: str = ""
    max_body_bytes: int = 100 * 1024 * 1024
    namespace: str | None = None
    # mirrorTraffic: version -> percent of the endpoint's requests copied to it, the copy's answer discarded
    mirror: Mapping[str, float] = field(default_factory=dict)

    @property
    def default_version(self) -> VersionSpec:
        for v in self.versions.values():
            if v.is_default:
                return v
        return next(iter(self.versions.values()))

    def traffic_shares(self) -> dict[str, float]:
        """Per-version share in percent: explicit percentiles, the rest to the default version (spec 2.2)."""
        shares = {n: v.traffic_percentile for n, v in self.versions.items()}
        rest = 100.0 - sum(shares.values())
        if rest > 0:
            shares[self.default_version.name] += rest
        return shares


# ------------------------------------------------------------------------------------------ parsing helpers
def _num(d: Mapping[str, Any], key: str, path: str, *, integer: bool = False, minimum: float | None = None,
         exclusive: bool = True, maximum: float | None = None) -> Any:
    v = d.get(key)
    if v is None:
        return None
    full = f"{path}.{key}" if path else key
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(full, f"must be a number, got {v!r}")
    if integer and (isinstance(v, float) and not v.is_integer()):
        raise ConfigError(full, f"must be a whole number, got {v!r}")
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(full, f"must be finite, got {v!r}")
    if minimum is not None:
        if exclusive and v <= minimum:
            raise ConfigError(full, f"must be > {minimum:g}, got {v!r}")
        if not exclusive and v < minimum:
            raise ConfigError(full, f"must be >= {minimum:g}, got {v!r}")
    if maximum is not None and v > maximum:
        raise ConfigError(full, f"must be <= {maximum:g}, got {v!r}")
    return int(v) if integer else v


def _bool(d: Mapping[str, Any], key: str, path: str) -> bool | None:
    v = d.get(key)
    if v is None or isinstance(v, bool):
        return v
    raise ConfigError(f"{path}.{key}" if path else key, f"must be true or false, got {v!r}")


def _str(d: Mapping[str, Any], key: str, path: str) -> str | None:
    v = d.get(key)
    if v is None or isinstance(v, str):
        return v
    raise ConfigError(f"{path}.{key}" if path else key, f"must be a string, got {v!r}")


def _obj(d: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    v = d.get(key)
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ConfigError(f"{path}.{key}" if path else key, f"must be an object, got {type(v).__name__}")
    return v


def validate_name(name: Any, path: str, what: str = "service name") -> str:
    if not isinstance(name, str) or not (3 <= len(name) <= 32) or not NAME_RE.match(name):
        raise ConfigError(path, f"{what} {name!r} must be 3-32 characters of lowercase letters, digits and "
                                "'-', start with a letter and end with a letter or digit")
    return name


# ------------------------------------------------------------------------------------------ version parsing
def _autoscale(d: Mapping[str, Any], path: str, num_replicas: int | None) -> AutoscaleSpec:
    a = _obj(d, "autoScaler", path)
    ap = f"{path}.autoScaler" if path else "autoScaler"
    enabled = _bool(a, "autoscaleEnabled", ap)
    mn = _num(a, "minReplicas", ap, integer=True, minimum=0, maximum=MAX_REPLICAS)
    mx = _num(a, "maxReplicas", ap, integer=True, minimum=0, maximum=MAX_REPLICAS)
    refresh = _num(a, "refreshPeriodInSeconds", ap, minimum=0)
    target = _num(a, "targetUtilization", ap, minimum=0, maximum=100)
    given = [k for k, v in (("minReplicas", mn), ("maxReplicas", mx), ("refreshPeriodInSeconds", refresh),
                            ("targetUtilization", target)) if v is not None]
    if enabled is True and num_replicas is not None:
        raise ConfigError(f"{ap}.autoscaleEnabled", "cannot be true together with numReplicas (Azure: autoscaling "
                                                    "and a fixed replica count are exclusive)")
    if enabled is False and num_replicas is None:
        raise ConfigError(f"{ap}.autoscaleEnabled", "is false, so numReplicas must be given")
    if given and enabled is not True:
        raise ConfigError(f"{ap}.{given[0]}", "provided without enabling autoscaling (set "
                                              "autoScaler.autoscaleEnabled: true)")
    if num_replicas is not None:
        return AutoscaleSpec(enabled=False, min_replicas=num_replicas, max_replicas=num_replicas)
    spec = AutoscaleSpec(
        enabled=True,
        min_replicas=mn if mn is not None else 1,
        max_replicas=mx if mx is not None else 10,
        refresh_seconds=float(refresh) if refresh is not None else 1.0,
        target_utilization=float(target) if target is not None else 70.0)
    if spec.min_replicas > spec.max_replicas:
        raise ConfigError(f"{ap}.maxReplicas", f"must be >= autoScaler.minReplicas ({spec.min_replicas}), "
                                              f"got {spec.max_replicas}")
    return spec


def _resources(d: Mapping[str, Any], path: str) -> tuple[ResourceSpec, int | None, LivenessSpec]:
    r = _obj(d, "containerResourceRequirements", path)
    rp = f"{path}.containerResourceRequirements" if path else "containerResourceRequirements"
    cpu = _num(r, "cpu", rp, minimum=0)
    mem = _num(r, "memoryInGB", rp, minimum=0)
    cpu_limit = _num(r, "cpuLimit", rp, minimum=0)
    mem_limit = _num(r, "memoryInGBLimit", rp, minimum=0)
    gpu = _num(r, "gpu", rp, integer=True, minimum=0, exclusive=False)
    gpu_cores = _num(d, "gpuCores", path, integer=True, minimum=0, exclusive=False)
    if cpu_limit is not None and cpu_limit < (cpu if cpu is not None else 0.1):
        raise ConfigError(f"{rp}.cpuLimit", f"must be >= containerResourceRequirements.cpu ({cpu or 0.1:g})")
    if mem_limit is not None and mem_limit < (mem if mem is not None else 0.5):
        raise ConfigError(f"{rp}.memoryInGBLimit",
                          f"must be >= containerResourceRequirements.memoryInGB ({mem or 0.5:g})")
    if gpu is not None and gpu_cores is not None and gpu != gpu_cores:
        raise ConfigError(f"{path}.gpuCores" if path else "gpuCores",
                          f"is {gpu_cores} but containerResourceRequirements.gpu is {gpu}: give one of the two")
    lp_path = f"{path}.livenessProbeRequirements" if path else "livenessProbeRequirements"
    lp = _obj(d, "livenessProbeRequirements", path)
    probe = {k: _num(lp, k, lp_path, integer=True, minimum=0) for k in
             ("periodSeconds", "initialDelaySeconds", "timeoutSeconds", "successThreshold", "failureThreshold")}
    dflt = LivenessSpec()
    liveness = LivenessSpec(
        period_s=probe["periodSeconds"] or dflt.period_s,
        initial_delay_s=probe["initialDelaySeconds"] or dflt.initial_delay_s,
        timeout_s=probe["timeoutSeconds"] or dflt.timeout_s,
        success_threshold=probe["successThreshold"] or dflt.success_threshold,
        failure_threshold=probe["failureThreshold"] or dflt.failure_threshold)
    resources = ResourceSpec(cpu=float(cpu) if cpu is not None else 0.1,
                             memory_gb=float(mem) if mem is not None else 0.5,
                             cpu_limit=float(cpu_limit) if cpu_limit is not None else None,
                             memory_gb_limit=float(mem_limit) if mem_limit is not None else None,
                             gpu=gpu or 0)
    return resources, gpu_cores, liveness


def _key(path: str, k: str) -> str:
    return f"{path}.{k}" if path else k


def _resolve(p: str, base: Path) -> str:
    q = Path(os.path.expanduser(p))
    return str(q if q.is_absolute() else (base / q).resolve())


def _absolute(value: str, key: str, base: Path | None, against: str) -> str:
    """`value` made absolute against `base`; with no base (the admin API) a relative path is refused."""
    q = Path(os.path.expanduser(value))
    if q.is_absolute():
        return str(q)
    if base is None:
        raise ConfigError(key, f"{value!r} is a relative path and there is no {against} to resolve it against: "
                               "give an absolute path")
    return str((base / q).resolve())


def parse_version(name: str, d: Mapping[str, Any], path: str, base_dir: Path | None,
                  files_must_exist: bool = False) -> VersionSpec:
    """One version's keys: inference keys (entryScript, sourceDirectory, environment) + deploymentconfig.
    `base_dir` is the services file's folder; None refuses relative paths (see the module docstring).
    `files_must_exist`: the entry script and source directory must exist (at PUT or `--config` time, so a
    typo is a 400 or exit 1 naming the key and the path, not replicas that crash-loop)."""
    if not isinstance(d, Mapping):
        raise ConfigError(path or name, f"must be an object, got {type(d).__name__}")
    p = functools.partial(_key, path)
    inference = _obj(d, "inferenceConfig", path)
    merged: dict[str, Any] = {**inference, **d}
    source = _str(merged, "sourceDirectory", path)
    entry = _str(merged, "entryScript", path)
    if not entry:
        raise ConfigError(p("entryScript"), "is required (the score.py file, relative to sourceDirectory)")
    env_obj = _obj(_obj(merged, "environment", path), "environmentVariables", p("environment"))
    env = {str(k): str(v) for k, v in {**env_obj, **_obj(d, "environmentVariables", path)}.items()}
    model_dir = _str(merged, "modelDir", path) or ""
    num_replicas = _num(d, "numReplicas", path, integer=True, minimum=0)
    timeout = _num(d, "scoringTimeoutMs", path, integer=True, minimum=0, maximum=MAX_SCORING_TIMEOUT_MS)
    slots = _num(d, "maxConcurrentRequestsPerContainer", path, integer=True, minimum=0)
    wait = _num(d, "maxQueueWaitMs", path, integer=True, minimum=0)
    workers = _num(d, "workers", path, integer=True, minimum=0)
    extra = d.get("replicaArgs") or []
    if not isinstance(extra, list) or not all(isinstance(a, str) for a in extra):
        raise ConfigError(p("replicaArgs"), "must be a list of strings (extra `openscore serve` flags)")
    traffic = _num(d, "trafficPercentile", path, minimum=0, exclusive=False, maximum=100)
    is_default = _bool(d, "isDefault", path)
    vtype = _str(d, "type", path)
    if vtype is not None and vtype.lower() not in ("control", "treatment"):
        raise ConfigError(p("type"), f"must be 'Control' or 'Treatment', got {vtype!r}")
    resources, gpu_cores, liveness = _resources(d, path)
    ns = _str(d, "namespace", path)
    if ns is not None and not NAMESPACE_RE.match(ns):
        raise ConfigError(p("namespace"), f"{ns!r} must match {NAMESPACE_RE.pattern}")
    image = _str(d, "image", path)
    instance_type = _str(d, "instanceType", path)
    if instance_type is not None and not instance_type.strip():
        raise ConfigError(p("instanceType"), "must not be empty (name a pool, or leave the key out)")
    python = _str(d, "pythonInterpreter", path)
    if python is not None and not Path(python).is_absolute():
        raise ConfigError(p("pythonInterpreter"), f"{python!r} must be an absolute path to a python interpreter")
    if python is not None and files_must_exist and not Path(python).is_file():
        raise ConfigError(p("pythonInterpreter"), f"{python} is not a file that exists")
    # Paths last, so a document that breaks a rule above is told that rule first.
    if source:
        app_root = _absolute(source, p("sourceDirectory"), base_dir, "services file's folder")
        entry_path = _resolve(entry, Path(app_root))
        if files_must_exist and not Path(app_root).is_dir():
            raise ConfigError(p("sourceDirectory"), f"{app_root} is not a folder that exists")
    else:
        entry_path = _absolute(entry, p("entryScript"), base_dir, "sourceDirectory or services file's folder")
        app_root = str(Path(entry_path).parent)
    if files_must_exist and not Path(entry_path).is_file():
        raise ConfigError(p("entryScript"), f"{entry_path} is not a file that exists")
    if model_dir:
        model_dir = _absolute(model_dir, p("modelDir"), base_dir, "services file's folder")
    return VersionSpec(
        name=name, entry_script=entry_path, app_root=app_root, model_dir=model_dir, environment=env,
        slots_per_replica=slots or 1, max_queue_wait_ms=wait or 500, scoring_timeout_ms=timeout or 60_000,
        num_replicas=num_replicas, autoscale=_autoscale(d, path, num_replicas),
        traffic_percentile=float(traffic or 0.0), is_default=bool(is_default),
        version_type=CONTROL if (vtype or "").lower() == "control" else TREATMENT, workers=workers or 1,
        replica_args=tuple(extra), resources=resources, gpu_cores=gpu_cores, liveness=liveness, namespace=ns,
        image=image, instance_type=instance_type.strip() if instance_type else None, python=python)


# ------------------------------------------------------------------------------------------ service parsing
def parse_service(name: str, d: Mapping[str, Any], base_dir: str | Path | None = None, path: str | None = None,
                  *, files_must_exist: bool = False) -> ServiceSpec:
    """A service from one deploymentconfig document (plus inference keys). Raises ConfigError.

    `base_dir`: the services file's folder, which relative paths resolve against; None (a document with no
    file, e.g. the admin API's) refuses relative paths. `files_must_exist`: see `parse_version`."""
    path = path if path is not None else f"services.{name}"
    base = Path(base_dir) if base_dir is not None else None
    validate_name(name, path)
    if not isinstance(d, Mapping):
        raise ConfigError(path, f"must be an object, got {type(d).__name__}")
    ctype = _str(d, "computeType", path)
    if not ctype:
        raise ConfigError(f"{path}.computeType", "is required ('aks' or 'aksendpoint')")
    ctype = ctype.lower()
    if ctype not in ("aks", "aksendpoint"):
        raise ConfigError(f"{path}.computeType", f"{ctype!r} is not served by the router; use 'aks' or "
                                                 "'aksendpoint' (Azure's aci/local run without a router)")
    auth = _bool(d, "authEnabled", path)
    token = _bool(d, "tokenAuthEnabled", path)
    if auth and token:
        raise ConfigError(f"{path}.tokenAuthEnabled", "cannot be true together with authEnabled (key and token "
                                                      "auth are exclusive)")
    keys = _obj(d, "keys", path)
    primary = _str(keys, "primaryKey", f"{path}.keys")
    secondary = _str(keys, "secondaryKey", f"{path}.keys")
    for k, v in (("primaryKey", primary), ("secondaryKey", secondary)):
        if v is not None:
            check_key_value(v, f"{path}.keys.{k}")
    max_body = _num(d, "maxRequestBodyBytes", path, integer=True, minimum=0)
    namespace = _str(d, "namespace", path)
    versions: dict[str, VersionSpec] = {}
    if ctype == "aks":
        vname = _str(d, "versionName", path) or name
        validate_name(vname, f"{path}.versionName", "version name")
        versions[vname] = replace(parse_version(vname, d, path, base, files_must_exist), is_default=True,
                                  version_type=CONTROL, traffic_percentile=100.0)
        _check_limits(versions[vname], path)
    else:
        raw = _obj(d, "versions", path)
        if not raw:
            raise ConfigError(f"{path}.versions", "must declare at least one version")
        if len(raw) > MAX_VERSIONS:
            raise ConfigError(f"{path}.versions", f"at most {MAX_VERSIONS} versions per endpoint, got {len(raw)}")
        for vname, vd in raw.items():
            vpath = f"{path}.versions.{vname}"
            validate_name(vname, vpath, "version name")
            for k in _ENDPOINT_LEVEL:
                if isinstance(vd, Mapping) and k in vd:
                    raise ConfigError(f"{vpath}.{k}", "is an endpoint-level setting; set it on the endpoint")
            versions[vname] = parse_version(vname, vd, vpath, base, files_must_exist)
            _check_limits(versions[vname], vpath)
        if namespace is not None and not NAMESPACE_RE.match(namespace):
            raise ConfigError(f"{path}.namespace", f"{namespace!r} must match {NAMESPACE_RE.pattern}")
        versions = {n: replace(v, namespace=namespace) for n, v in versions.items()}  # endpoint-level
        versions = _settle_endpoint(versions, f"{path}.versions")
    mirror = _mirror(d, versions, path)
    spec = ServiceSpec(name=name, compute_type=ctype, versions=versions,
                       auth_enabled=bool(auth) if auth is not None else not token,
                       token_auth_enabled=bool(token), primary_key=primary, secondary_key=secondary,
                       description=_str(d, "description", path) or "",
                       max_body_bytes=max_body or 100 * 1024 * 1024, mirror=mirror, namespace=namespace)
    return spec


def check_key_value(value: str, key: str) -> str:
    """A service key as a client can send it in `Authorization: Bearer <key>`: at least 8 characters of
    printable ASCII, no surrounding spaces (no CR/LF, no control characters). ConfigError naming `key`."""
    if len(value) < 8:
        raise ConfigError(key, "must be at least 8 characters")
    if not (value.isascii() and value.isprintable()) or value != value.strip():
        raise ConfigError(key, "must be printable ASCII without control characters (CR, LF, ...) or "
                               "surrounding spaces")
    return value


def _check_limits(v: VersionSpec, path: str) -> None:
    """Bounds that keep one document from exhausting the machine, and the flags the router owns."""
    if v.num_replicas is not None and v.num_replicas > MAX_REPLICAS:
        raise ConfigError(_key(path, "numReplicas"), f"must be <= {MAX_REPLICAS}, got {v.num_replicas}")
    if v.workers > MAX_WORKERS:
        raise ConfigError(_key(path, "workers"), f"must be <= {MAX_WORKERS}, got {v.workers}")
    for a in v.replica_args:
        if a.split("=", 1)[0] in _RESERVED_REPLICA_ARGS:
            raise ConfigError(_key(path, "replicaArgs"), f"must not set {a.split('=', 1)[0]}: the router "
                                                         "chooses where a replica listens (127.0.0.1)")


def _mirror(d: Mapping[str, Any], versions: Mapping[str, VersionSpec], path: str) -> dict[str, float]:
    """`mirrorTraffic: {version: percent}`: shadow copies to versions that take no live traffic, <= 50 % in all
    (Azure online endpoints' rules), so a mirror can never change what a client sees."""
    mpath = f"{path}.mirrorTraffic" if path else "mirrorTraffic"
    raw = _obj(d, "mirrorTraffic", path)
    if raw and len(versions) < 2:
        raise ConfigError(mpath, "needs an aksendpoint with at least two versions (a copy goes to another version)")
    out: dict[str, float] = {}
    for vname, pct in raw.items():
        vp = f"{mpath}.{vname}"
        if vname not in versions:
            raise ConfigError(vp, f"names no version of this endpoint (versions: {', '.join(versions)})")
        if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 <= pct <= MAX_MIRROR_PERCENT:
            raise ConfigError(vp, f"must be a number from 0 to {MAX_MIRROR_PERCENT:g} (percent), got {pct!r}")
        v = versions[vname]
        if v.is_default or v.traffic_percentile > 0:
            raise ConfigError(vp, "a version that takes live traffic (trafficPercentile > 0 or the default "
                                  "version) cannot also receive mirrored traffic")
        if pct > 0:
            out[vname] = float(pct)
    if sum(out.values()) > MAX_MIRROR_PERCENT + 1e-9:
        raise ConfigError(mpath, f"mirrored traffic adds up to {sum(out.values()):g} %, must be <= "
                                 f"{MAX_MIRROR_PERCENT:g} %")
    return out


def _settle_endpoint(versions: dict[str, VersionSpec], path: str) -> dict[str, VersionSpec]:
    """Exactly one default (else the first) and one control (else the default), traffic <= 100 %."""
    defaults = [n for n, v in versions.items() if v.is_default]
    if len(defaults) > 1:
        raise ConfigError(f"{path}.{defaults[1]}.isDefault", f"only one default version, {defaults[0]!r} already is")
    controls = [n for n, v in versions.items() if v.version_type == CONTROL]
    if len(controls) > 1:
        raise ConfigError(f"{path}.{controls[1]}.type", f"only one Control version, {controls[0]!r} already is")
    total = sum(v.traffic_percentile for v in versions.values())
    if total > 100.0 + 1e-9:
        raise ConfigError(path, f"trafficPercentile values add up to {total:g}, must be <= 100")
    default = defaults[0] if defaults else next(iter(versions))
    control = controls[0] if controls else default
    return {n: replace(v, is_default=(n == default), version_type=CONTROL if n == control else TREATMENT)
            for n, v in versions.items()}


def parse_services_document(doc: Any, base_dir: str | Path | None = None, *,
                            files_must_exist: bool = False) -> dict[str, ServiceSpec]:
    """`{"services": {name: config}}`, or a single deploymentconfig with a top-level `name`."""
    if not isinstance(doc, Mapping):
        raise ConfigError("(document)", f"must be an object, got {type(doc).__name__}")
    if "services" in doc:
        services = doc["services"]
        if not isinstance(services, Mapping):
            raise ConfigError("services", "must be an object mapping service names to configurations")
        return {n: parse_service(n, c, base_dir, files_must_exist=files_must_exist) for n, c in services.items()}
    name = doc.get("name")
    if name is None:
        raise ConfigError("name", "is required when the file holds a single service (or use a 'services' object)")
    validate_name(name, "name")
    return {name: parse_service(name, doc, base_dir, path="", files_must_exist=files_must_exist)}


def config_warnings(doc: Any, where: str) -> list[str]:
    """One line per key openscore does not know (ignored, as Azure does), with the nearest known key."""
    from openscore.router.config_schema import unknown_key_warnings

    if not isinstance(doc, Mapping):
        return []
    found: list[tuple[str, str | None]] = []
    if "services" in doc and isinstance(doc["services"], Mapping):
        found += [(k, None) for k in doc if k not in ("services", "$schema")]
        for n, c in doc["services"].items():
            found += unknown_key_warnings(c, f"services.{n}")
    else:
        found += unknown_key_warnings(doc, "")
    return [f"{where}: ignoring unknown key {key}" + (f" (did you mean {near}?)" if near else "")
            for key, near in found]


def validate_admin_document(name: str, doc: Mapping[str, Any]) -> ServiceSpec:
    """An admin-API PUT body: no folder of its own, so paths must be absolute, and the entry script must
    exist; unknown keys are logged. Raises ConfigError (the admin API's 400 naming the key)."""
    spec = parse_service(name, doc, None, path=f"services.{name}", files_must_exist=True)
    for line in config_warnings({"services": {name: doc}}, f"PUT services/{name}"):
        log.warning("%s", line)
    return spec


def load_services_file(path: str | Path) -> tuple[dict[str, Any], dict[str, ServiceSpec]]:
    """Read a JSON or YAML file; returns (raw per-service documents with absolute paths, parsed specs).
    Relative paths resolve against the file's folder; a missing entry script or source directory, like any
    broken rule, raises ConfigError; unknown keys are logged as warnings naming the file."""
    import yaml  # YAML is a superset of JSON: one parser for both, as Azure's CLI does

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError("(document)", f"cannot be read as JSON or YAML: {' '.join(str(e).split())}") from e
    specs = parse_services_document(doc, p.parent, files_must_exist=True)
    for line in config_warnings(doc, str(p)):
        log.warning("%s", line)
    raw = dict(doc["services"]) if isinstance(doc, Mapping) and "services" in doc else {doc["name"]: doc}
    return {n: absolutize(c, p.parent) for n, c in raw.items()}, specs


def absolutize(doc: Mapping[str, Any], base_dir: str | Path) -> dict[str, Any]:
    """The document with its paths made absolute (sourceDirectory, else entryScript; modelDir), so it can be
    stored and parsed from anywhere to the same spec."""
    out = dict(doc)
    base = Path(base_dir)
    if isinstance(out.get("versions"), Mapping):
        out["versions"] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in out["versions"].items()}
    for holder in [out, *(v for v in (out.get("versions") or {}).values() if isinstance(v, dict))]:
        inference = holder.get("inferenceConfig")
        inference = inference if isinstance(inference, Mapping) else {}
        src = holder.get("sourceDirectory") or inference.get("sourceDirectory")
        entry = holder.get("entryScript") or inference.get("entryScript")
        model_dir = holder.get("modelDir") or inference.get("modelDir")
        if isinstance(src, str) and src:
            holder["sourceDirectory"] = _resolve(src, base)
        elif isinstance(entry, str) and entry:
            holder["entryScript"] = _resolve(entry, base)
        if isinstance(model_dir, str) and model_dir:
            holder["modelDir"] = _resolve(model_dir, base)
    return out


def replicas_for(target_rps: float, request_seconds: float, target_utilization_pct: float = 70.0,
                 slots_per_replica: int = 1) -> int:
    """Azure's sizing formula (spec 4.2): ceil(rps x request time / target utilization / slots per replica)."""
    if target_rps < 0 or request_seconds < 0:
        raise ValueError("target_rps and request_seconds must be >= 0")
    if not 0 < target_utilization_pct <= 100:
        raise ValueError("target utilization must be in (0, 100] percent")
    if slots_per_replica < 1:
        raise ValueError("slots_per_replica must be >= 1")
    return math.ceil(round(target_rps * request_seconds / (target_utilization_pct / 100.0) / slots_per_replica, 9))
