"""The sample entry scripts in entry_scripts/, each served by a real `python -m openscore serve`.

The models are built once (entry_scripts/make_models.py); each sample gets one server for the
whole module (cwd = the sample folder = the app root, as in an Azure ML container), and is
checked against the model's own in-process predictions and against the Azure status codes of
its input mode (spec §1.4-1.6, 1.10, 1.11).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import joblib
import numpy as np
import pytest
import requests
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "entry_scripts"

RUN_FAILED_MSG = "An unexpected error occurred in scoring script. Check the logs for more info."


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def models():
    """Build every sample model once (deterministic, offline, ~2 s)."""
    proc = subprocess.run([sys.executable, str(SAMPLES / "make_models.py")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return SAMPLES


@pytest.fixture(scope="module")
def start_sample(models, module_serve):
    """start_sample(name, *args, env=None, cwd=None) -> a server for entry_scripts/<name>/score.py that lives for
    the whole module; cwd = entry_scripts/<name> (the app root) unless cwd is given."""

    def start(name: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
        return module_serve(SAMPLES / name / "score.py", *args, env=env, cwd=cwd or SAMPLES / name, timeout=60)

    return start


def post_json(server, payload, **kw) -> requests.Response:
    return requests.post(server.url + "/score", data=json.dumps(payload),
                         headers={"Content-Type": "application/json"}, timeout=30, **kw)


def log_contains(server, text: str, timeout: float = 5.0) -> bool:
    """The server log (print() from the script, tracebacks) may reach the file a moment later."""
    deadline = time.monotonic() + timeout
    while text not in server.log():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def assert_json(resp: requests.Response, status: int = 200):
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"].startswith("application/json"), resp.headers
    return resp.json()


# ---------------------------------------------------------------------------------------------
# 1. sklearn_json: plain run(raw_data), errors returned as strings (200)

SK = SAMPLES / "sklearn_json"


@pytest.fixture(scope="module")
def sklearn_server(start_sample):
    return start_sample("sklearn_json", "--model-dir", "azureml-models/sklearn_json/1")


@pytest.fixture(scope="module")
def diabetes_rows():
    from sklearn.datasets import load_diabetes
    return load_diabetes().data[:5]


def test_sklearn_json_predicts_like_the_model(sklearn_server, diabetes_rows):
    # AZUREML_MODEL_DIR reaches init() exactly as given (relative), cwd = the app root
    assert log_contains(sklearn_server, "model loaded from azureml-models/sklearn_json/1/model.pkl")
    model = joblib.load(SK / "azureml-models/sklearn_json/1/model.pkl")
    expected = model.predict(diabetes_rows).tolist()
    got = assert_json(post_json(sklearn_server, {"data": diabetes_rows.tolist()}))
    assert got == pytest.approx(expected, rel=1e-12)
    # plain mode: run() gets the body as a str whatever the content type
    resp = requests.post(sklearn_server.url + "/score", data=json.dumps({"data": diabetes_rows.tolist()}),
                         headers={"Content-Type": "text/plain"}, timeout=30)
    assert assert_json(resp) == pytest.approx(expected, rel=1e-12)


def test_sklearn_json_get_builds_json_from_query(sklearn_server, diabetes_rows):
    model = joblib.load(SK / "azureml-models/sklearn_json/1/model.pkl")
    rows = diabetes_rows[:2].tolist()
    resp = requests.get(sklearn_server.url + "/score", params={"data": json.dumps(rows)}, timeout=30)
    assert assert_json(resp) == pytest.approx(model.predict(rows).tolist(), rel=1e-12)


@pytest.mark.parametrize("body, fragment", [
    ("this is not json", "Expecting value"),
    (json.dumps({"rows": [[1, 2, 3]]}), "'data'"),
    (json.dumps({"data": [[1.0, 2.0]]}), "features"),
], ids=["not-json", "no-data-key", "wrong-width"])
def test_sklearn_json_errors_are_200_json_strings(sklearn_server, body, fragment):
    """`except Exception as e: return str(e)` -> Azure sends 200 with the message as a JSON string."""
    resp = requests.post(sklearn_server.url + "/score", data=body, timeout=30)
    got = assert_json(resp, 200)
    assert isinstance(got, str) and fragment in got, got
    assert resp.headers.get("x-ms-run-function-failed") == "False"


# ---------------------------------------------------------------------------------------------
# 2. numpy_schema: @input_schema('data', NumpyParameterType) + @output_schema

NS = SAMPLES / "numpy_schema"
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 5.1, 1.8]]


@pytest.fixture(scope="module")
def schema_server(start_sample):
    return start_sample("numpy_schema", "--model-dir", "azureml-models/numpy_schema/1")


def test_numpy_schema_predicts_like_the_model(schema_server):
    model = joblib.load(NS / "azureml-models/numpy_schema/1/model.pkl")
    expected = model.predict(np.array(IRIS_ROWS)).tolist()
    assert len(set(expected)) == 3
    assert assert_json(post_json(schema_server, {"data": IRIS_ROWS})) == expected
    # extra keys are ignored; `application/<x>+json` is a JSON content type too
    resp = requests.post(schema_server.url + "/score", data=json.dumps({"data": IRIS_ROWS[:1], "extra": 1}),
                         headers={"Content-Type": "application/vnd.api+json"}, timeout=30)
    assert assert_json(resp) == expected[:1]
    # GET: the query string supplies the run() arguments
    resp = requests.get(schema_server.url + "/score", params={"data": json.dumps(IRIS_ROWS[2:])}, timeout=30)
    assert assert_json(resp) == expected[2:]


def test_numpy_schema_swagger_lists_the_data_input(schema_server):
    sw = assert_json(requests.get(schema_server.url + "/swagger.json", timeout=30))
    assert sw["swagger"] == "2.0"
    service_input = sw["definitions"]["ServiceInput"]
    data = service_input["properties"]["data"]
    assert data["type"] == "array"
    assert data["items"]["type"] == "array"
    assert data["items"]["items"]["type"] == "number"
    assert data["items"]["items"]["format"] == "double"
    assert service_input["example"]["data"] == [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
    service_output = sw["definitions"]["ServiceOutput"]
    assert service_output["type"] == "array"
    assert service_output["items"]["type"] == "integer"
    assert service_output["example"] == [0, 2]
    assert "/score" in sw["paths"]

    sw3 = assert_json(requests.get(schema_server.url + "/swagger.json", params={"version": "3"}, timeout=30))
    assert sw3["openapi"].startswith("3.0")
    assert "data" in sw3["components"]["schemas"]["ServiceInput"]["properties"]


@pytest.mark.parametrize("body, content_type, status, message", [
    (json.dumps({"data": IRIS_ROWS}), "text/plain", 415, "Expects Content-Type to be application/json"),
    ("{not json", "application/json", 400, "POST body could not be decoded as JSON"),
    ("", "application/json", 400, "POST body is empty. Expecting a JSON dictionary."),
    (json.dumps(IRIS_ROWS), "application/json", 400, "POST body should be a JSON dictionary."),
    (json.dumps({"rows": IRIS_ROWS}), "application/json", 400, "A value is not provided for the 'data' parameter."),
], ids=["text-plain", "not-json", "empty", "not-an-object", "no-data-key"])
def test_numpy_schema_bad_requests_are_rejected_by_the_server(schema_server, body, content_type, status, message):
    resp = requests.post(schema_server.url + "/score", data=body, headers={"Content-Type": content_type}, timeout=30)
    got = assert_json(resp, status)
    assert message in got["message"], got


@pytest.mark.parametrize("data", [
    [[5.1, 3.5, 1.4]],                 # wrong width
    [5.1, 3.5, 1.4, 0.2],              # wrong number of dimensions
    [["a", "b", "c", "d"]],            # not numbers
    "5.1, 3.5, 1.4, 0.2",              # not a list
], ids=["wrong-width", "1-d", "strings", "not-a-list"])
def test_numpy_schema_wrong_shapes_fail_inside_run(schema_server, data):
    """inference-schema validates inside the decorated run(): a user-script error, so 500."""
    resp = post_json(schema_server, {"data": data})
    assert assert_json(resp, 500) == {"message": RUN_FAILED_MSG}
    assert resp.headers["x-ms-run-function-failed"] == "True"


# ---------------------------------------------------------------------------------------------
# 3. rawhttp_image: @rawhttp run(request) -> AMLResponse(png bytes)

RI = SAMPLES / "rawhttp_image"


@pytest.fixture(scope="module")
def image_server(start_sample):
    return start_sample("rawhttp_image", "--model-dir", "azureml-models/rawhttp_image/1")


def make_image(size=(200, 100), fmt="PNG") -> bytes:
    x = np.linspace(0, 255, size[0], dtype=np.float64)
    y = np.linspace(0, 255, size[1], dtype=np.float64)
    rgb = np.stack([np.add.outer(y, x) / 2, np.tile(x, (size[1], 1)), np.tile(y[:, None], (1, size[0]))], axis=-1)
    rgb[size[1] // 4: size[1] // 2, size[0] // 4: size[0] // 2] = [255, 0, 0]   # a red block with edges
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(buf, format=fmt)
    return buf.getvalue()


def expected_image(data: bytes, size: int) -> Image.Image:
    """What the sample computes, done here with the model file: grayscale, thumbnail, kernel."""
    with np.load(RI / "azureml-models/rawhttp_image/1/kernel.npz") as npz:
        kernel = npz["kernel"]
    img = Image.open(io.BytesIO(data)).convert("L")
    img.thumbnail((size, size))
    return img.filter(ImageFilter.Kernel(kernel.shape, kernel.flatten().tolist(), scale=1))


def test_rawhttp_image_raw_body_round_trip(image_server):
    png = make_image()
    resp = requests.post(image_server.url + "/score", data=png, headers={"Content-Type": "image/png"}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "image/png"
    assert resp.headers["x-ms-run-function-failed"] == "False"
    assert resp.headers["X-Image-Size"] == "64x32"                 # header set after construction
    out = Image.open(io.BytesIO(resp.content))
    assert out.format == "PNG" and out.mode == "L" and out.size == (64, 32)
    expected = expected_image(png, 64)
    assert np.array_equal(np.asarray(out), np.asarray(expected))
    assert float(resp.headers["X-Mean-Brightness"]) == pytest.approx(np.asarray(expected).mean(), abs=1e-3)


def test_rawhttp_image_multipart_upload(image_server):
    jpg = make_image((120, 160), fmt="JPEG")
    resp = requests.post(image_server.url + "/score", params={"size": "40"},
                         files={"image": ("photo.jpg", jpg, "image/jpeg")}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "image/png"
    out = Image.open(io.BytesIO(resp.content))
    assert out.mode == "L" and out.size == (30, 40)
    assert np.array_equal(np.asarray(out), np.asarray(expected_image(jpg, 40)))


def test_rawhttp_image_get_reports_query_args(image_server):
    resp = requests.get(image_server.url + "/score?size=32&tag=a&tag=b", timeout=30)
    got = assert_json(resp)
    assert got["args"] == {"size": ["32"], "tag": ["a", "b"]}
    assert got["path"] == "/score?size=32&tag=a&tag=b"
    assert got["default_size"] == 64 and len(got["kernel"]) == 3


@pytest.mark.parametrize("method, kwargs, status, fragment", [
    ("POST", {"data": b"definitely not an image", "headers": {"Content-Type": "application/octet-stream"}},
     400, "Cannot read the image"),
    ("POST", {"data": b""}, 422, "No image"),
    ("POST", {"params": {"size": "big"}, "data": b"x"}, 400, "'size' must be an integer"),
    ("POST", {"params": {"size": "0"}, "data": b"x"}, 400, "'size' must be between"),
    ("OPTIONS", {}, 405, "Method OPTIONS is not supported"),   # rawhttp: OPTIONS reaches run()
], ids=["not-an-image", "empty", "size-not-int", "size-zero", "options"])
def test_rawhttp_image_errors_come_from_the_script(image_server, method, kwargs, status, fragment):
    resp = requests.request(method, image_server.url + "/score", timeout=30, **kwargs)
    assert resp.status_code == status, resp.text
    assert fragment in resp.text
    assert resp.headers["x-ms-run-function-failed"] == "False"
    assert "x-ms-run-fn-exec-ms" in resp.headers


def test_rawhttp_image_put_is_405_from_routing(image_server):
    resp = requests.put(image_server.url + "/score", data=make_image(), timeout=30)
    assert resp.status_code == 405
    assert resp.json() == {"message": "The method is not allowed for the requested URL."}


# ---------------------------------------------------------------------------------------------
# 4. multi_model: Model.get_model_path(name[, version]), AZUREML_MODEL_DIR=azureml-models

MM = SAMPLES / "multi_model"


@pytest.fixture(scope="module")
def multi_server(start_sample):
    # configured through the Azure environment variable instead of --model-dir
    return start_sample("multi_model", env={"AZUREML_MODEL_DIR": "azureml-models"})


def multi_expected(rows):
    scaler = joblib.load(MM / "azureml-models/iris_scaler/1/preprocessing/scaler.pkl")
    latest = joblib.load(MM / "azureml-models/iris_classifier/2/model.pkl")
    data = scaler.transform(np.array(rows, dtype=float))
    return latest.predict(data).tolist(), latest.predict_proba(data)


def test_multi_model_uses_both_models_and_latest_version(multi_server):
    predictions, proba = multi_expected(IRIS_ROWS)
    got = assert_json(post_json(multi_server, {"data": IRIS_ROWS}))
    assert got["predictions"] == predictions
    assert len(set(predictions)) == 3                           # version 2, not the v1 baseline
    assert got["species"] == [["setosa", "versicolor", "virginica"][i] for i in predictions]
    assert np.allclose(got["probabilities"], proba, atol=1e-6)
    # rows as objects keyed by feature name (metadata.json of the folder model)
    names = json.loads((MM / "azureml-models/iris_scaler/1/preprocessing/metadata.json").read_text())["features"]
    got2 = assert_json(post_json(multi_server, {"data": [dict(zip(names, r)) for r in IRIS_ROWS]}))
    assert got2["predictions"] == predictions


def test_multi_model_errors_are_200_error_objects(multi_server):
    resp = requests.post(multi_server.url + "/score", data="[1, 2", timeout=30)
    got = assert_json(resp, 200)
    assert set(got) == {"error"} and "Expecting" in got["error"]
    got = assert_json(post_json(multi_server, {"data": [[1.0, 2.0]]}), 200)
    assert "features" in got["error"]


def test_multi_model_found_through_aml_app_root(serve, models, tmp_path):
    """Model.get_model_path looks under $AML_APP_ROOT/azureml-models even when cwd is elsewhere."""
    server = serve(MM / "score.py", env={"AML_APP_ROOT": str(MM), "AZUREML_MODEL_DIR": "azureml-models"},
                   cwd=tmp_path, timeout=60)
    got = assert_json(post_json(server, {"data": IRIS_ROWS[:2]}))
    assert got["predictions"] == multi_expected(IRIS_ROWS[:2])[0]
    assert log_contains(server, f"classifier loaded from {MM}/azureml-models/iris_classifier/2/model.pkl")


# ---------------------------------------------------------------------------------------------
# 5. onnx_model: skl2onnx model run with onnxruntime

OM = SAMPLES / "onnx_model"


@pytest.fixture(scope="module")
def onnx_server(start_sample):
    return start_sample("onnx_model", "--model-dir", "azureml-models/onnx_model/1")


def test_onnx_model_predicts_like_onnxruntime_and_sklearn(onnx_server):
    import onnxruntime
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    rows = X[::20]
    session = onnxruntime.InferenceSession(str(OM / "azureml-models/onnx_model/1/model.onnx"),
                                           providers=["CPUExecutionProvider"])
    label, proba = session.run(["label", "probabilities"], {"float_input": rows.astype(np.float32)})

    got = assert_json(post_json(onnx_server, {"data": rows.tolist()}))
    assert got["label"] == label.tolist() == y[::20].tolist()
    assert np.allclose(got["probabilities"], proba, atol=1e-6)


@pytest.mark.parametrize("body, fragment", [
    ("{oops", "Bad input"),
    (json.dumps({"rows": [[1.0] * 13]}), "KeyError"),
    (json.dumps({"data": [["x"] * 13]}), "ValueError"),
], ids=["not-json", "no-data-key", "strings"])
def test_onnx_model_bad_input_is_400_from_the_script(onnx_server, body, fragment):
    """A plain script may answer with its own AMLResponse: it is sent as is."""
    resp = requests.post(onnx_server.url + "/score", data=body, timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.headers["Content-Type"].startswith("text/html")
    assert fragment in resp.text


def test_onnx_model_wrong_shape_is_500(onnx_server):
    resp = post_json(onnx_server, {"data": [[1.0, 2.0, 3.0]]})
    assert assert_json(resp, 500) == {"message": RUN_FAILED_MSG}
    assert resp.headers["x-ms-run-function-failed"] == "True"
    assert "x-ms-run-fn-exec-ms" not in resp.headers
    assert log_contains(onnx_server, "INVALID_ARGUMENT")     # the traceback goes to the log only


# ---------------------------------------------------------------------------------------------
# the model makers


def test_make_models_is_deterministic(models, tmp_path):
    """make_models.py writes the same bytes again (here into a scratch root)."""
    built = sorted(p.relative_to(SAMPLES) for p in SAMPLES.glob("*/azureml-models/**/*") if p.is_file())
    assert len(built) == 8, built
    proc = subprocess.run([sys.executable, str(SAMPLES / "make_models.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rebuilt = sorted(p.relative_to(tmp_path) for p in tmp_path.glob("*/azureml-models/**/*") if p.is_file())
    assert rebuilt == built
    for rel in built:
        assert (tmp_path / rel).read_bytes() == (SAMPLES / rel).read_bytes(), rel
