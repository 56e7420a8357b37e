"""`wait_for_deployment` for a service in the cluster: WATCH its ScoringService, Deployments, pods and the
events about them, recompute the state on every change, and return as soon as it is Healthy or a terminal
Failed (an init() that raised, an image that cannot be pulled, the scheduling deadline passed): a failure that
happens in seconds is reported in seconds, never at the timeout (KServe's watch waits for the timeout).

Progress goes to `show_output` as lines a user can follow ("Pod x: Pulling: Pulling image ...", "State:
Unschedulable: 0/4 nodes are available: ..."), each said once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

from openscore.kube import crd
from openscore.kube.client import GoneError, KubeClient, NotFoundError
from openscore.kube.status import (
    DEFAULT_UNSCHEDULABLE_DEADLINE_S,
    FAILED,
    UNSCHEDULABLE,
    ServiceStatus,
    service_status,
    status_from,
    unschedulable_since,
)

Obj = dict[str, Any]
_EVENT_REASONS = ("Scheduled", "FailedScheduling", "Pulling", "Pulled", "Failed", "BackOff", "Started",
                  "Killing", "Unhealthy", "OOMKilling", "FailedCreate", "ScalingReplicaSet", "ErrImageNeverPull")


class _Watched:
    """The service's objects as the watches last reported them."""

    def __init__(self, name: str):
        self.name = name
        self.cr: Obj | None = None
        self.deployments: dict[str, Obj] = {}
        self.pods: dict[str, Obj] = {}
        self.events: dict[str, Obj] = {}

    def mine(self, event: Obj) -> bool:
        inv = event.get("involvedObject") or {}
        return (inv.get("name") in self.pods or inv.get("name") in self.deployments
                or str(inv.get("name", "")).startswith(tuple(f"{d}-" for d in self.deployments)))

    def apply(self, kind: str, etype: str, obj: Obj) -> None:
        name = (obj.get("metadata") or {}).get("name", "")
        if kind == crd.KIND:
            self.cr = None if etype == "DELETED" else obj
            return
        table = {"Deployment": self.deployments, "Pod": self.pods, "Event": self.events}[kind]
        if etype == "DELETED":
            table.pop(name, None)
        else:
            table[name] = obj


async def _pump(client: KubeClient, queue: asyncio.Queue[tuple[str, str, Obj] | BaseException], kind: str,
                api_version: str, namespace: str, rv: str, **selectors: Any) -> None:
    """Feed one watch into the queue; an error (410 Gone included) is queued for the waiter to relist."""
    agen = cast(AsyncGenerator[tuple[str, Obj], None], client.watch(
        api_version, kind, namespace, resource_version=rv, **selectors))
    try:
        async for etype, obj in agen:
            await queue.put((kind, etype, obj))
    except Exception as e:  # handed to the waiter, which relists (410) or raises it
        await queue.put(e)
    finally:
        await agen.aclose()


def _progress(w: _Watched, seen: set[str], status: ServiceStatus, last_state: list[str]) -> list[str]:
    lines: list[str] = []
    for uid, ev in sorted(w.events.items(), key=lambda kv: str(kv[1].get("lastTimestamp") or
                                                               kv[1].get("eventTime") or "")):
        key = f"{uid}/{ev.get('count', 1)}"
        if key in seen or ev.get("reason") not in _EVENT_REASONS or not w.mine(ev):
            continue
        seen.add(key)
        inv = ev.get("involvedObject") or {}
        lines.append(f"{inv.get('kind')} {inv.get('name')}: {ev.get('reason')}: {ev.get('message', '')}")
    said = f"{status.state}: {(status.error or {}).get('message', '')}" if status.error else status.state
    if not last_state or last_state[-1] != said:
        last_state.append(said)
        lines.append(f"State: {said}")
    return lines


def _next_deadline(w: _Watched, deadline_s: float) -> float | None:
    """When the oldest unschedulable pod passes the scheduling deadline (a state change with no event)."""
    since = [u[1] for p in w.pods.values() if (u := unschedulable_since(p, list(w.events.values()))) is not None]
    return min(since) + deadline_s if since else None


async def wait_for_service(client: KubeClient, namespace: str, name: str, *, timeout_s: float,
                           show_output: Callable[[str], None] | None = None,
                           unschedulable_deadline_s: float = DEFAULT_UNSCHEDULABLE_DEADLINE_S) -> ServiceStatus:
    """The service's state once Healthy or Failed, or at `timeout_s` (whatever it is then: the caller says
    it timed out). Watches, never polls; every watch is closed on return."""
    end = time.monotonic() + timeout_s
    sel = {crd.LABEL_SERVICE: name, crd.LABEL_COMPONENT: crd.COMPONENT_REPLICA}
    say = show_output or (lambda _line: None)
    seen: set[str] = set()
    said: list[str] = []
    while True:  # (re)list, then watch from the lists' versions; a watch error (410) comes back here
        w = _Watched(name)
        queue: asyncio.Queue[tuple[str, str, Obj] | BaseException] = asyncio.Queue()
        crs, cr_rv = await client.list(crd.API_VERSION, crd.KIND, namespace)
        w.cr = next((c for c in crs if c["metadata"]["name"] == name), None)
        deps, dep_rv = await client.list("apps/v1", "Deployment", namespace, label_selector=sel)
        pods, pod_rv = await client.list("v1", "Pod", namespace, label_selector=sel)
        events, ev_rv = await client.list("v1", "Event", namespace)
        for kind, items in (("Deployment", deps), ("Pod", pods), ("Event", events)):
            for o in items:
                w.apply(kind, "ADDED", o)
        tasks = [asyncio.create_task(_pump(client, queue, crd.KIND, crd.API_VERSION, namespace, cr_rv,
                                           field_selector=f"metadata.name={name}")),
                 asyncio.create_task(_pump(client, queue, "Deployment", "apps/v1", namespace, dep_rv,
                                           label_selector=sel)),
                 asyncio.create_task(_pump(client, queue, "Pod", "v1", namespace, pod_rv, label_selector=sel)),
                 asyncio.create_task(_pump(client, queue, "Event", "v1", namespace, ev_rv))]
        try:
            result = await _watch_loop(client, namespace, w, queue, end, say, seen, said, unschedulable_deadline_s)
            if result is not None:
                return result
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t


async def _watch_loop(client: KubeClient, namespace: str, w: _Watched,
                      queue: asyncio.Queue[tuple[str, str, Obj] | BaseException], end: float,
                      say: Callable[[str], None], seen: set[str], said: list[str],
                      deadline_s: float) -> ServiceStatus | None:
    """Recompute on every change until terminal or timed out; None = a watch broke, relist."""
    while True:
        if w.cr is None:
            raise NotFoundError(404, "NotFound", f"no service {w.name!r} in namespace {namespace}")
        st = service_status(w.cr, list(w.deployments.values()), list(w.pods.values()), list(w.events.values()),
                            now=time.time(), unschedulable_deadline_s=deadline_s)
        for line in _progress(w, seen, st, said):
            say(line)
        if st.terminal or time.monotonic() >= end:
            if st.state == FAILED:  # with the crashed run's last log lines
                st = await status_from(client, namespace, w.cr, list(w.deployments.values()),
                                       list(w.pods.values()), list(w.events.values()),
                                       unschedulable_deadline_s=deadline_s)
            return st
        wait = end - time.monotonic()
        if st.state == UNSCHEDULABLE and (due := _next_deadline(w, deadline_s)) is not None:
            wait = min(wait, max(0.05, due - time.time()))
        try:
            item = await asyncio.wait_for(queue.get(), timeout=max(0.01, wait))
        except TimeoutError:
            continue
        if isinstance(item, GoneError):
            return None
        if isinstance(item, BaseException):
            raise item
        kind, etype, obj = item
        w.apply(kind, etype, obj)
        while not queue.empty():  # take every change already here before recomputing
            more = queue.get_nowait()
            if isinstance(more, BaseException):
                if isinstance(more, GoneError):
                    return None
                raise more
            w.apply(more[0], more[1], more[2])
