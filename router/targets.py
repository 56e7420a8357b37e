"""The compute-target interface: where replicas of a version run. The router only asks for counts and reads
back what exists; replicas appear, become ready, crash and disappear *asynchronously*, as Kubernetes pods do.

Contract (what the deployer's Kubernetes target must also honour):
- `deploy(key, spec, n)` records the template and the wanted count and returns at once; replicas show up
  later through `replicas(key)` and an `on_change(key)` call. A new template (different
  `VersionSpec.launch_fingerprint()`) starts new replicas next to the old ones, which are reported with
  `outdated=True` until the router has drained them and called `remove_replica`.
- `remove_replica(key, id)` stops one replica the router has already taken out of routing and drained,
  and lowers the wanted count by one (scale-down never picks a busy replica at random).
- A replica is routable only while `ready`; "running but not ready" is a normal state.
- Each replica gets its own random secret (`ReplicaInfo.secret`, in its environment as
  `OPENSCORE_REPLICA_SECRET`); the router sends it on every request, and the replica refuses scoring
  requests without it, so a replica's address is never a way around the router's auth.
- What a replica runs (command, environment, probes, resources, image, instance type) is
  `openscore.router.replica_plan.replica_plan(spec, ...)`: every target builds its replicas from it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

from openscore.router.config import VersionSpec

VersionKey = tuple[str, str]  # (service, version)
ChangeCallback = Callable[[VersionKey], None]

STARTING, READY, UNREADY, CRASHED, STOPPING = "starting", "ready", "unready", "crashed", "stopping"


@dataclass(frozen=True)
class ReplicaInfo:
    id: str                  # unique per process/pod instance: a restart is a new id
    key: VersionKey
    address: str             # base URL, e.g. http://127.0.0.1:41234
    phase: str               # one of STARTING, READY, UNREADY, CRASHED, STOPPING
    slots: int | None = None  # slots the replica reports (GET /slots), None until known
    outdated: bool = False   # runs an older template; to be drained and removed
    reason: str = ""         # why it is not ready (init failure, exit code...)
    # sent by the router as `x-openscore-replica-secret` on every request: the replica answers nobody else
    secret: str = field(default="", repr=False)

    @property
    def ready(self) -> bool:
        return self.phase == READY


class ComputeTarget(abc.ABC):
    # several routers on one cluster: says whether this router writes a service's replica count (it is its
    # coordinator); where it does not, the target follows the count it finds instead of correcting it
    count_owner: Callable[[str], bool] | None = None

    def owns_count(self, service: str) -> bool:
        return self.count_owner is None or self.count_owner(service)

    @abc.abstractmethod
    async def start(self, on_change: ChangeCallback) -> None:
        """Begin supervising; `on_change(key)` is called (on the event loop) when a key's replicas change."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop every replica this target started (graceful, then forced) and all background tasks."""

    @abc.abstractmethod
    async def deploy(self, key: VersionKey, spec: VersionSpec, replicas: int) -> None:
        """Create or update a version's template and wanted replica count."""

    @abc.abstractmethod
    async def scale(self, key: VersionKey, replicas: int) -> None:
        """Change the wanted count; a lower count stops replicas only through `remove_replica`."""

    @abc.abstractmethod
    async def remove_replica(self, key: VersionKey, replica_id: str) -> None:
        """Stop one (already drained) replica and lower the wanted count by one if it was current."""

    @abc.abstractmethod
    async def delete(self, key: VersionKey) -> None:
        """Remove a version and stop all its replicas."""

    @abc.abstractmethod
    def replicas(self, key: VersionKey) -> list[ReplicaInfo]: ...

    @abc.abstractmethod
    def wanted(self, key: VersionKey) -> int: ...

    @abc.abstractmethod
    def keys(self) -> set[VersionKey]: ...

    def report_unreachable(self, replica_id: str) -> None:  # noqa: B027 (an optional hint, not abstract)
        """The router could not connect to this replica: re-check it now (optional hint)."""
