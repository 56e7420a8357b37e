"""What one replica of a version runs: the one translation from a `VersionSpec` that every compute target uses.

The local target turns a plan into a process (argv, environment, cwd, port); a Kubernetes target turns the
same plan into a pod (container command, env, resources, probes, image, node pool). Keeping it in one pure
function means both run the same `openscore serve` with the same flags, and a test can check every field.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass

from openscore.router.config import VersionSpec

READINESS_PATH = "/slots"   # ready only when a slot can take a request; also reports the slot count
LIVENESS_PATH = "/healthz"  # the process answers at all
DEFAULT_PORT = 5001         # Azure's scoring port, for targets that give every replica its own address


@dataclass(frozen=True)
class Probe:
    path: str
    port: int
    period_s: float
    timeout_s: float
    initial_delay_s: float = 0.0
    failure_threshold: int = 1
    success_threshold: int = 1


@dataclass(frozen=True)
class Resources:
    """Per-replica requests and limits; `memory_*` in bytes (Azure's GB are 1024**3, as its pods get Gi)."""
    cpu_request: float
    memory_request_bytes: int
    cpu_limit: float | None
    memory_limit_bytes: int | None
    gpus: int


@dataclass(frozen=True)
class ReplicaPlan:
    service: str
    version: str
    argv: tuple[str, ...]              # the command, interpreter first
    environment: Mapping[str, str]     # the replica's own variables (a target may add its base environment)
    working_dir: str                   # the app root (Azure: cwd = AML_APP_ROOT)
    host: str
    port: int
    readiness: Probe
    liveness: Probe
    resources: Resources
    graceful_s: float                  # drain time the replica is given on SIGTERM
    instance_type: str | None
    image: str | None
    namespace: str | None


def _bytes(gb: float | None) -> int | None:
    return None if gb is None else round(gb * 1024 ** 3)


def replica_plan(spec: VersionSpec, *, service: str, port: int = DEFAULT_PORT, host: str = "127.0.0.1",
                 python: str = sys.executable, graceful_s: float = 10.0,
                 readiness_period_s: float = 1.0, readiness_timeout_s: float = 2.0) -> ReplicaPlan:
    """Translate one version's spec into what each of its replicas runs.

    `host`/`port`: where the replica listens (loopback and a free port for local processes; 0.0.0.0 and 5001
    in a pod). `python`: the interpreter (a pod's image has its own; the spec's pythonInterpreter, a built
    environment, wins). `graceful_s`: how long the replica drains on SIGTERM. `readiness_*`: the readiness
    probe once ready (liveness is the spec's livenessProbeRequirements)."""
    argv = (spec.python or python, "-m", "openscore", "serve", "--entry-script", spec.entry_script,
            "--app-root", spec.app_root, "--model-dir", spec.model_dir, "--host", host, "--port", str(port),
            "--max-concurrent-requests", str(spec.slots_per_replica), "--workers", str(spec.workers),
            "--scoring-timeout-ms", str(spec.scoring_timeout_ms), "--graceful-timeout-s", str(int(graceful_s)),
            *spec.replica_args)
    env = {"PYTHONUNBUFFERED": "1", "SERVICE_NAME": service, "SERVICE_VERSION": spec.name, **spec.environment}
    lp = spec.liveness
    r = spec.resources
    return ReplicaPlan(
        service=service, version=spec.name, argv=argv, environment=env, working_dir=spec.app_root,
        host=host, port=port,
        readiness=Probe(READINESS_PATH, port, period_s=readiness_period_s, timeout_s=readiness_timeout_s),
        liveness=Probe(LIVENESS_PATH, port, period_s=float(lp.period_s), timeout_s=float(lp.timeout_s),
                       initial_delay_s=float(lp.initial_delay_s), failure_threshold=lp.failure_threshold,
                       success_threshold=lp.success_threshold),
        resources=Resources(cpu_request=r.cpu, memory_request_bytes=_bytes(r.memory_gb) or 0,
                            cpu_limit=r.cpu_limit, memory_limit_bytes=_bytes(r.memory_gb_limit), gpus=spec.gpus),
        graceful_s=graceful_s, instance_type=spec.instance_type, image=spec.image, namespace=spec.namespace)
