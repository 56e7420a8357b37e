"""The autoscaling decision for one version (spec 4.2), as a plain class driven by a clock the caller passes.

load = busy slots + queued requests (sampled, averaged over one refresh period);
needed = ceil(load / (target utilization x slots per replica)), clamped to [min, max].
Up: at once. Down: only to the highest `needed` seen during the whole stable window, so a load that merely
dips (or drops because new replicas absorbed the queue) never causes a scale-down/scale-up cycle.
"""

from __future__ import annotations

import collections
import math

from openscore.router.config import AutoscaleSpec


class Autoscaler:
    def __init__(self, spec: AutoscaleSpec, slots_per_replica: int, stable_window_s: float = 60.0):
        self.spec = spec
        self.slots = max(1, slots_per_replica)
        self.stable_window_s = stable_window_s
        self._history: collections.deque[tuple[float, int]] = collections.deque()  # (time, needed)
        self._load_sum = 0.0
        self._samples = 0
        self._since: float | None = None  # when the window started filling

    def sample(self, busy: int, queued: int) -> None:
        self._load_sum += busy + queued
        self._samples += 1

    def needed(self, load: float) -> int:
        raw = math.ceil(round(load / (self.spec.target_fraction * self.slots), 6))
        return max(self.spec.min_replicas, min(self.spec.max_replicas, raw))

    def decide(self, now: float, current: int) -> int:
        """The replica count to have now, from the samples since the last call."""
        load = self._load_sum / self._samples if self._samples else 0.0
        self._load_sum, self._samples = 0.0, 0
        n = self.needed(load)
        if self._since is None:
            self._since = now
        self._history.append((now, n))
        while self._history and self._history[0][0] < now - self.stable_window_s:
            self._history.popleft()
        if n > current:
            return n
        if n < current:
            if now - self._since >= self.stable_window_s:
                return max(max(h for _, h in self._history), self.spec.min_replicas)
            return current
        return current

    def reset_history(self, now: float, current: int) -> None:
        """After a change made outside the autoscaler (config), start the window afresh."""
        self._history.clear()
        self._history.append((now, current))
        self._since = now
