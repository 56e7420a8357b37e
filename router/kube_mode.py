"""`openscore router --kubernetes`: what the router takes from a cluster instead of a workspace.

The desired state is the namespace's ScoringService objects and Secrets (KubernetesStateStore), the replicas
are pods (KubernetesTarget with manage_deployments=False: the in-cluster router never creates or deletes a
Deployment, it reads them and changes replica counts through the scale subresource), requests go straight to
pod IPs with each version's replica credential. Each service's CR status is written from what the router
sees, at most once per `status_interval_s` per service, after a change of its replicas.

This module is imported only in that mode, so a router without a cluster never loads lightkube.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from openscore.kube import crd
from openscore.kube.client import ForbiddenError, KubeClient, KubeError
from openscore.kube.object_store import KubernetesStateStore
from openscore.kube.target import KubernetesTarget
from openscore.router.state import StateStore
from openscore.router.targets import VersionKey

if TYPE_CHECKING:
    from openscore.kube.leases import RouterLeases
    from openscore.router.core import Router
    from openscore.router.settings import RouterSettings

log = logging.getLogger("openscore.router.kube")
for _name in ("httpx", "httpx2"):  # lightkube's HTTP client logs every API request at INFO: noise in a router's log
    logging.getLogger(_name).setLevel(logging.WARNING)
ADMIN_SECRET, ADMIN_SECRET_KEY = crd.ADMIN_SECRET, crd.ADMIN_SECRET_KEY  # created by `openscore cluster install`


class KubeModeError(Exception):
    """The cluster cannot be used as configured (one line for the user)."""


@dataclass
class ClusterParts:
    client: KubeClient
    namespace: str
    store: StateStore
    target: KubernetesTarget


def open_cluster(kubeconfig: str | None, namespace: str | None) -> ClusterParts:
    """Client (the pod's service account unless a kubeconfig is given), store and target for one namespace."""
    try:
        client = KubeClient.from_kubeconfig(kubeconfig, namespace=namespace) if kubeconfig \
            else KubeClient.in_cluster(namespace)
    except KubeError as e:
        raise KubeModeError(f"cannot use the cluster: {e.message}") from e
    ns = namespace or client.namespace
    return ClusterParts(client, ns, KubernetesStateStore(client, ns),
                        KubernetesTarget(client, ns, manage_deployments=False))


async def admin_key_from_secret(client: KubeClient, namespace: str) -> str:
    """The admin key from Secret `openscore-admin` (data `adminKey`), which `cluster install` writes."""
    try:
        secret = await client.get("v1", "Secret", ADMIN_SECRET, namespace)
    except KubeError as e:
        raise KubeModeError(f"cannot read Secret {namespace}/{ADMIN_SECRET} for the admin key: {e.message}") from e
    raw = ((secret or {}).get("data") or {}).get(ADMIN_SECRET_KEY)
    if not raw:
        raise KubeModeError(f"no admin key: Secret {namespace}/{ADMIN_SECRET} (data {ADMIN_SECRET_KEY}) does not "
                            "exist; run `openscore cluster install`, or set OPENSCORE_ROUTER_ADMIN_KEY")
    try:
        return base64.b64decode(raw, validate=True).decode().strip()
    except (binascii.Error, UnicodeDecodeError) as e:
        raise KubeModeError(f"Secret {namespace}/{ADMIN_SECRET} data {ADMIN_SECRET_KEY} is not base64 text") from e


async def ensure_signing_key(store: StateStore) -> None:
    """The token signing key, created when missing; a least-privilege router that may not create Secrets
    leaves that to `cluster install` (tokens are then refused until it exists)."""
    try:
        await store.ensure_signing_key()
    except ForbiddenError as e:
        log.warning("cannot create the token signing key (%s); token auth waits for it", e.message)


StatusWrite = Callable[[str], Awaitable[bool]]  # True: the state is settled (Healthy, Failed...)


def status_writer(client: KubeClient, namespace: str) -> StatusWrite:
    """`write(service)`: the service's Azure state from the cluster (openscore.kube.status) into its CR status."""
    from openscore.kube import status as kstatus

    async def write(service: str) -> bool:
        st = await kstatus.read_service_status(client, namespace, service, with_logs=True)
        await kstatus.write_status(client, namespace, service, st)
        # Transitioning and Unschedulable move on without a replica change the router would see (the
        # Deployment's counts catch up after the pod's Ready; the scheduling deadline passes): look again
        return st.state not in (kstatus.TRANSITIONING, kstatus.UNSCHEDULABLE)
    return write


class StatusPublisher:
    """Rate-limited status writes: one per service at a time, at most once per `interval_s`; a change during
    a write or inside the interval is written once the interval is over (the last state wins). A service still
    Transitioning or Unschedulable is looked at again each interval until it settles."""

    def __init__(self, write: StatusWrite, interval_s: float):
        self.write = write
        self.interval_s = interval_s
        self._pending: set[str] = set()
        self._last: dict[str, float] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopped = False
        self.should_write: Callable[[str], bool] = lambda service: True

    def changed(self, key: VersionKey) -> None:
        """The router's replica hook (sync, on the loop)."""
        if self._stopped:
            return
        service = key[0]
        self._pending.add(service)
        if service not in self._tasks:
            self._tasks[service] = asyncio.create_task(self._run(service), name=f"router-status-{service}")

    async def _run(self, service: str) -> None:
        try:
            while service in self._pending and not self._stopped:
                wait = self._last.get(service, 0.0) + self.interval_s - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._pending.discard(service)
                self._last[service] = time.monotonic()
                if not self.should_write(service):
                    continue
                try:
                    if not await self.write(service):
                        self._pending.add(service)
                except KubeError as e:
                    if e.status != 404:  # a deleted service has no status to write
                        log.warning("could not write the status of %s: %s", service, e.message)
                except Exception:
                    log.exception("could not write the status of %s", service)
        finally:
            self._tasks.pop(service, None)

    async def stop(self) -> None:
        self._stopped = True
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def coordinate(router: Router, parts: ClusterParts, settings: RouterSettings, admin_key: str) -> RouterLeases:
    """Several router pods: each service's coordinator is chosen by a Lease (openscore.kube.leases); the
    router admits through it (openscore.router.coordination). Returns the elector, not yet started."""
    from openscore.kube.leases import MEMBER_PREFIX, RouterLeases
    from openscore.router.coordination import Coordination, Holder, peer_token

    pod = os.environ.get("POD_NAME") or socket.gethostname()
    address = settings.advertise_address or f"{os.environ.get('POD_IP') or settings.host}:{settings.port}"
    identity = f"{pod}_{uuid.uuid4().hex[:8]}"  # per process: a restarted router is a new holder
    coord = Coordination(identity, address, peer_token(admin_key), router.pool_for, router.keys_of, elected=True)
    coord.on_count = lambda how: router.metrics.admitted.labels(how).inc()
    router.coordinate(coord)

    def on_holder(service: str, holder: str | None, at: str | None) -> None:
        coord.set_holder(service, Holder(holder, at) if holder and at else None)

    def on_members(n: int) -> None:
        coord.set_live_routers(n)
        router.metrics.live_routers.set(n)

    def on_error(problem: str | None) -> None:
        coord.problem = problem
        router.metrics.coordination_problem.set(0 if problem is None else 1)

    return RouterLeases(parts.client, parts.namespace, identity, address, MEMBER_PREFIX + pod,
                        lambda: list(router.services), on_holder, on_members,
                        duration_s=settings.lease_duration_s, on_error=on_error)
