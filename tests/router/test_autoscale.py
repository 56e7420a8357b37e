"""The autoscaling decision with a fake clock (spec 4.2)."""

from openscore.router.autoscale import Autoscaler
from openscore.router.config import AutoscaleSpec


def step(a: Autoscaler, now: float, current: int, busy: int, queued: int = 0) -> int:
    a.sample(busy, queued)
    return a.decide(now, current)


def test_up_at_once_down_after_window_no_flapping():
    a = Autoscaler(AutoscaleSpec(min_replicas=1, max_replicas=5, target_utilization=70), 1, stable_window_s=10)
    assert step(a, 0, 1, 0) == 1
    assert step(a, 1, 1, 1, 3) == 5          # load 4 / 0.7 -> 6, capped at max 5
    n = 5
    for t in range(2, 12):                   # load gone, but inside the window: stay
        n = step(a, t, n, 0)
        assert n == 5
    assert step(a, 12, 5, 0) == 1            # a full window below target: down to what it needs
    # constant load exactly served: no change in either direction
    a = Autoscaler(AutoscaleSpec(min_replicas=1, max_replicas=10), 2, stable_window_s=5)
    cur = step(a, 0, 1, 4)                   # 4 busy / (0.7 * 2) -> 3
    assert cur == 3
    for t in range(1, 30):
        assert step(a, t, cur, 4) == 3


def test_needed_clamps():
    a = Autoscaler(AutoscaleSpec(min_replicas=2, max_replicas=4), 1)
    assert a.needed(0) == 2 and a.needed(100) == 4 and a.needed(1.4) == 2 and a.needed(2.1) == 3
