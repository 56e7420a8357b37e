"""Histogram observations gathered as plain numbers and written to a prometheus_client histogram in one go.

Shared by the runtime's request metrics and the accelerators' model metrics, which batch their writes (each
multiprocess value update is a locked mmap write). It adds to the child's own value objects (`_upper_bounds`,
`_buckets`, `_sum`): prometheus_client is pinned for that, and tests/test_prometheus_internals.py checks it.
"""

from __future__ import annotations

import bisect
from typing import Any


def upper_bounds(child: Any) -> list[float]:
    """A histogram child's bucket bounds, the last one +Inf."""
    return list(child._upper_bounds)


class PendingHistogram:
    __slots__ = ("bounds", "counts", "n", "total")

    def __init__(self, bounds: list[float]):
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1  # the first bucket whose bound >= value
        self.total += value
        self.n += 1

    def write(self, child: Any) -> None:
        """Add what was observed to `child` and start again from zero."""
        if not self.n:
            return
        child._sum.inc(self.total)
        for i, c in enumerate(self.counts):
            if c:
                child._buckets[i].inc(c)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.n = 0
