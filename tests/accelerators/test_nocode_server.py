"""`openscore serve --model model.onnx` with no entry script: the Open Inference Protocol driven by the real
tritonclient, `/score {"data": ...}`, devices, and start-up failures, against real server processes."""

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def srv(module_serve, mlp_path):
    return module_serve(None, "--model", mlp_path)


@pytest.fixture(scope="module")
def client(srv):
    c = httpclient.InferenceServerClient(srv.url.removeprefix("http://"), concurrency=4)
    yield c
    c.close()


@pytest.fixture(scope="module")
def reference(mlp_path):
    sess = ort.InferenceSession(mlp_path, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"x": x})[0]


def batch(rows=3, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, 64)).astype(np.float32)


def infer(client, x, binary):
    inp = httpclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = httpclient.InferRequestedOutput("y", binary_data=binary)
    return client.infer("mlp", [inp], outputs=[out], request_id="r-1")


def test_health_server_and_model_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("mlp", "1")
    meta = client.get_server_metadata()
    assert meta["name"] == "openscore" and "binary_tensor_data" in meta["extensions"]
    m = client.get_model_metadata("mlp")
    assert m["name"] == "mlp" and m["versions"] == ["1"]
    assert m["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}]
    assert m["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 10]}]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_matches_onnxruntime(client, reference, binary):
    x = batch()
    result = infer(client, x, binary)
    assert result.get_response()["id"] == "r-1"
    np.testing.assert_allclose(result.as_numpy("y"), reference(x), rtol=1e-5, atol=1e-6)


def test_bad_input_shape_is_a_clear_400(client):
    inp = httpclient.InferInput("x", [1, 3], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 3), np.float32))
    with pytest.raises(InferenceServerException) as e:
        client.infer("mlp", [inp])
    assert e.value.status() == "400"
    assert "model expects [N, 64]" in e.value.message()


def test_malformed_body_and_unknown_model_are_v2_errors(srv):
    r = requests.post(srv.url + "/v2/models/mlp/infer", data=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = requests.post(srv.url + "/v2/models/nope/infer", json={"inputs": []})
    assert r.status_code == 404 and "'nope' not found" in r.json()["error"]
    r = requests.get(srv.url + "/v2/models/mlp/versions/7")
    assert r.status_code == 404 and "no version '7'" in r.json()["error"]


def test_infer_answers_carry_request_ids_like_score(srv):
    body = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}]}
    r = requests.post(srv.url + "/v2/models/mlp/infer", json=body, headers={"x-request-id": "trace-7"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-7"
    assert r.headers["x-ms-request-id"] == "trace-7" and r.headers["x-openscore-slots-total"]
    r = requests.post(srv.url + "/v2/models/mlp/infer", data=b"{not json", headers={"x-ms-client-request-id": "c-1"})
    assert r.status_code == 400 and r.headers["x-ms-client-request-id"] == "c-1" and r.headers["x-request-id"]
    r = requests.post(srv.url + "/v2/models/mlp/infer", json=body, headers={"x-request-id": "x" * 101})
    assert r.status_code == 431 and "longer than 100" in r.json()["error"]


def test_concurrent_infers_each_get_their_own_result(srv, reference):
    xs = [batch(1 + k % 3, seed=k) for k in range(48)]
    got = [None] * len(xs)

    def worker(ks):  # one client per thread: tritonclient.http is gevent-based
        c = httpclient.InferenceServerClient(srv.url.removeprefix("http://"))
        for k in ks:
            got[k] = infer(c, xs[k], binary=k % 2 == 0).as_numpy("y")
        c.close()
    threads = [threading.Thread(target=worker, args=(range(i, len(xs), 8),)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for x, y in zip(xs, got):
        np.testing.assert_allclose(y, reference(x), rtol=1e-5, atol=1e-6)


def test_score_data_gives_the_same_numbers_as_onnxruntime(srv, reference):
    x = batch(2)
    r = requests.post(srv.url + "/score", json={"data": x.tolist()})
    assert r.status_code == 200 and r.headers["x-ms-run-function-failed"] == "False"
    np.testing.assert_allclose(np.array(r.json()["y"], np.float32), reference(x), rtol=1e-5, atol=1e-6)


def test_score_bad_input_is_a_400_naming_the_problem(srv):
    r = requests.post(srv.url + "/score", json={"data": [[1.0, 2.0]]})
    assert r.status_code == 400 and "model expects [N, 64]" in r.json()["message"]
    r = requests.post(srv.url + "/score", json={"rows": []})
    assert r.status_code == 400 and '{"data": ...}' in r.json()["message"]


def test_v2_ready_follows_readyz(srv):
    assert requests.get(srv.url + "/readyz").status_code == 200
    assert requests.get(srv.url + "/v2/health/ready").json() == {"ready": True}


def test_model_metrics_are_exported(srv, client):
    infer(client, batch(), binary=True)
    text = requests.get(srv.url + "/metrics").text
    assert 'openscore_model_inference_count_total{device="cpu",model="mlp"}' in text


def _model_sample(srv, name: str, reason: str | None = None) -> float:
    """One openscore_model_* sample of model mlp from the server's /metrics (0 when absent)."""
    labels = f'device="cpu",model="mlp",reason="{reason}"' if reason else 'device="cpu",model="mlp"'
    for line in requests.get(srv.url + "/metrics").text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_model_metrics_count_each_request_by_the_time_it_is_answered(srv, client):
    """The model's counters are written in batches (per event-loop turn), yet a scrape that follows an answer
    sees that request: alone, after concurrent ones, and for a rejected one."""
    success, rows = "openscore_model_request_success_total", "openscore_model_inference_count_total"
    queued = "openscore_model_queue_duration_seconds_count"
    before = {k: _model_sample(srv, k) for k in (success, rows, queued)}
    infer(client, batch(3), binary=True)
    assert _model_sample(srv, success) == before[success] + 1
    assert _model_sample(srv, rows) == before[rows] + 3
    assert _model_sample(srv, queued) == before[queued] + 1
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: requests.post(srv.url + "/score", json={"data": batch(2, i).tolist()})
                              .status_code, range(32)))
    assert codes == [200] * 32
    assert _model_sample(srv, success) == before[success] + 33
    assert _model_sample(srv, rows) == before[rows] + 3 + 64
    assert _model_sample(srv, queued) == before[queued] + 33
    bad = _model_sample(srv, "openscore_model_request_failure_total", "invalid_input")
    assert requests.post(srv.url + "/score", json={"data": [[1.0, 2.0]]}).status_code == 400
    assert _model_sample(srv, "openscore_model_request_failure_total", "invalid_input") == bad + 1
    assert _model_sample(srv, success) == before[success] + 33


def test_devices_endpoint_matches_the_cli(srv):
    served = requests.get(srv.url + "/devices").json()
    out = subprocess.run([sys.executable, "-m", "openscore", "devices", "--json"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert [d["name"] for d in served["devices"]] == [d["name"] for d in json.loads(out)["devices"]]
    assert served["devices"][0]["name"] == "cpu" and served["devices"][0]["memory_bytes"] > 0
    text = subprocess.run([sys.executable, "-m", "openscore", "devices"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True).stdout
    assert text.splitlines()[0].split()[:3] == ["DEVICE", "TYPE", "MEMORY"] and "\ncpu " in text


def test_multi_input_model_takes_a_dict_by_input_name(serve, single_op_model, tmp_path):
    path = single_op_model(tmp_path / "add.onnx", "Add", {"a": [None, 4], "b": [None, 4]}, {"c": [None, 4]})
    s = serve(None, "--model", path)
    r = requests.post(s.url + "/score", json={"data": {"a": [[1, 2, 3, 4]], "b": [[10, 20, 30, 40]]}})
    assert r.json() == {"c": [[11.0, 22.0, 33.0, 44.0]]}
    c = httpclient.InferenceServerClient(s.url.removeprefix("http://"))
    ins = [httpclient.InferInput(n, [1, 4], "FP32") for n in "ab"]
    ins[0].set_data_from_numpy(np.ones((1, 4), np.float32), binary_data=True)
    ins[1].set_data_from_numpy(np.full((1, 4), 2, np.float32), binary_data=False)
    assert c.infer("add", ins).as_numpy("c").tolist() == [[3.0] * 4]
    c.close()


def test_opencl_device_serves_the_same_numbers_as_cpu(serve, mlp_path, opencl_device, reference):
    s = serve(None, "--model", mlp_path, "--device", opencl_device.name, timeout=120)
    x = batch(4)
    c = httpclient.InferenceServerClient(s.url.removeprefix("http://"))
    np.testing.assert_allclose(infer(c, x, binary=True).as_numpy("y"), reference(x), rtol=1e-4, atol=1e-5)
    c.close()
    assert f"on {opencl_device.name}" in s.log()


def test_absent_device_stops_the_server_with_a_clear_message(serve, mlp_path):
    s = serve(None, "--model", mlp_path, "--device", "cuda:3", wait=False)
    assert s.wait_exit(60) == 3
    log = s.log()
    assert "failed to start on device cuda:3" in log and "device cuda:3 requested but not present" in log


def test_malformed_device_or_missing_model_is_a_config_error(serve, mlp_path, tmp_path):
    s = serve(None, "--model", mlp_path, "--device", "gpu7", wait=False)
    assert s.wait_exit(30) == 1 and "invalid device 'gpu7'" in s.log()
    s = serve(None, "--model", str(tmp_path / "missing.onnx"), wait=False)
    assert s.wait_exit(30) == 1 and "missing.onnx does not exist" in s.log()
    s = serve(None, "--model", mlp_path, "--intra-op-threads", "0", wait=False)
    assert s.wait_exit(30) == 1 and "--intra-op-threads must be between 1 and 1024" in s.log()


def test_intra_op_threads_option_serves_the_same_numbers(serve, mlp_path, reference):
    s = serve(None, "--model", mlp_path, "--device", "cpu", "--intra-op-threads", "1")
    x = batch(2, seed=5)
    r = requests.post(s.url + "/score", json={"data": x.tolist()})
    assert r.status_code == 200 and np.allclose(r.json()["y"], reference(x), atol=1e-5)


def test_device_is_given_to_an_entry_script(serve, tmp_path):
    script = tmp_path / "score.py"
    script.write_text("from openscore.accelerators import current_device\n"
                      "def init():\n    global dev\n    dev = current_device()\n"
                      "def run(raw_data):\n    return {'kind': dev.kind, 'name': dev.name}\n")
    s = serve(script, "--device", "cpu")
    assert requests.post(s.url + "/score", data="{}").json() == {"kind": "cpu", "name": "cpu"}
    r = requests.post(s.url + "/v2/models/x/infer", json={"inputs": []})
    assert r.status_code == 404 and "--model" in r.json()["error"]


# ---------------------------------------------------------------- V2 through the data plane
V2_BODY = {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5] * 64}]}


def metric_sum(url, name):
    """Sum of the samples called `name` (no labels) in GET /metrics."""
    text = requests.get(url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.split(" ")[0] == name)


def wait_file(path, server, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared:\n{server.log()}"
        time.sleep(0.02)


def test_v2_infer_during_a_slow_init_waits_and_is_then_answered(serve, mlp_path, tmp_path, reference):
    s = serve("v2_gated.py", env={"FAULT_DIR": str(tmp_path), "GATE_INIT": "1", "V2_MODEL_PATH": mlp_path},
              wait=False)
    wait_file(tmp_path / "init-started", s)
    with ThreadPoolExecutor(1) as ex:
        pending = ex.submit(requests.post, s.url + "/v2/models/mlp/infer", json=V2_BODY, timeout=30)
        deadline = time.monotonic() + 20
        while requests.get(s.url + "/slots", timeout=5).json()["in_flight"] != 1:
            assert time.monotonic() < deadline, s.log()
            time.sleep(0.02)
        assert not pending.done()  # waiting for init(), not refused with 503
        (tmp_path / "release-init").touch()
        r = pending.result(30)
    assert r.status_code == 200, r.text
    y = np.array(r.json()["outputs"][0]["data"], np.float32).reshape(1, 10)
    np.testing.assert_allclose(y, reference(np.full((1, 64), 0.5, np.float32)), rtol=1e-5, atol=1e-6)
    assert r.headers["x-ms-run-function-failed"] == "False" and "x-openscore-queue-wait-ms" in r.headers


def test_v2_infer_is_measured_and_shares_the_concurrency_slots(serve, mlp_path, tmp_path):
    s = serve("v2_gated.py", "--max-concurrent-requests", "1", "--max-queue-size", "0",
              env={"FAULT_DIR": str(tmp_path), "V2_MODEL_PATH": mlp_path})
    waits = metric_sum(s.url, "openscore_queue_wait_seconds_count")
    runs = metric_sum(s.url, "openscore_run_duration_seconds_count")
    r = requests.post(s.url + "/v2/models/mlp/infer", json=V2_BODY, timeout=10)
    assert r.status_code == 200 and float(r.headers["x-openscore-queue-wait-ms"]) >= 0
    assert float(r.headers["x-ms-run-fn-exec-ms"]) >= 0
    assert metric_sum(s.url, "openscore_queue_wait_seconds_count") == waits + 1
    assert metric_sum(s.url, "openscore_run_duration_seconds_count") == runs + 1

    with ThreadPoolExecutor(1) as ex:  # a /score holds the one slot; a V2 infer finds no room in the queue
        held = ex.submit(requests.post, s.url + "/score", data="{}", timeout=30)
        wait_file(tmp_path / "run-started", s)
        r = requests.post(s.url + "/v2/models/mlp/infer", json=V2_BODY, timeout=10)
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
        assert "concurrency slots are busy" in r.json()["error"] and r.headers["x-request-id"]
        (tmp_path / "release-run").touch()
        assert held.result(30).status_code == 200
    assert requests.post(s.url + "/v2/models/mlp/infer", json=V2_BODY, timeout=10).status_code == 200
    slots = requests.get(s.url + "/slots", timeout=5).json()
    assert (slots["busy"], slots["queued"], slots["in_flight"]) == (0, 0, 0)


@pytest.mark.parametrize("change, expected", [
    ({"datatype": "INT64", "data": [0] * 64}, "has datatype INT64, but the model expects FP32"),
    ({"shape": [1] * 65, "data": [0.0]}, "at most 64"),
], ids=["datatype", "rank"])
def test_v2_input_that_does_not_fit_the_model_is_a_400(srv, change, expected):
    body = {"inputs": [{**V2_BODY["inputs"][0], **change}]}
    r = requests.post(srv.url + "/v2/models/mlp/infer", json=body)
    assert r.status_code == 400 and expected in r.json()["error"], r.text
    assert r.headers["x-ms-run-function-failed"] == "False"


@pytest.mark.parametrize("params", ["binary", 7, ["binary_data"]], ids=["string", "number", "list"])
def test_v2_requested_output_parameters_must_be_an_object(srv, params):
    body = {**V2_BODY, "outputs": [{"name": "y", "parameters": params}]}
    r = requests.post(srv.url + "/v2/models/mlp/infer", json=body)
    assert r.status_code == 400 and "'parameters' must be an object" in r.json()["error"], r.text
    assert requests.post(srv.url + "/v2/models/mlp/infer", json=V2_BODY).status_code == 200


def test_score_takes_an_object_keyed_by_input_names(srv, reference, serve, single_op_model, tmp_path):
    x = batch(2, seed=3)
    r = requests.post(srv.url + "/score", json={"x": x.tolist()})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()["y"], np.float32), reference(x), rtol=1e-5, atol=1e-6)
    r = requests.post(srv.url + "/score", json={"x": x.tolist(), "z": [1]})
    assert r.status_code == 400 and "(inputs: x)" in r.json()["message"]
    path = single_op_model(tmp_path / "add.onnx", "Add", {"a": [None, 2], "b": [None, 2]}, {"c": [None, 2]})
    s = serve(None, "--model", path)
    r = requests.post(s.url + "/score", json={"a": [[1, 2]], "b": [[10, 20]]})
    assert r.status_code == 200 and r.json() == {"c": [[11.0, 22.0]]}
