"""The batched metric writers (openscore/pending_histogram.py, used by runtime/metric_batch.py and
accelerators/metrics.py) add whole batches to prometheus_client's value objects (`Histogram._upper_bounds`,
`._buckets[i]`, `._sum`) instead of observing each value. This checks, in the multiprocess mode the server runs in
and in plain mode, that a batch written that way is exactly what the same observations written one by one give, so a
prometheus_client release that moves those internals fails here, loudly, rather than in production metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

CHECK = textwrap.dedent("""
    import json, os
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    from openscore.runtime.metric_batch import MetricBatch

    registry = CollectorRegistry()
    multi = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    reg = None if multi else registry
    batched = Histogram("batched_seconds", "h", buckets=(0.01, 0.1, 1.0), registry=reg)
    direct = Histogram("direct_seconds", "h", buckets=(0.01, 0.1, 1.0), registry=reg)
    bcount = Counter("batched_events", "c", registry=reg)
    dcount = Counter("direct_events", "c", registry=reg)
    batch = MetricBatch()
    h, c = batch.histogram(batched), batch.counter(bcount)
    for v in (0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 7.0, 0.0):
        h.observe(v)
        direct.observe(v)
        c.inc()
        dcount.inc()
    batch.flush()
    if multi:
        from prometheus_client.multiprocess import MultiProcessCollector
        MultiProcessCollector(registry)
    text = generate_latest(registry).decode()
    rows = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "_created" not in line:
            name, value = line.rsplit(" ", 1)
            rows[name] = float(value)
    print(json.dumps(rows))
""")


@pytest.mark.parametrize("mode", ["multiprocess", "plain"])
def test_batched_writes_equal_single_observations(mode, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    if mode == "multiprocess":
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"prometheus_client internals used by the batched metrics changed?\n{out.stderr}"
    rows = json.loads(out.stdout)
    batched = {k.replace("batched", "X"): v for k, v in rows.items() if k.startswith("batched")}
    direct = {k.replace("direct", "X"): v for k, v in rows.items() if k.startswith("direct")}
    assert batched and batched == direct
    assert batched['X_seconds_bucket{le="0.1"}'] == 5 and batched["X_events_total"] == 8
