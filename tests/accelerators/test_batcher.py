"""The dynamic batcher: routing, isolation, keys, preferred sizes, queue limits, timeouts and shutdown.
Ordering is controlled with events (a worker blocked until released), never with timing thresholds."""

import asyncio
import concurrent.futures as cf
import threading
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from openscore.accelerators import BatcherClosedError, BatcherOptions, DynamicBatcher, QueueFullError, QueueTimeoutError
from openscore.accelerators.metrics import ModelMetrics


class GatedWorker:
    """Echo worker that records its batches; the first call blocks until `release()`."""

    def __init__(self, fail_on=None):
        self.batches, self.started, self.gate = [], threading.Event(), threading.Event()
        self.fail_on = fail_on

    def __call__(self, payloads):
        self.batches.append(list(payloads))
        self.started.set()
        self.gate.wait(10)
        if self.fail_on is not None and self.fail_on in payloads:
            raise ValueError(f"bad payload {self.fail_on}")
        return [("done", p) for p in payloads]

    def release(self):
        self.gate.set()


def blocked(worker, **opts):
    """A batcher whose only instance is busy with payload -1, so later submissions queue."""
    b = DynamicBatcher([worker], BatcherOptions(**opts), name="t")
    first = b.submit(-1)
    assert worker.started.wait(10)
    return b, first


def test_idle_instance_dispatches_alone_then_queued_requests_coalesce():
    w = GatedWorker()
    b, first = blocked(w, max_batch_size=8)
    futs = [b.submit(i) for i in range(5)]
    w.release()
    assert first.result(10) == ("done", -1)
    assert [f.result(10) for f in futs] == [("done", i) for i in range(5)]
    assert w.batches == [[-1], [0, 1, 2, 3, 4]]
    b.close()


def test_max_batch_size_and_preferred_sizes():
    w = GatedWorker()
    b, _first = blocked(w, max_batch_size=4, preferred_batch_sizes=(2,))
    futs = [b.submit(i) for i in range(7)]
    w.release()
    [f.result(10) for f in futs]
    assert w.batches[1:] == [[0, 1], [2, 3], [4, 5], [6]]
    b.close()


def test_requests_with_different_keys_are_never_mixed():
    w = GatedWorker()
    b = DynamicBatcher([w], BatcherOptions(max_batch_size=16), key=lambda p: p % 3)
    first = b.submit(0)
    assert w.started.wait(10)
    futs = [b.submit(i) for i in range(1, 12)]
    w.release()
    [f.result(10) for f in [first, *futs]]
    for batch in w.batches:
        assert len({p % 3 for p in batch}) == 1
    assert sorted(p for batch in w.batches for p in batch) == list(range(12))
    b.close()


def test_failing_batch_fails_only_the_bad_request():
    w = GatedWorker(fail_on=3)
    w.release()
    reg = CollectorRegistry()
    b = DynamicBatcher([w], BatcherOptions(max_batch_size=8), name="iso", metrics=ModelMetrics("iso", "cpu", reg))
    w.gate.clear()
    first = b.submit(-1)
    assert w.started.wait(10)
    futs = {i: b.submit(i) for i in range(6)}
    w.release()
    first.result(10)
    with pytest.raises(ValueError, match="bad payload 3"):
        futs[3].result(10)
    assert [futs[i].result(10) for i in (0, 1, 2, 4, 5)] == [("done", i) for i in (0, 1, 2, 4, 5)]
    assert reg.get_sample_value("openscore_model_request_failure_total",
                                {"model": "iso", "device": "cpu", "reason": "invalid_input"}) == 1
    b.close()


def test_queue_timeout_fails_only_that_request():
    w = GatedWorker()
    b, first = blocked(w, max_batch_size=4)
    patient = b.submit(1)
    with pytest.raises(QueueTimeoutError, match="timed out"):
        b.call(2, timeout=0.05)
    w.release()
    assert patient.result(10) == ("done", 1) and first.result(10) == ("done", -1)
    assert [2] not in w.batches and all(2 not in batch for batch in w.batches)
    b.close()


def test_queue_timeout_from_asyncio():
    w = GatedWorker()
    b, _first = blocked(w, max_batch_size=4)

    async def main():
        with pytest.raises(QueueTimeoutError):
            await b.call_async(5, timeout=0.05)
        w.release()
        return await b.call_async(6, timeout=10)
    assert asyncio.run(main()) == ("done", 6)
    b.close()


def test_bounded_queue_rejects_when_full():
    w = GatedWorker()
    b, _first = blocked(w, max_queue_size=2)
    b.submit(1), b.submit(2)
    with pytest.raises(QueueFullError, match="queue full"):
        b.submit(3)
    w.release()
    b.close()


def test_shutdown_with_requests_in_flight_fails_queued_cleanly():
    w = GatedWorker()
    b, first = blocked(w)
    queued = [b.submit(i) for i in range(3)]
    closer = threading.Thread(target=b.close, kwargs={"drain": False})
    closer.start()
    for f in queued:
        with pytest.raises(BatcherClosedError):
            f.result(10)
    with pytest.raises(BatcherClosedError):
        b.submit(9)
    w.release()  # the batch already on the device finishes
    assert first.result(10) == ("done", -1)
    closer.join(10)
    assert not closer.is_alive()


def test_shutdown_drains_queued_requests():
    w = GatedWorker()
    b, _first = blocked(w)
    queued = [b.submit(i) for i in range(3)]
    w.release()
    b.close(drain=True)
    assert [f.result(0) for f in queued] == [("done", i) for i in range(3)]


def test_max_queue_delay_dispatches_when_batch_is_full():
    """A long delay is not waited for once max_batch_size requests are queued."""
    w = GatedWorker()
    w.release()
    b = DynamicBatcher([w], BatcherOptions(max_batch_size=3, max_queue_delay_s=30.0))
    futs = [b.submit(i) for i in range(3)]
    assert [f.result(10) for f in futs] == [("done", i) for i in range(3)]
    b.close()


def test_many_instances_and_threads_route_exactly():
    def worker(payloads):
        return [p * 2 for p in payloads]
    b = DynamicBatcher([worker, worker, worker], BatcherOptions(max_batch_size=8))
    with cf.ThreadPoolExecutor(16) as ex:
        results = list(ex.map(b.call, range(500)))
    assert results == [2 * i for i in range(500)]
    b.close()


def test_options_are_validated():
    with pytest.raises(ValueError, match="preferred_batch_sizes"):
        BatcherOptions(max_batch_size=4, preferred_batch_sizes=(8,))
    with pytest.raises(ValueError):
        BatcherOptions(max_batch_size=0)


def test_row_sizes_bound_the_batch():
    w = GatedWorker()
    b = DynamicBatcher([w], BatcherOptions(max_batch_size=8), size=len)
    b.submit(np.zeros(1))
    assert w.started.wait(10)
    futs = [b.submit(np.zeros(n)) for n in (3, 4, 2, 9)]
    w.release()
    [f.result(10) for f in futs]
    assert [[len(p) for p in batch] for batch in w.batches[1:]] == [[3, 4], [2], [9]]
    b.close()


class StepWorker:
    """Echo worker that records its batches and finishes each call only when the test calls step()."""

    def __init__(self):
        self.batches, self.started, self._go = [], threading.Semaphore(0), threading.Semaphore(0)

    def __call__(self, payloads):
        self.batches.append(list(payloads))
        self.started.release()
        assert self._go.acquire(timeout=10)
        return [("done", p) for p in payloads]

    def step(self):
        self._go.release()


def test_answered_callers_are_regrouped_with_the_queue(monkeypatch):
    """Closed loop: after a batch of 2 is answered, its callers' next requests join the one that queued meanwhile
    (without regrouping, the queued request would run alone and the groups alternate)."""
    import openscore.accelerators.batcher as batcher_module
    monkeypatch.setattr(batcher_module, "REGROUP_FRACTION", 1e9)  # only max_regroup_delay_s bounds the wait
    w = StepWorker()
    b = DynamicBatcher([w], BatcherOptions(max_batch_size=8, max_regroup_delay_s=30.0))
    first = b.submit(-1)
    assert w.started.acquire(timeout=10)
    group_a = [b.submit(0), b.submit(1)]
    w.step()  # [-1] answered: one request, no regrouping
    assert first.result(10) == ("done", -1)
    assert w.started.acquire(timeout=10)
    assert w.batches[-1] == [0, 1]
    group_b = b.submit(2)
    w.step()  # [0, 1] answered: the instance waits for two new requests before its next call
    assert [f.result(10) for f in group_a] == [("done", 0), ("done", 1)]
    echo = [b.submit(10), b.submit(11)]
    assert w.started.acquire(timeout=10)
    assert w.batches[-1] == [2, 10, 11]
    w.step()
    assert group_b.result(10) == ("done", 2) and [f.result(10) for f in echo] == [("done", 10), ("done", 11)]
    b.close()


@pytest.mark.parametrize("max_batch_size", [2, 8], ids=["queue full", "queue holds as many as answered"])
def test_regrouping_waits_for_nothing_when_the_queue_already_holds_a_batch(monkeypatch, max_batch_size):
    """Requests that queued during a call are as many as it answered (steady open-loop load, or a full queue):
    the next call starts at once with them, where a regrouping wait would only add latency (here 30 s)."""
    import openscore.accelerators.batcher as batcher_module
    monkeypatch.setattr(batcher_module, "REGROUP_FRACTION", 1e9)
    w = StepWorker()
    b = DynamicBatcher([w], BatcherOptions(max_batch_size=max_batch_size, max_regroup_delay_s=30.0))
    first = b.submit(-1)
    assert w.started.acquire(timeout=10)
    pair = [b.submit(0), b.submit(1)]
    w.step()  # [-1] answered
    assert w.started.acquire(timeout=10)  # [0, 1]
    queued = [b.submit(2), b.submit(3)]  # as many as the running call holds
    w.step()  # [0, 1] answered: no echo needed
    assert w.started.acquire(timeout=10)
    assert w.batches == [[-1], [0, 1], [2, 3]]
    w.step()
    assert [f.result(10) for f in [first, *pair, *queued]] == [("done", i) for i in (-1, 0, 1, 2, 3)]
    b.close()


def test_a_regrouping_wait_that_times_out_backs_off_then_is_tried_again(monkeypatch):
    """Callers that answer slower than the regrouping bound (over HTTP, say): the wait only idles the device, so
    after one times out the next REGROUP_BACKOFF[0] chances are skipped (dispatch at once), then it tries again."""
    import openscore.accelerators.batcher as batcher_module
    monkeypatch.setattr(batcher_module, "REGROUP_BACKOFF", (2, 4))
    monkeypatch.setattr(batcher_module, "REGROUP_FRACTION", 1e-9)  # first wait: bounded to ~0, times out
    w = StepWorker()
    b = DynamicBatcher([w], BatcherOptions(max_batch_size=8, max_regroup_delay_s=30.0))
    futs = [b.submit(-1)]
    assert w.started.acquire(timeout=10)

    def pair_then_one(x: int) -> None:
        """While a lone request runs, queue a pair; while the pair runs, queue one more; answer the pair."""
        futs.extend([b.submit(x), b.submit(x + 1)])
        w.step()
        assert w.started.acquire(timeout=10)
        assert w.batches[-1] == [x, x + 1]
        futs.append(b.submit(x + 2))
        w.step()  # the pair is answered with fewer queued than it held: a chance to regroup

    pair_then_one(0)  # the wait times out at once: back off
    assert w.started.acquire(timeout=10) and w.batches[-1] == [2]
    monkeypatch.setattr(batcher_module, "REGROUP_FRACTION", 1e9)  # from now on a wait would last 30 s
    for x in (3, 6):  # the two skipped chances: the queued request runs at once
        pair_then_one(x)
        assert w.started.acquire(timeout=10) and w.batches[-1] == [x + 2]
    pair_then_one(9)  # backoff over: the instance waits for the pair's echo again
    futs.extend([b.submit(12), b.submit(13)])
    assert w.started.acquire(timeout=10)
    assert w.batches[-1] == [11, 12, 13]
    w.step()
    assert [f.result(10) for f in futs] == [("done", i) for i in range(-1, 14)]
    b.close()


def test_dispatcher_threads_carry_an_os_name():
    """`top -H` and pinning tools (bench_batching's device-core placement) find a model's dispatcher threads."""
    import os
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("no /proc/self/task on this platform")
    b = DynamicBatcher([lambda p: p, lambda p: p], name="mlp")
    try:
        b.call(1)  # the threads are up; each names itself first thing, which may still be under way
        deadline, names = time.monotonic() + 10, set()
        while not {"osc-batch0-mlp", "osc-batch1-mlp"} <= names and time.monotonic() < deadline:
            names = set()
            for tid in os.listdir("/proc/self/task"):
                try:
                    names.add(open(f"/proc/self/task/{tid}/comm").read().strip())
                except OSError:
                    pass
            time.sleep(0.01)
        assert {"osc-batch0-mlp", "osc-batch1-mlp"} <= names
    finally:
        b.close()


def test_regroup_option_is_validated():
    with pytest.raises(ValueError, match="max_regroup_delay_s"):
        BatcherOptions(max_regroup_delay_s=-1)
    assert BatcherOptions(max_regroup_delay_s=0).max_regroup_delay_s == 0


@pytest.mark.parametrize("deferred", [False, True])
def test_metrics_count_every_request_whether_written_through_or_deferred(deferred):
    """A server defers the model metrics' writes to its loop turns; a read of them still sees every request
    (reading flushes), from threads, inline calls and coroutines alike."""
    from openscore.accelerators import metrics as model_metrics

    reg = CollectorRegistry()
    w = GatedWorker(fail_on=-1)
    w.release()
    b = DynamicBatcher([w], BatcherOptions(max_batch_size=4), name="defer", metrics=ModelMetrics("defer", "cpu", reg))
    labels = {"model": "defer", "device": "cpu"}
    model_metrics.defer_writes(deferred)
    try:
        with cf.ThreadPoolExecutor(4) as pool:
            assert list(pool.map(b.call, range(20))) == [("done", i) for i in range(20)]

        async def from_loop():
            return [await b.call_async(i, inline_below_s=1.0) for i in range(5)]
        assert asyncio.run(from_loop()) == [("done", i) for i in range(5)]
        with pytest.raises(ValueError):
            b.call(-1)
        assert reg.get_sample_value("openscore_model_request_success_total", labels) == 25
        assert reg.get_sample_value("openscore_model_inference_count_total", labels) == 25
        assert reg.get_sample_value("openscore_model_queue_duration_seconds_count", labels) == 26
        assert reg.get_sample_value("openscore_model_request_failure_total", {**labels, "reason": "invalid_input"}) == 1
        assert reg.get_sample_value("openscore_model_batch_size_sum", labels) == 25  # rows answered
        assert reg.get_sample_value("openscore_model_queue_depth", labels) == 0
    finally:
        model_metrics.defer_writes(False)
        b.close()
