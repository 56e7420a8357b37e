"""Several routers in front of the same replicas: one coordinating router per service (docs/router-ha.md).

Azure's front end works this way: a router asks the service's coordinating router for a back end, forwards
the request itself, and tells the coordinator when the back end is free again. Here:

- the coordinator of a service is whichever router holds its Lease (openscore.kube.leases elects it and
  calls `set_holder`); it admits every request of the service, its own and its peers', on its `SlotPool`,
  so slots are exact and there is one FIFO queue with one deadline, and it alone runs the autoscaler, from
  the utilization of all routers' requests;
- a peer asks over one WebSocket per coordinator (`PeerLink`): `acquire` waits on the coordinator's queue
  and is answered with a replica, `release` is one message; a link that closes releases all of its slots
  on the coordinator, so a dead router never leaks one;
- a peer keeps a slot granted at once for a moment after its request (`keep_s`, at most `keep_max` per
  version) and gives it to its next request without asking: under steady load most of a peer's requests
  skip the round trip. The coordinator still counts the kept slot as busy, so slots stay exact; the moment
  one of its requests has to wait it recalls kept slots from every peer, so none idles while it has a queue;
- every router counts its own requests in flight in its own pool, whoever admitted them. When a service's
  coordinator changes, each router declares its in-flight slots to the new one (`hold`), which counts them
  before admitting more; while no coordinator can be reached a router admits on its own, up to
  1/(live routers) of each replica's slots, so together they never exceed a replica's slots.

This module is plain asyncio + aiohttp and knows nothing of Kubernetes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from aiohttp.web_request import BaseRequest

from openscore.router.balancer import Backend, Lease, Rejected, SlotPool
from openscore.router.targets import VersionKey

log = logging.getLogger("openscore.router.coordination")

WS_PATH = "/internal/v1/coordination"
_PEER_CONTEXT = b"openscore-router-peer-v1"


def peer_token(admin_key: str) -> str:
    """What routers show each other: derived from the admin key they all hold, so the key itself never
    travels between them and a peer token grants nothing on the admin API."""
    return hmac.new(admin_key.encode(), _PEER_CONTEXT, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Holder:
    identity: str
    address: str  # host:port of its router port


class TrackedLease(Lease):
    """A slot this router holds for one of its requests, counted in its own pool whoever admitted it."""

    def __init__(self, coord: Coordination, key: VersionKey, pool: SlotPool, backend: Backend,
                 queue_wait_s: float, link: PeerLink | None = None, grant: int = 0, keepable: bool = False):
        super().__init__(pool, backend, queue_wait_s)
        self.coord, self.key, self.link, self.grant = coord, key, link, grant
        self.keepable = keepable  # granted at once (no queue on the coordinator): may be kept for the next one

    def release(self) -> None:
        if self.released:
            return
        super().release()
        self.coord._inflight.discard(self)
        if self.link is not None and not self.link.keep(self.key, self.grant, self.backend.id, self.keepable):
            self.link.release(self.grant)


class NotCoordinator(Exception):
    """The router asked no longer coordinates the service (its Lease moved): ask again elsewhere."""


class LinkDown(Exception):
    """The coordinator cannot be reached (not started, gone, or the link broke)."""


class PeerLink:
    """The client end: one WebSocket to one coordinating router, shared by all requests to it."""

    def __init__(self, coord: Coordination, address: str):
        self.coord = coord
        self.address = address
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connecting: asyncio.Task[aiohttp.ClientWebSocketResponse] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self.down_until = 0.0  # after a failed connect: admit locally until then instead of retrying each time
        self.closed = False
        # slots granted to this router, kept after their request for the next one: (grant id, backend, since)
        self._kept: dict[VersionKey, list[tuple[int, str, float]]] = {}
        self._kept_timer: asyncio.TimerHandle | None = None
        self._no_keep_until: dict[VersionKey, float] = {}  # recalled: until then slots go straight back

    @property
    def up(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        c = self.coord
        try:
            ws = await c.session.ws_connect(f"http://{self.address}{WS_PATH}", heartbeat=c.heartbeat_s,
                                            headers={"Authorization": f"Bearer {c.token}"},
                                            timeout=aiohttp.ClientWSTimeout(ws_close=1.0), autoping=True,
                                            max_msg_size=1 << 20)
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            self.down_until = time.monotonic() + c.retry_s
            raise LinkDown(f"cannot reach the coordinating router at {self.address}: {e!r}") from e
        self._ws = ws
        self._reader = asyncio.create_task(self._read(ws), name=f"router-peer-{self.address}")
        await self.coord._declare(self)
        log.info("linked to the coordinating router at %s", self.address)
        return ws

    async def ws(self) -> aiohttp.ClientWebSocketResponse:
        if self.up:
            assert self._ws is not None
            return self._ws
        if self.closed or time.monotonic() < self.down_until:
            raise LinkDown(f"the coordinating router at {self.address} was unreachable a moment ago")
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.create_task(self._connect())
        try:
            return await asyncio.wait_for(asyncio.shield(self._connecting), self.coord.connect_timeout_s)
        except TimeoutError:
            self.down_until = time.monotonic() + self.coord.retry_s
            raise LinkDown(f"the coordinating router at {self.address} did not answer in time") from None

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                m = json.loads(msg.data)
                fut = self._pending.pop(m.get("id", 0), None)
                if fut is not None and not fut.done():
                    fut.set_result(m)
                elif m.get("op") == "grant":  # its request gave up meanwhile: hand the slot straight back
                    self._send({"op": "release", "id": m["id"]})
                elif m.get("op") == "recall":
                    self.recall((str(m.get("s")), str(m.get("v"))))
        except Exception as e:  # a broken frame is a broken link
            log.warning("link to the coordinating router at %s failed: %r", self.address, e)
        finally:
            self._lost(ws)

    def _lost(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        if self._ws is ws:
            self._ws = None
            self.down_until = time.monotonic() + self.coord.retry_s
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(LinkDown(f"the link to the coordinating router at {self.address} closed"))
        self._pending.clear()
        self._kept.clear()  # released on the coordinator with the link
        # the coordinator released everything this link held; the requests still in flight are declared
        # again to whichever router coordinates next
        for lease in self.coord._inflight:
            if lease.link is self:
                lease.link = None
        log.info("link to the coordinating router at %s closed", self.address)

    def _send(self, m: dict[str, Any]) -> None:
        ws = self._ws
        if ws is not None and not ws.closed:
            # send_str only buffers the frame on the transport: the task is done at once
            asyncio.ensure_future(ws.send_str(json.dumps(m, separators=(",", ":")))).add_done_callback(_quiet)

    def next_id(self) -> int:
        return next(self._ids)

    async def acquire(self, key: VersionKey, wait_s: float) -> tuple[int, dict[str, Any]]:
        await self.ws()
        gid = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[gid] = fut
        self._send({"op": "acquire", "id": gid, "s": key[0], "v": key[1], "w": round(wait_s * 1000, 3)})
        try:
            # the coordinator answers by the deadline itself; the margin covers a coordinator that hangs
            return gid, await asyncio.wait_for(fut, wait_s + self.coord.connect_timeout_s)
        except TimeoutError:
            self._pending.pop(gid, None)
            self._send({"op": "cancel", "id": gid})
            raise LinkDown(f"the coordinating router at {self.address} did not answer within the wait") from None
        except asyncio.CancelledError:  # the client went away while queued
            self._pending.pop(gid, None)
            self._send({"op": "cancel", "id": gid})
            raise

    def release(self, gid: int) -> None:
        self._send({"op": "release", "id": gid})

    # ---------------------------------------------------------- kept slots
    def keep(self, key: VersionKey, gid: int, backend_id: str, keepable: bool) -> bool:
        """Keep a finished request's slot for this router's next request of the version, if allowed."""
        c = self.coord
        kept = self._kept.setdefault(key, [])
        now = time.monotonic()
        if not keepable or c.keep_s <= 0 or not self.up or len(kept) >= c.keep_max \
                or now < self._no_keep_until.get(key, 0.0):
            return False
        kept.append((gid, backend_id, now))
        if self._kept_timer is None:
            self._kept_timer = asyncio.get_running_loop().call_later(c.keep_s, self._expire_kept)
        return True

    def take_kept(self, key: VersionKey, pool: SlotPool) -> tuple[int, Backend] | None:
        """A kept slot on a replica this router still routes to (the newest: its connection is warm)."""
        kept = self._kept.get(key)
        while kept:
            gid, bid, _ = kept.pop()
            b = pool.backends.get(bid)
            if b is not None and b.routable and self.up:
                return gid, b
            self.release(gid)
        return None

    def give_back(self, key: VersionKey) -> None:
        for gid, _, _ in self._kept.pop(key, []):
            self.release(gid)

    def recall(self, key: VersionKey) -> None:
        """The coordinator has a queue for the version: give its kept slots back and keep none for a while."""
        self.give_back(key)
        self._no_keep_until[key] = time.monotonic() + self.coord.recall_s

    def kept(self) -> int:
        return sum(len(v) for v in self._kept.values())

    def _expire_kept(self) -> None:
        self._kept_timer = None
        old = time.monotonic() - self.coord.keep_s
        for kept in self._kept.values():
            while kept and kept[0][2] <= old:
                self.release(kept.pop(0)[0])
        if any(self._kept.values()):
            self._kept_timer = asyncio.get_running_loop().call_later(self.coord.keep_s / 2, self._expire_kept)

    def hold(self, items: list[tuple[int, VersionKey, str]]) -> None:
        if items:
            self._send({"op": "hold", "items": [[g, k[0], k[1], b] for g, k, b in items]})

    async def close(self) -> None:
        self.closed = True
        if self._kept_timer is not None:
            self._kept_timer.cancel()
        self._kept.clear()  # the link's close releases them on the coordinator
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


def _quiet(t: asyncio.Future[Any]) -> None:
    if not t.cancelled():
        t.exception()  # a send on a closing link fails; the link's reader reports the loss


class PeerSession:
    """The coordinator's end of one peer's link: the slots granted over it, released when it closes."""

    def __init__(self, coord: Coordination, ws: web.WebSocketResponse, peer: str):
        self.coord, self.ws, self.peer = coord, ws, peer
        self.granted: dict[int, Lease] = {}
        self.waiting: dict[int, asyncio.Task[None]] = {}

    def send(self, m: dict[str, Any]) -> None:
        if not self.ws.closed:
            asyncio.ensure_future(self.ws.send_str(json.dumps(m, separators=(",", ":")))).add_done_callback(_quiet)

    def on_message(self, m: dict[str, Any]) -> None:
        op, gid = m.get("op"), m.get("id")
        if op == "acquire" and isinstance(gid, int):
            self._acquire(gid, (str(m.get("s")), str(m.get("v"))), float(m.get("w") or 0) / 1000.0)
        elif op == "release" and isinstance(gid, int):
            lease = self.granted.pop(gid, None)
            if lease is not None:
                lease.release()
        elif op == "cancel" and isinstance(gid, int):
            t = self.waiting.pop(gid, None)
            if t is not None:
                t.cancel()
            lease = self.granted.pop(gid, None)
            if lease is not None:
                lease.release()
        elif op == "hold":
            for item in m.get("items") or ():
                gid, svc, ver, backend = item
                pool = self.coord.pool_for((svc, ver))
                held = pool.adopt(backend) if pool is not None else None
                if held is not None:
                    self.granted[int(gid)] = held
        else:
            raise ValueError(f"unknown coordination message {op!r}")

    def _acquire(self, gid: int, key: VersionKey, wait_s: float) -> None:
        if not self.coord.coordinates(key[0]):
            self.send({"op": "moved", "id": gid})
            return
        pool = self.coord.pool_for(key)
        if pool is None:
            self.send({"op": "reject", "id": gid, "reason": "no_version", "msg": f"no version {key[1]}",
                       "waited": 0.0})
            return
        lease = pool.try_acquire()
        if lease is not None:
            self._grant(gid, lease, keepable=True)
            return
        self.coord.recall(key)
        self.waiting[gid] = asyncio.create_task(self._wait(gid, pool, wait_s))

    async def _wait(self, gid: int, pool: SlotPool, wait_s: float) -> None:
        try:
            lease = await pool.acquire(wait_s)
        except Rejected as e:
            self.send({"op": "reject", "id": gid, "reason": e.reason, "msg": e.message, "waited": e.waited_s})
            return
        finally:
            self.waiting.pop(gid, None)
        if self.ws.closed:
            lease.release()
        else:
            self._grant(gid, lease)

    def _grant(self, gid: int, lease: Lease, keepable: bool = False) -> None:
        self.granted[gid] = lease
        b = lease.backend
        self.send({"op": "grant", "id": gid, "b": b.id, "a": b.address, "q": lease.queue_wait_s,
                   "k": int(keepable)})

    def close(self) -> None:
        for t in self.waiting.values():
            t.cancel()
        self.waiting.clear()
        for lease in self.granted.values():
            lease.release()
        n = len(self.granted)
        self.granted.clear()
        if n:
            log.info("router %s left: released the %d slot(s) it held", self.peer, n)


class Coordination:
    """Who coordinates which service, and admission through it. Without any `set_holder` call (one router,
    or the workspace mode) every service is coordinated here and admission is the plain local pool.
    `elected`: an elector will call `set_holder`; until it first does, this router coordinates nothing (a
    router joining the others must not scale or write the count of services another one coordinates)."""

    def __init__(self, identity: str, address: str, token: str, pool_for: Callable[[VersionKey], SlotPool | None],
                 keys_of: Callable[[str], list[VersionKey]], *, elected: bool = False,
                 connect_timeout_s: float = 1.0, retry_s: float = 1.0, heartbeat_s: float = 5.0,
                 keep_s: float = 0.1, keep_max: int = 2, recall_s: float = 1.0):
        self.identity = identity
        self.address = address
        self.token = token
        self.pool_for = pool_for
        self.keys_of = keys_of
        self.connect_timeout_s = connect_timeout_s
        self.retry_s = retry_s
        self.heartbeat_s = heartbeat_s
        self.keep_s, self.keep_max, self.recall_s = keep_s, keep_max, recall_s  # kept slots (PeerLink.keep)
        self._recalled: dict[VersionKey, float] = {}
        self.live_routers = 1
        self.enabled = elected  # False: alone until an elector's first `set_holder`
        self.closed = False
        self.problem: str | None = None  # why coordination may not work (the elector's last error)
        self._holders: dict[str, Holder | None] = {}
        self._links: dict[str, PeerLink] = {}
        self._sessions: set[PeerSession] = set()
        self._inflight: set[TrackedLease] = set()
        self._session: aiohttp.ClientSession | None = None
        self.on_role: Callable[[str, bool], None] | None = None  # (service, coordinates here): the router's hook
        self.stats = {"local": 0, "remote": 0, "kept": 0, "fallback": 0, "moved": 0}
        self.on_count: Callable[[str], None] | None = None  # the router's metrics

    def _count(self, how: str) -> None:
        self.stats[how] += 1
        if self.on_count is not None:
            self.on_count(how)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False))
        return self._session

    # ------------------------------------------------------------------ roles (from the elector)
    def coordinates(self, service: str) -> bool:
        if not self.enabled:
            return True
        h = self._holders.get(service)
        return h is not None and h.identity == self.identity

    def holder(self, service: str) -> Holder | None:
        return self._holders.get(service)

    def set_holder(self, service: str, holder: Holder | None) -> None:
        before = self.coordinates(service)
        old = self._holders.get(service)
        self._holders[service] = holder
        self.enabled = True
        if old != holder:
            log.info("service %s: coordinated by %s", service,
                     "this router" if holder and holder.identity == self.identity else
                     (f"{holder.identity} at {holder.address}" if holder else "nobody (admitting locally)"))
            for other in self._links.values():  # kept slots belong to the coordinator that granted them
                if holder is None or other.address != holder.address:
                    for key in {k for k in other._kept if k[0] == service}:
                        other.give_back(key)
            if holder is not None and holder.identity != self.identity:
                link = self._links.get(holder.address)
                if link is not None and link.up:
                    asyncio.ensure_future(self._declare(link)).add_done_callback(_quiet)
        self._set_share(service)
        now = self.coordinates(service)
        if now != before and self.on_role is not None:
            self.on_role(service, now)

    def forget(self, service: str) -> None:
        self._holders.pop(service, None)

    def set_live_routers(self, n: int) -> None:
        self.live_routers = max(1, n)
        for service in list(self._holders):
            self._set_share(service)

    def _set_share(self, service: str) -> None:
        """The coordinator (or a router alone) fills whole replicas; the others fill a share when they
        must admit on their own."""
        share = 1 if self.coordinates(service) else self.live_routers
        for key in self.keys_of(service):
            pool = self.pool_for(key)
            if pool is not None and pool.share != share:
                pool.set_share(share)

    # ------------------------------------------------------------------ admission (the front end's calls)
    def try_acquire(self, key: VersionKey, pool: SlotPool) -> Lease | None:
        if not self.coordinates(key[0]):
            return None
        lease = pool.try_acquire()
        if lease is None:
            return None
        self._count("local")
        return self._track(key, lease, None, 0)

    async def acquire(self, key: VersionKey, pool: SlotPool, wait_s: float) -> Lease:
        """A slot on one of the version's replicas within `wait_s`, or Rejected."""
        deadline = time.monotonic() + wait_s
        start = time.monotonic()
        for _ in range(3):  # a Lease that moves while we ask: ask the new holder
            h = self._holders.get(key[0]) if self.enabled else None
            if h is None or h.identity == self.identity:
                break
            link = self._link(h.address)
            kept = link.take_kept(key, pool)
            if kept is not None:
                pool._take(kept[1])
                self._count("kept")
                return self._track(key, Lease(pool, kept[1], time.monotonic() - start), link, kept[0], True)
            try:
                gid, m = await link.acquire(key, max(0.0, deadline - time.monotonic()))
            except LinkDown as e:
                log.debug("admitting %s/%s locally: %s", *key, e)
                self._count("fallback")
                break
            op = m.get("op")
            if op == "grant":
                b = pool.backends.get(m["b"]) or _stranger(pool, m)
                pool._take(b)
                self._count("remote")
                return self._track(key, Lease(pool, b, time.monotonic() - start), link, gid, bool(m.get("k")))
            if op == "reject":
                raise Rejected(m.get("reason") or "overloaded", m.get("msg") or "no free slot",
                               time.monotonic() - start)
            self._count("moved")  # "moved": that router lost the Lease; the elector tells us the new one
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        lease = pool.try_acquire()
        if lease is None:
            if self.coordinates(key[0]):
                self.recall(key)
            lease = await pool.acquire(max(0.0, deadline - time.monotonic()))
        lease.queue_wait_s = time.monotonic() - start
        self._count("local")
        return self._track(key, lease, None, 0)

    def _track(self, key: VersionKey, lease: Lease, link: PeerLink | None, gid: int,
               keepable: bool = False) -> TrackedLease:
        t = TrackedLease(self, key, lease.pool, lease.backend, lease.queue_wait_s, link, gid, keepable)
        lease.released = True  # ownership moves to the tracked lease (the slot itself stays taken)
        self._inflight.add(t)
        return t

    def _link(self, address: str) -> PeerLink:
        link = self._links.get(address)
        if link is None or link.closed:
            link = self._links[address] = PeerLink(self, address)
        return link

    async def _declare(self, link: PeerLink) -> None:
        """Tell a coordinator of the slots this router holds for its services that it does not know of."""
        items = []
        for lease in list(self._inflight):
            h = self._holders.get(lease.key[0])
            if lease.released or h is None or h.address != link.address or lease.link is link:
                continue
            lease.link, lease.grant = link, link.next_id()
            items.append((lease.grant, lease.key, lease.backend.id))
        link.hold(items)

    # ------------------------------------------------------------------ the coordinator's end
    def recall(self, key: VersionKey) -> None:
        """A request of `key` has to wait here: peers give back the slots they keep (once per 50 ms at most,
        while the queue lasts; each recall stops keeping for `recall_s`)."""
        now = time.monotonic()
        if not self._sessions or now - self._recalled.get(key, -1.0) < 0.05:
            return
        self._recalled[key] = now
        for s in self._sessions:
            s.send({"op": "recall", "s": key[0], "v": key[1]})

    def authorized(self, request: BaseRequest) -> bool:
        got = request.headers.get("Authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {self.token}".encode())

    async def serve_peer(self, request: BaseRequest) -> web.StreamResponse:
        if not self.authorized(request):
            return web.json_response({"message": "coordination needs the routers' peer token"}, status=401)
        ws = web.WebSocketResponse(heartbeat=self.heartbeat_s, max_msg_size=1 << 20)
        await ws.prepare(request)
        peer = request.remote or "?"
        session = PeerSession(self, ws, peer)
        self._sessions.add(session)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    try:
                        session.on_message(json.loads(msg.data))
                    except (ValueError, TypeError, KeyError) as e:
                        log.warning("router %s sent a bad coordination message (%s); closing its link", peer, e)
                        await ws.close(code=aiohttp.WSCloseCode.UNSUPPORTED_DATA)
                        break
        finally:
            self._sessions.discard(session)
            session.close()
        return ws

    async def close(self) -> None:
        self.closed = True
        for link in list(self._links.values()):
            await link.close()
        for s in list(self._sessions):
            await s.ws.close()
        if self._session is not None:
            await self._session.close()

    def describe(self) -> dict[str, Any]:
        """For /readyz detail and the admin API."""
        out: dict[str, Any] = {"identity": self.identity, "address": self.address, "liveRouters": self.live_routers,
                "coordinates": sorted(s for s in self._holders if self.coordinates(s)),
                "peersLinked": sorted(a for a, link in self._links.items() if link.up),
                "peerSessions": len(self._sessions), "admitted": dict(self.stats),
                "slotsKept": sum(link.kept() for link in self._links.values())}
        if self.problem:
            out["problem"] = self.problem
        return out


def _stranger(pool: SlotPool, m: dict[str, Any]) -> Backend:
    """A replica the coordinator granted that this router has not seen yet (its pod watch is behind): a
    detached backend carrying the version's credential, counted nowhere here."""
    secret = next((b.secret for b in pool.backends.values() if b.secret), "")
    return Backend(str(m["b"]), str(m["a"]), 1, secret=secret)
