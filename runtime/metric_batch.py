"""Request metrics batched in the worker and written to prometheus together.

In multiprocess mode every prometheus_client value update is a locked mmap write: a counter and three histograms
cost a scoring request ~7 writes. The hot path here adds to plain Python numbers; they reach the prometheus
values at once when the worker has nothing else in flight (`flush`, called by the HTTP app, so a scrape that
follows the last answered request sees it, whichever worker answers the scrape), before this worker answers
/metrics, and otherwise at most FLUSH_INTERVAL_S after the update (`schedule`), so under steady load many
requests share one write per value. (Flushing once per loop turn instead wrote about twice per request, as a
request's queue wait and its run are observed in different turns: no saving at all.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from openscore.pending_histogram import PendingHistogram, upper_bounds

FLUSH_INTERVAL_S = 0.05


class BatchedHistogram:
    __slots__ = ("_batch", "_child", "_pending")

    def __init__(self, batch: MetricBatch, child: Any):
        self._batch = batch
        self._child = child
        self._pending = PendingHistogram(upper_bounds(child))

    def observe(self, value: float) -> None:
        self._pending.observe(value)
        self._batch.schedule()

    def _flush(self) -> None:
        self._pending.write(self._child)


class BatchedCounter:
    __slots__ = ("_batch", "_child", "_n")

    def __init__(self, batch: MetricBatch, child: Any):
        self._batch = batch
        self._child = child
        self._n = 0

    def inc(self, amount: int = 1) -> None:
        self._n += amount
        self._batch.schedule()

    def _flush(self) -> None:
        if self._n:
            n, self._n = self._n, 0
            self._child.inc(n)


_Item = TypeVar("_Item", BatchedHistogram, BatchedCounter)


class MetricBatch:
    """Batched views of prometheus metric children, one per (metric, labels); flushed together, along with
    `also` (other batched metrics' flushes, e.g. the models' of openscore.accelerators.metrics)."""

    def __init__(self, also: Sequence[Callable[[], None]] = ()) -> None:
        self._items: dict[tuple[int, tuple[str, ...]], BatchedHistogram | BatchedCounter] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._also = tuple(also)

    def histogram(self, metric: Any, *labels: str) -> BatchedHistogram:
        return self._item(BatchedHistogram, metric, labels)

    def counter(self, metric: Any, *labels: str) -> BatchedCounter:
        return self._item(BatchedCounter, metric, labels)

    def _item(self, cls: type[_Item], metric: Any, labels: tuple[str, ...]) -> _Item:
        """The one batched view of (metric, labels), made on first use."""
        key = (id(metric), labels)
        item = self._items.get(key)
        if item is None:
            item = self._items[key] = cls(self, metric.labels(*labels) if labels else metric)
        return item  # type: ignore[return-value]

    def schedule(self) -> None:
        """Flush within FLUSH_INTERVAL_S (one timer, however many updates come before)."""
        if self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(FLUSH_INTERVAL_S, self._on_timer)
            except RuntimeError:  # no loop (a plain thread): write through
                self.flush()

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()

    def flush(self) -> None:
        for item in self._items.values():
            item._flush()
        for flush in self._also:
            flush()
