"""Per-worker state in shared memory, so any worker can answer for the whole server.

The supervisor allocates it before forking; each worker writes only its own row (plain int stores, no
lock needed) and reads all rows to report replica-wide readiness and slot occupancy.
"""

from __future__ import annotations

from dataclasses import dataclass
from multiprocessing.sharedctypes import RawArray

STARTING, READY, DRAINING, STOPPED = 1, 2, 3, 0
_STATE, _PID, _BUSY, _TOTAL, _QUEUED, _INFLIGHT = range(6)
_WIDTH = 6


@dataclass
class Occupancy:
    busy: int
    total: int
    queued: int
    in_flight: int
    workers_ready: int
    workers: int


class WorkerTable:
    def __init__(self, workers: int):
        self.workers = workers
        self._a = RawArray("q", workers * _WIDTH)

    def _get(self, i: int, f: int) -> int:
        return int(self._a[i * _WIDTH + f])

    def set_state(self, i: int, state: int, pid: int | None = None) -> None:
        if pid is not None:
            self._a[i * _WIDTH + _PID] = pid
        if state in (STARTING, STOPPED):
            for f in (_BUSY, _TOTAL, _QUEUED, _INFLIGHT):
                self._a[i * _WIDTH + f] = 0
        self._a[i * _WIDTH + _STATE] = state

    def state(self, i: int) -> int:
        return self._get(i, _STATE)

    def pid(self, i: int) -> int:
        return self._get(i, _PID)

    def set_slots(self, i: int, busy: int, queued: int) -> None:
        base = i * _WIDTH
        self._a[base + _BUSY] = busy
        self._a[base + _QUEUED] = queued

    def set_total(self, i: int, total: int) -> None:
        self._a[i * _WIDTH + _TOTAL] = total

    def add_in_flight(self, i: int, delta: int) -> None:
        self._a[i * _WIDTH + _INFLIGHT] += delta

    def all_ready(self) -> bool:
        return all(self._get(i, _STATE) == READY for i in range(self.workers))

    def occupancy(self) -> Occupancy:
        a, w = self._a, _WIDTH
        busy = total = queued = in_flight = ready = 0
        for i in range(self.workers):
            base = i * w
            busy += a[base + _BUSY]
            total += a[base + _TOTAL]
            queued += a[base + _QUEUED]
            in_flight += a[base + _INFLIGHT]
            ready += a[base + _STATE] == READY
        return Occupancy(busy, total, queued, in_flight, ready, self.workers)
