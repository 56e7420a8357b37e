"""The data plane driven directly (no HTTP): init wait, slots, scoring timeout and request ids, with a real
entry script and a real ONNX model."""

from __future__ import annotations

import asyncio
import re

import numpy as np
import pytest

from openscore.accelerators import load_model, sample_models
from openscore.runtime.data_plane import DataPlane, RequestIdTooLong
from openscore.runtime.entry_script import load_entry_script
from openscore.runtime.incoming_request import IncomingRequest
from openscore.runtime.run_threads import RunThreadPool
from openscore.runtime.scoring import InitState
from openscore.runtime.slots import SlotGate

SCRIPT = """
import json, time

def init():
    pass

def run(raw_data):
    time.sleep(json.loads(raw_data).get("sleep", 0))
    return {"ok": True}
"""


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = sample_models.save(sample_models.mlp(), tmp_path_factory.mktemp("m") / "mlp.onnx")
    m = load_model(path, "cpu")
    yield m
    m.close()


def plane(slots=1, queue=0, wait_s=0.5, timeout_ms=60_000) -> DataPlane:
    return DataPlane(SlotGate(slots, queue, wait_s), RunThreadPool(), InitState(), scoring_timeout_ms=timeout_ms)


def post(body: bytes) -> IncomingRequest:
    return IncomingRequest("POST", "/score", "", {"Content-Type": "application/json"}, body)


def with_script(p: DataPlane, tmp_path) -> DataPlane:
    (tmp_path / "score.py").write_text(SCRIPT)
    p.script = load_entry_script(tmp_path / "score.py")
    p.init_state.finish()
    return p


X = {"x": np.zeros((1, 64), np.float32)}


def test_infer_waits_for_init_then_answers(model):
    async def go():
        p = plane(queue=4, wait_s=10)
        pending = asyncio.ensure_future(p.infer("mlp", None, X, "r1"))
        await asyncio.sleep(0.05)
        assert not pending.done() and p.init_state.waiting == 1
        p.registry.add(model)
        p.init_state.finish()
        result = await pending
        assert result.status == 200 and result.outputs["y"].shape == (1, 10) and result.run_ms is not None
        assert p.gate.busy == 0
    asyncio.run(go())


def test_infer_during_init_is_refused_once_the_wait_is_over(model):
    async def go():
        p = plane(queue=4, wait_s=0.05)
        result = await p.infer("mlp", None, X, "r1")
        assert result.status == 503 and result.retry_after_s == 5 and "init() has not finished" in result.message
        p.init_state.finish("RuntimeError: boom")
        result = await p.infer("mlp", None, X, "r2")
        assert result.status == 503 and "init() failed: RuntimeError: boom" in result.message
    asyncio.run(go())


def test_a_full_gate_refuses_and_every_slot_comes_back(model, tmp_path):
    async def go():
        p = with_script(plane(slots=1, queue=0), tmp_path)
        p.registry.add(model)
        held = asyncio.ensure_future(p.score(post(b'{"sleep": 0.3}'), "hold"))
        while p.gate.busy == 0:
            await asyncio.sleep(0.01)
        refused = await p.infer("mlp", None, X, "r1")
        assert refused.status == 503 and refused.retry_after_s == 1 and "wait queue is full" in refused.message
        refused = await p.score(post(b"{}"), "r2")
        assert refused.status == 503
        assert (await held).status == 200
        assert (await p.infer("mlp", None, X, "r3")).status == 200
        assert (p.gate.busy, p.gate.queued) == (0, 0)
    asyncio.run(go())


def test_unknown_model_and_bad_input_release_nothing_they_did_not_take(model):
    async def go():
        p = plane()
        p.registry.add(model)
        p.init_state.finish()
        assert (await p.infer("nope", None, X, "r")).status == 404
        assert (await p.infer("mlp", "2", X, "r")).status == 404
        bad = await p.infer("mlp", None, {"x": np.zeros((1, 3), np.float32)}, "r")
        assert bad.status == 400 and "64" in bad.message
        assert p.gate.busy == 0
    asyncio.run(go())


def test_scoring_timeout_answers_500_and_frees_the_slot(tmp_path):
    async def go():
        p = with_script(plane(timeout_ms=100), tmp_path)
        result = await p.score(post(b'{"sleep": 1.5}'), "slow")
        assert result.status == 500 and result.run_failed and "Scoring timeout after 100 ms" in result.message
        assert p.gate.busy == 0
        assert (await p.score(post(b"{}"), "next")).status == 200
    asyncio.run(go())


def test_request_ids():
    p = plane()
    ids = p.request_ids({"x-request-id": "A", "x-ms-client-request-id": "B"})
    assert ids.request_id == "A"
    assert dict(ids.headers)["x-ms-request-id"] == "B" and dict(ids.headers)["x-ms-client-request-id"] == "B"
    fresh = {p.request_ids({}).request_id for _ in range(600)}
    assert len(fresh) == 600
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i) for i in fresh)
    with pytest.raises(RequestIdTooLong, match="x-ms-request-id"):
        p.request_ids({"x-ms-request-id": "x" * 101})
