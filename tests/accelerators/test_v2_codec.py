"""Open Inference Protocol codec: JSON and binary tensors, errors, and wire compatibility with tritonclient."""

import json

import numpy as np
import pytest

from openscore.accelerators import TensorSpec
from openscore.accelerators.v2_codec import (
    RequestedOutput,
    V2Error,
    decode_infer_request,
    encode_infer_request,
    encode_infer_response,
    error_body,
    model_metadata,
    parse_header_length,
)


def body(doc):
    return json.dumps(doc).encode()


def test_json_request_flat_and_nested_data():
    req = decode_infer_request(body({"id": "r1", "inputs": [
        {"name": "a", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "b", "shape": [2, 2], "datatype": "INT64", "data": [[1, 2], [3, 4]]},
        {"name": "c", "shape": [2], "datatype": "BOOL", "data": [True, False]},
        {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["héllo"]}],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}], "parameters": {"binary_data_output": True}}))
    assert req.id == "r1" and req.binary_output_default
    assert req.inputs["a"].dtype == np.float32 and req.inputs["a"].tolist() == [[1, 2], [3, 4]]
    assert req.inputs["b"].dtype == np.int64 and req.inputs["c"].tolist() == [True, False]
    assert req.inputs["s"].tolist() == ["héllo".encode()]
    assert req.outputs == [RequestedOutput("y", True, {"binary_data": True})]


@pytest.mark.parametrize("doc,match", [
    ({"inputs": []}, "non-empty 'inputs'"),
    ({"inputs": [{"name": "a", "shape": [3], "datatype": "FP32", "data": [1, 2]}]}, "needs 3 elements, data has 2"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "BF16", "data": [1]}]}, "unsupported datatype 'BF16'"),
    ({"inputs": [{"name": "a", "shape": [-1], "datatype": "FP32", "data": [1]}]}, "non-negative integers"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32"}]}, "neither 'data' nor"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "INT32", "data": ["x"]}]}, "not valid INT32"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "BOOL", "data": [3]}]}, "true/false"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]},
     "exceeds the 0 binary bytes"),
    ({"inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1]}] * 2}, "appears twice"),
])
def test_bad_requests_are_clear_errors(doc, match):
    with pytest.raises(V2Error, match=match):
        decode_infer_request(body(doc))


def test_invalid_json_and_header_length():
    with pytest.raises(V2Error, match="not valid JSON"):
        decode_infer_request(b"{nope")
    with pytest.raises(V2Error, match="must be an integer"):
        parse_header_length("abc", 10)
    with pytest.raises(V2Error, match="body has 10 bytes"):
        parse_header_length("11", 10)
    assert parse_header_length(None, 10) is None and parse_header_length("4", 10) == 4


def test_binary_request_roundtrip_and_leftover_bytes():
    arrays = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.array([7, -1], np.int16),
              "s": np.array([b"ab", b"", b"\xff"], dtype=object)}
    raw, hlen = encode_infer_request(arrays, binary=True, request_id="q")
    req = decode_infer_request(raw, hlen)
    for k, v in arrays.items():
        assert req.inputs[k].dtype == v.dtype and req.inputs[k].tolist() == v.tolist()
    with pytest.raises(V2Error, match="2 bytes of binary data follow"):
        decode_infer_request(raw + b"xx", hlen)
    with pytest.raises(V2Error, match="needs 24 bytes"):
        bad = raw.replace(b'"binary_data_size":24', b'"binary_data_size":20')
        decode_infer_request(bad, hlen)


def test_response_json_binary_and_selection():
    outs = {"y": np.array([[0.5, 1.5]], np.float32), "z": np.array([1, 2], np.int64)}
    r = encode_infer_response("m", outs, model_version="1", request_id="r")
    doc = json.loads(r.body)
    assert r.header_length is None and r.content_type == "application/json"
    assert doc == {"model_name": "m", "model_version": "1", "id": "r", "outputs": [
        {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 1.5]},
        {"name": "z", "datatype": "INT64", "shape": [2], "data": [1, 2]}]}
    r = encode_infer_response("m", outs, requested=[RequestedOutput("z", True)])
    head = json.loads(r.body[:r.header_length])
    assert [o["name"] for o in head["outputs"]] == ["z"] and r.body[r.header_length:] == outs["z"].tobytes()
    with pytest.raises(V2Error, match="'q' is not an output"):
        encode_infer_response("m", outs, requested=[RequestedOutput("q")])


def test_metadata_and_error_body():
    meta = model_metadata("m", [TensorSpec("x", np.dtype(np.float32), (None, 4))],
                          [TensorSpec("y", np.dtype(np.int64), (None,))], versions=["1"])
    assert meta == {"name": "m", "versions": ["1"], "platform": "onnxruntime_onnx",
                    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                    "outputs": [{"name": "y", "datatype": "INT64", "shape": [-1]}]}
    assert json.loads(error_body("boom")) == {"error": "boom"}


@pytest.mark.parametrize("binary", [False, True])
def test_wire_compatible_with_tritonclient(binary):
    http = pytest.importorskip("tritonclient.http", reason="tritonclient[http] not installed")
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    s = np.array([b"one", b"two"], dtype=object)
    inputs = [http.InferInput("x", list(x.shape), "FP32"), http.InferInput("s", [2], "BYTES")]
    inputs[0].set_data_from_numpy(x, binary_data=binary)
    inputs[1].set_data_from_numpy(s, binary_data=binary)
    outputs = [http.InferRequestedOutput("y", binary_data=binary), http.InferRequestedOutput("s", binary_data=binary)]
    raw, hlen = http.InferenceServerClient.generate_request_body(inputs, outputs=outputs, request_id="7")
    req = decode_infer_request(raw, hlen)
    np.testing.assert_array_equal(req.inputs["x"], x)
    assert req.inputs["s"].tolist() == s.tolist() and req.id == "7"
    y = req.inputs["x"] * 2
    resp = encode_infer_response("m", {"y": y, "s": req.inputs["s"]}, request_id=req.id, requested=req.outputs,
                                 binary_default=req.binary_output_default)
    result = http.InferenceServerClient.parse_response_body(resp.body, header_length=resp.header_length)
    np.testing.assert_array_equal(result.as_numpy("y"), y)
    got = [v if isinstance(v, bytes) else v.encode() for v in result.as_numpy("s").tolist()]  # JSON gives str
    assert got == s.tolist()
    assert result.get_response()["id"] == "7"
