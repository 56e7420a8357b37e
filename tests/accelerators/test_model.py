"""load_model / Model: exact output routing under concurrency on real backends, bad-input isolation, metrics."""

import asyncio
import concurrent.futures as cf

import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client import REGISTRY

from openscore.accelerators import InvalidInputError, load_model, set_current_device


def rows(n, seed):
    return np.random.default_rng(seed).standard_normal((n, 64)).astype(np.float32)


def sample(name, model, metric, **labels):
    return REGISTRY.get_sample_value(metric, {"model": name, "device": model.device.name, **labels}) or 0.0


@pytest.fixture(params=["cpu", "opencl"])
def device(request):
    if request.param == "opencl":
        return request.getfixturevalue("opencl_device").name
    return "cpu"


def test_concurrent_predict_routes_outputs_exactly(mlp_path, device):
    ref_sess = ort.InferenceSession(mlp_path, providers=["CPUExecutionProvider"])
    xs = [rows(1 + i % 4, i) for i in range(120)]
    refs = [ref_sess.run(None, {"x": x})[0] for x in xs]
    with load_model(mlp_path, device, max_batch_size=16, name=f"route-{device}") as m:
        with cf.ThreadPoolExecutor(16) as ex:
            outs = list(ex.map(lambda x: m.predict(x)["y"], xs))

        async def many():
            return await asyncio.gather(*(m.predict_async({"x": x}) for x in xs))
        aouts = [o["y"] for o in asyncio.run(many())]
        for _x, ref, out, aout in zip(xs, refs, outs, aouts):
            assert out.shape == ref.shape == aout.shape
            np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(aout, ref, rtol=1e-4, atol=1e-5)
        inferences = sample(m.name, m, "openscore_model_inference_count_total")
        executions = sample(m.name, m, "openscore_model_execution_count_total")
        assert inferences == 2 * sum(len(x) for x in xs) and 0 < executions <= 240


def test_bad_input_fails_only_that_request(mlp_path):
    with load_model(mlp_path, "cpu", name="bad-input") as m:
        with cf.ThreadPoolExecutor(8) as ex:
            good = [ex.submit(m.predict, rows(2, i)) for i in range(20)]
            bad = [ex.submit(m.predict, np.zeros((2, 63), np.float32)), ex.submit(m.predict, {"z": rows(1, 0)}),
                   ex.submit(m.predict, np.array([["a"] * 64])), ex.submit(m.predict, {"x": rows(1, 0), "q": 1})]
        assert all(f.result()["y"].shape == (2, 10) for f in good)
        messages = []
        for f in bad:
            with pytest.raises(InvalidInputError) as e:
                f.result()
            messages.append(str(e.value))
        assert "dimension 1 must be 64" in messages[0] and "missing ['x']" in messages[1]
        assert "dtype <U1" in messages[2] and "unknown ['q']" in messages[3]
        assert sample(m.name, m, "openscore_model_request_failure_total", reason="invalid_input") == 4


def test_input_forms_and_dtype_conversion(cnn_path):
    with load_model(cnn_path, "cpu", name="forms") as m:
        x = np.random.default_rng(0).standard_normal((2, 3, 16, 16))  # float64 -> float32
        a = m.predict(x)
        b = m.predict({"x": x.astype(np.float32)})
        c = m.predict(x.tolist())
        for out in (b, c):
            np.testing.assert_allclose(out["y"], a["y"], rtol=1e-6)
        assert set(a) == {"y", "z"} and a["z"].shape[0] == 2
        desc = m.describe()
        assert desc["inputs"][0] == {"name": "x", "dtype": "float32", "shape": [-1, 3, 16, 16]}


def test_default_device_comes_from_replica_environment(mlp_path):
    set_current_device("cpu")
    try:
        with load_model(mlp_path, name="replica") as m:
            assert m.device.name == "cpu"
    finally:
        set_current_device(None)


def test_instances_and_non_batchable_model(tmp_path, single_op_model):
    path = single_op_model(tmp_path / "fixed.onnx", "Relu", {"a": [1, 4]}, {"y": [1, 4]})
    with load_model(path, "cpu", instances=2, max_batch_size=8, name="fixed") as m:
        assert not m.batchable and len(m.backends) == 2
        xs = [np.full((1, 4), i - 5, np.float32) for i in range(10)]
        with cf.ThreadPoolExecutor(4) as ex:
            outs = list(ex.map(lambda x: m.predict(x)["y"], xs))
        for x, o in zip(xs, outs):
            np.testing.assert_array_equal(o, np.maximum(x, 0))


def test_memory_metric_for_opencl(mlp_path, opencl_device):
    with load_model(mlp_path, opencl_device.name, name="mem") as m:
        m.predict(rows(3, 0))
        assert sample(m.name, m, "openscore_model_device_memory_used_bytes") > 0
        assert sample(m.name, m, "openscore_model_device_memory_total_bytes") == opencl_device.memory_bytes


@pytest.mark.parametrize("arrays", [
    [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((1, 3), np.float32)],
    [np.ones((1, 2, 2)), np.zeros((3, 2, 2))],
    [np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2], np.ones((1, 2), np.int64)],  # not contiguous
    [np.array([["a"], ["bc"]], dtype=object), np.array([["d"]], dtype=object)],
    [np.array([[True]]), np.array([[False], [True]])],
])
def test_stack_equals_concatenate(arrays):
    from openscore.accelerators.tensors import stack
    out = stack([{"x": a} for a in arrays])["x"]
    ref = np.concatenate(arrays, axis=0)
    assert out.dtype == ref.dtype and out.shape == ref.shape and (out == ref).all()
    out[...] = out[0]  # writable: backends may reuse their input buffers
