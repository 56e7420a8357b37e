"""Open Inference Protocol (KServe V2) codec, transport-independent: infer requests in (JSON and the binary
tensor data extension), infer responses out, model metadata documents, error bodies.

The HTTP layer passes the raw body and the `Inference-Header-Content-Length` header; every malformed request
raises V2Error with a message fit for a 400 answer.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a runtime dependency, json is the fallback
    orjson = None  # type: ignore[assignment]

HEADER = "Inference-Header-Content-Length"
V2_TO_NUMPY = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64, "FP16": np.float16,
    "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}
NUMPY_TO_V2 = {np.dtype(v).str: k for k, v in V2_TO_NUMPY.items() if k != "BYTES"}
MAX_DIMS = 64  # numpy's limit on the rank of an array


class V2Error(ValueError):
    """A malformed or unsupported V2 request (HTTP 400)."""


@dataclass
class RequestedOutput:
    name: str
    binary: bool | None = None  # None: the request-level default
    parameters: dict = field(default_factory=dict)


@dataclass
class InferRequest:
    inputs: dict[str, np.ndarray]
    id: str | None = None
    outputs: list[RequestedOutput] | None = None  # None: every output
    parameters: dict = field(default_factory=dict)
    input_parameters: dict[str, dict] = field(default_factory=dict)

    @property
    def binary_output_default(self) -> bool:
        return bool(self.parameters.get("binary_data_output", False))


@dataclass
class EncodedResponse:
    body: bytes
    header_length: int | None  # set as Inference-Header-Content-Length when binary data follows the JSON
    content_type: str


# ---------------------------------------------------------------- helpers

def _loads(data: bytes) -> Any:
    return orjson.loads(data) if orjson else json.loads(data)


def _dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) if orjson else json.dumps(obj).encode()


def v2_datatype(dtype: np.dtype) -> str:
    """The V2 datatype of a numpy dtype (object and string arrays are BYTES)."""
    dtype = np.dtype(dtype)
    if dtype.kind in ("O", "S", "U"):
        return "BYTES"
    try:
        return NUMPY_TO_V2[dtype.newbyteorder("<").str if dtype.byteorder == ">" else dtype.str]
    except KeyError:
        raise V2Error(f"numpy dtype {dtype} has no V2 datatype") from None


def parse_header_length(value: str | None, body_length: int) -> int | None:
    """Validate the Inference-Header-Content-Length header against the body."""
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except ValueError:
        raise V2Error(f"{HEADER} must be an integer, got {value!r}") from None
    if n < 0 or n > body_length:
        raise V2Error(f"{HEADER} is {n} but the body has {body_length} bytes")
    return n


def error_body(message: str) -> bytes:
    return _dumps({"error": message})


# ---------------------------------------------------------------- requests

def decode_infer_request(body: bytes, header_length: int | None = None) -> InferRequest:
    """Parse an infer request; with `header_length`, tensors with a `binary_data_size` parameter are read in
    order from the bytes after the JSON header."""
    if header_length is not None and not 0 <= header_length <= len(body):
        raise V2Error(f"{HEADER} is {header_length} but the body has {len(body)} bytes")
    head = body if header_length is None else body[:header_length]
    blob = memoryview(body)[header_length:] if header_length is not None else memoryview(b"")
    try:
        doc = _loads(head)
    except ValueError as e:
        raise V2Error(f"request body is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise V2Error("request body must be a JSON object")
    specs = doc.get("inputs")
    if not isinstance(specs, list) or not specs:
        raise V2Error("request needs a non-empty 'inputs' list")
    inputs, in_params, offset = {}, {}, 0
    for i, spec in enumerate(specs):
        arr, used, params = _decode_input(spec, i, blob, offset)
        if spec["name"] in inputs:
            raise V2Error(f"input {spec['name']!r} appears twice")
        inputs[spec["name"]], in_params[spec["name"]], offset = arr, params, offset + used
    if offset != len(blob):
        raise V2Error(f"{len(blob) - offset} bytes of binary data follow the JSON but no input claims them")
    outputs = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise V2Error("'outputs' must be a list")
        outputs = [_decode_output(o) for o in doc["outputs"]]
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise V2Error("'parameters' must be an object")
    rid = doc.get("id")
    return InferRequest(inputs, None if rid is None else str(rid), outputs, params, in_params)


def _decode_input(spec: Any, i: int, blob: memoryview, offset: int) -> tuple[np.ndarray, int, dict]:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise V2Error(f"inputs[{i}] must be an object with a string 'name'")
    name, shape, dt = spec["name"], spec.get("shape"), spec.get("datatype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise V2Error(f"input {name!r}: 'shape' must be a list of non-negative integers, got {shape!r}")
    if len(shape) > MAX_DIMS:
        raise V2Error(f"input {name!r}: 'shape' has {len(shape)} dimensions; at most {MAX_DIMS} are supported")
    if dt not in V2_TO_NUMPY:
        raise V2Error(f"input {name!r}: unsupported datatype {dt!r}; supported: {', '.join(V2_TO_NUMPY)}")
    params = spec.get("parameters") or {}
    if not isinstance(params, dict):
        raise V2Error(f"input {name!r}: 'parameters' must be an object")
    if "shared_memory_region" in params:
        raise V2Error(f"input {name!r}: the shared-memory extension is not supported")
    count = math.prod(shape)
    size = params.get("binary_data_size")
    if size is not None:
        if "data" in spec:
            raise V2Error(f"input {name!r} has both 'data' and binary_data_size")
        if not isinstance(size, int) or size < 0 or offset + size > len(blob):
            raise V2Error(f"input {name!r}: binary_data_size {size!r} exceeds the {len(blob) - offset} binary "
                          f"bytes left (is the {HEADER} header set?)")
        chunk = blob[offset:offset + size]
        return _from_binary(name, dt, shape, count, chunk), size, params
    if "data" not in spec:
        raise V2Error(f"input {name!r} has neither 'data' nor a binary_data_size parameter")
    return _from_json(name, dt, shape, count, spec["data"]), 0, params


def _from_binary(name: str, dt: str, shape: list[int], count: int, chunk: memoryview) -> np.ndarray:
    if dt == "BYTES":
        items, pos, raw = [], 0, bytes(chunk)
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise V2Error(f"input {name!r}: truncated BYTES length prefix")
            (n,) = struct.unpack_from("<I", raw, pos)
            if pos + 4 + n > len(raw):
                raise V2Error(f"input {name!r}: BYTES element longer than the data")
            items.append(raw[pos + 4:pos + 4 + n])
            pos += 4 + n
        if len(items) != count:
            raise V2Error(f"input {name!r}: shape {shape} needs {count} elements, binary data has {len(items)}")
        return np.array(items + [None], dtype=object)[:-1].reshape(shape)
    dtype = np.dtype(V2_TO_NUMPY[dt]).newbyteorder("<")
    if len(chunk) != count * dtype.itemsize:
        raise V2Error(f"input {name!r}: shape {shape} of {dt} needs {count * dtype.itemsize} bytes, "
                      f"binary_data_size is {len(chunk)}")
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def _from_json(name: str, dt: str, shape: list[int], count: int, data: Any) -> np.ndarray:
    if dt == "BYTES":
        flat = list(_flatten(data))
        if not all(isinstance(x, str) for x in flat):
            raise V2Error(f"input {name!r}: BYTES data must be strings in JSON")
        arr = np.array([x.encode() for x in flat] + [None], dtype=object)[:-1]
    else:
        if dt == "BOOL" and not all(isinstance(x, bool) for x in _flatten(data)):
            raise V2Error(f"input {name!r}: BOOL data must be true/false")
        try:
            arr = np.asarray(data, dtype=V2_TO_NUMPY[dt]).reshape(-1)
        except (TypeError, ValueError, OverflowError) as e:
            raise V2Error(f"input {name!r}: data is not valid {dt}: {e}") from None
    if arr.size != count:
        raise V2Error(f"input {name!r}: shape {shape} needs {count} elements, data has {arr.size}")
    return arr.reshape(shape)


def _flatten(data: Any):
    if isinstance(data, list):
        for x in data:
            yield from _flatten(x)
    else:
        yield data


def _decode_output(o: Any) -> RequestedOutput:
    if not isinstance(o, dict) or not isinstance(o.get("name"), str):
        raise V2Error("each requested output must be an object with a string 'name'")
    params = o.get("parameters")
    if params is None:
        params = {}
    elif not isinstance(params, dict):
        raise V2Error(f"output {o['name']!r}: 'parameters' must be an object")
    if "shared_memory_region" in params:
        raise V2Error(f"output {o['name']!r}: the shared-memory extension is not supported")
    binary = params.get("binary_data")
    return RequestedOutput(o["name"], None if binary is None else bool(binary), params)


def check_input_types(model: Any, inputs: Mapping[str, np.ndarray]) -> None:
    """V2 tensors are typed: an input whose datatype is not the model's is a V2Error (no silent cast)."""
    for spec in model.inputs:
        arr = inputs.get(spec.name)
        if arr is not None and arr.dtype != spec.dtype and not (arr.dtype.kind == "O" and spec.dtype.kind in "OSU"):
            got, want = v2_datatype(arr.dtype), v2_datatype(spec.dtype)
            if got != want:
                raise V2Error(f"input {spec.name!r} has datatype {got}, but the model expects {want}")


# ---------------------------------------------------------------- responses

def encode_infer_response(model_name: str, outputs: Mapping[str, np.ndarray], *,
                          model_version: str | None = None, request_id: str | None = None,
                          requested: Sequence[RequestedOutput] | None = None, binary_default: bool = False,
                          parameters: dict | None = None) -> EncodedResponse:
    """Encode outputs as a V2 response; requested outputs (and their binary_data flags) select and shape it."""
    if requested is None:
        chosen = [(n, binary_default) for n in outputs]
    else:
        chosen = []
        for r in requested:
            if r.name not in outputs:
                raise V2Error(f"requested output {r.name!r} is not an output of model {model_name!r} "
                              f"(outputs: {', '.join(outputs)})")
            chosen.append((r.name, binary_default if r.binary is None else r.binary))
    docs, blobs = _tensor_docs((name, outputs[name], binary) for name, binary in chosen)
    resp: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        resp["model_version"] = str(model_version)
    if request_id:
        resp["id"] = request_id
    if parameters:
        resp["parameters"] = parameters
    resp["outputs"] = docs
    head = _dumps(resp)
    if not blobs:
        return EncodedResponse(head, None, "application/json")
    return EncodedResponse(head + b"".join(blobs), len(head), "application/octet-stream")


def _tensor_docs(tensors: Iterable[tuple[str, Any, bool]]) -> tuple[list[dict], list[bytes]]:
    """V2 tensor objects for (name, array, binary) triples, and the binary blobs in their order."""
    docs, blobs = [], []
    for name, value, binary in tensors:
        arr = np.asarray(value)
        dt = v2_datatype(arr.dtype)
        doc: dict[str, Any] = {"name": name, "datatype": dt, "shape": list(arr.shape)}
        if binary:
            raw = _to_binary(arr, dt)
            doc["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            doc["data"] = _to_json(name, arr, dt)
        docs.append(doc)
    return docs, blobs


def _to_binary(arr: np.ndarray, dt: str) -> bytes:
    if dt == "BYTES":
        parts = []
        for x in arr.reshape(-1):
            b = x if isinstance(x, bytes) else str(x).encode()
            parts += [struct.pack("<I", len(b)), b]
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def _to_json(name: str, arr: np.ndarray, dt: str) -> list:
    if dt == "BYTES":
        try:
            return [x.decode() if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)]
        except UnicodeDecodeError:
            raise V2Error(f"output {name!r} holds non-UTF-8 bytes; request it with binary_data") from None
    return arr.reshape(-1).tolist()


def encode_infer_request(inputs: Mapping[str, np.ndarray], *, binary: bool = True, request_id: str | None = None,
                         outputs: Sequence[RequestedOutput] | None = None,
                         parameters: dict | None = None) -> tuple[bytes, int | None]:
    """A V2 request body (and header length when binary) - for routers, clients and tests."""
    docs, blobs = _tensor_docs((name, arr, binary) for name, arr in inputs.items())
    req: dict[str, Any] = {"inputs": docs}
    if request_id:
        req["id"] = request_id
    if outputs is not None:
        req["outputs"] = [{"name": o.name, **({"parameters": {"binary_data": o.binary}} if o.binary is not None
                                              else {})} for o in outputs]
    if parameters:
        req["parameters"] = parameters
    head = _dumps(req)
    return (head + b"".join(blobs), len(head)) if blobs else (head, None)


# ---------------------------------------------------------------- metadata

def tensor_metadata(spec: Any) -> dict:
    """{name, datatype, shape} for a TensorSpec-like object (shape uses -1 for dynamic dimensions)."""
    return {"name": spec.name, "datatype": v2_datatype(spec.dtype),
            "shape": [-1 if d is None else int(d) for d in spec.shape]}


def model_metadata(name: str, inputs: Sequence[Any], outputs: Sequence[Any], *,
                   versions: Sequence[str] = (), platform: str = "onnxruntime_onnx") -> dict:
    """The V2 model metadata document (GET /v2/models/{name})."""
    return {"name": name, "versions": [str(v) for v in versions], "platform": platform,
            "inputs": [tensor_metadata(s) for s in inputs], "outputs": [tensor_metadata(s) for s in outputs]}
