"""Azure's wire contract for undecorated run() scripts (spec 1.4, 1.5, 1.8), against a real server."""

import json

import pytest
import requests


@pytest.fixture(scope="module")
def srv(module_serve):
    return module_serve("plain_echo.py")


def post(srv, payload, **kw):
    data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
    return requests.post(srv.url + "/score", data=data, headers=headers, **kw)


def test_body_reaches_run_as_string_and_dict_comes_back_as_json(srv):
    r = post(srv, {"data": [1, 2]})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"echo": {"data": [1, 2]}}
    assert r.headers["x-ms-run-function-failed"] == "False"
    assert float(r.headers["x-ms-run-fn-exec-ms"]) >= 0


def test_body_is_passed_whatever_the_content_type(srv):
    r = post(srv, b"not json at all", headers={"Content-Type": "text/plain"})
    assert r.json() == {"raw": "not json at all"}


def test_form_encoded_body_reaches_run_as_empty_string_like_flask(srv):
    r = requests.post(srv.url + "/score", data={"a": "1"})
    assert r.json() == {"empty": True}


def test_returned_str_is_json_encoded_again(srv):
    assert post(srv, {"return": "str"}).content == b'"New Model A"'
    r = post(srv, {"return": "json_str"})
    assert r.content == b'"{\\"ok\\": true}"'
    assert json.loads(r.json()) == {"ok": True}


def test_none_becomes_empty_object_and_non_ascii_is_escaped(srv):
    assert post(srv, {"return": "none"}).content == b"{}"
    assert post(srv, {"return": "unicode"}).content == b'{"text": "\\u00e9"}'


def test_error_string_returned_by_script_is_a_200(srv):
    r = post(srv, {"return": "error_string"})
    assert r.status_code == 200 and r.json() == "bad thing"


def test_run_exception_is_500_with_generic_message(srv):
    r = post(srv, {"return": "raise"})
    assert r.status_code == 500
    assert r.json() == {"message": "An unexpected error occurred in scoring script. Check the logs for more info."}
    assert r.headers["x-ms-run-function-failed"] == "True"
    assert "x-ms-run-fn-exec-ms" not in r.headers
    assert "RuntimeError: boom" in srv.log()


def test_unserializable_result_is_500_internal_and_not_a_run_failure(srv):
    r = post(srv, {"return": "numpy"})
    assert r.status_code == 500
    assert r.json() == {"message": "An unexpected internal error occurred. Check the logs for more info."}
    assert r.headers["x-ms-run-function-failed"] == "False"
    assert "x-ms-run-fn-exec-ms" not in r.headers


def test_non_utf8_body_is_400(srv):
    r = post(srv, b"\xff\xfe\x00", headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 400
    assert r.json()["message"].startswith("Input cannot be decoded as UTF-8:")


def test_get_turns_query_into_json_string(srv):
    r = requests.get(srv.url + "/score?a=1&b=[1,2]&c=x&c=y&d=null")
    assert r.json() == {"echo": {"a": 1, "b": [1, 2], "c": ["x", "y"], "d": None}}
    assert requests.get(srv.url + "/score").json() == {"echo": {}}


def test_request_headers_have_title_case_keys(srv):
    r = post(srv, {"return": "headers"}, headers={"x-ms-request-id": "abc", "traceparent": "t-1"})
    got = r.json()
    assert got["X-Ms-Request-Id"] == "abc"
    assert got["Traceparent"] == "t-1"
    assert got["Content-Type"] == "application/json"


def test_request_id_headers(srv):
    r = post(srv, {})
    rid = r.headers["x-request-id"]
    assert len(rid) == 36 and r.headers["x-ms-request-id"] == rid
    assert "x-ms-client-request-id" not in r.headers
    assert r.headers["x-ms-server-version"].startswith("openscore/")

    r = post(srv, {}, headers={"x-ms-request-id": "ms-1"})
    assert r.headers["x-ms-request-id"] == "ms-1"
    assert r.headers["x-ms-client-request-id"] == "ms-1"

    r = post(srv, {}, headers={"x-ms-client-request-id": "client-1", "x-request-id": "req-1", "TraceId": "tr"})
    assert r.headers["x-request-id"] == "req-1"
    assert r.headers["x-ms-request-id"] == "client-1"
    assert r.headers["x-ms-client-request-id"] == "client-1"
    assert r.headers["TraceId"] == "tr"


@pytest.mark.parametrize("name", ["x-request-id", "x-ms-request-id", "x-ms-client-request-id"])
def test_over_long_request_id_is_431(srv, name):
    r = post(srv, {}, headers={name: "x" * 101})
    assert r.status_code == 431
    assert name in r.json()["message"]
    assert post(srv, {}, headers={name: "x" * 100}).status_code == 200


def test_routes_methods_and_errors(srv):
    assert requests.get(srv.url + "/").text == "Healthy"
    assert requests.post(srv.url + "/").status_code == 405
    r = requests.options(srv.url + "/score")
    assert r.status_code == 200 and r.content == b""
    for method in ("PUT", "DELETE", "PATCH"):
        r = requests.request(method, srv.url + "/score")
        assert r.status_code == 405
        assert r.json() == {"message": "The method is not allowed for the requested URL."}
    r = requests.get(srv.url + "/nope")
    assert r.status_code == 404 and r.json()["message"].startswith("The requested URL was not found")
    assert "x-request-id" not in r.headers


def test_print_in_run_is_logged_with_request_id(srv):
    r = post(srv, {"return": "print"}, headers={"x-request-id": "print-req-7"})
    assert r.status_code == 200
    line = next(line for line in srv.log().splitlines() if "hello from run" in line)
    assert "print-req-7" in line and "openscore.print" in line


def test_access_log_line_per_request(srv):
    post(srv, {"mark": 1})
    assert any(" I [" in line and "openscore.access - POST /score 200" in line for line in srv.log().splitlines())


def test_swagger_for_undecorated_run(srv):
    doc = requests.get(srv.url + "/swagger.json").json()
    assert doc["swagger"] == "2.0"
    assert doc["definitions"]["ServiceInput"] == {"type": "object", "example": {}}
    doc3 = requests.get(srv.url + "/swagger.json?version=3").json()
    assert doc3["openapi"].startswith("3.0")
    r = requests.get(srv.url + "/swagger.json?version=5")
    assert r.status_code == 404
    assert r.json() == {"message": "Swagger version [5] is not valid. Supported versions: [2, 3, 3.1]."}


def test_async_run(serve):
    srv = serve("async_run.py")
    r = requests.post(srv.url + "/score", data="abc")
    assert r.status_code == 200 and r.json() == {"async": True, "len": 3}
    assert "async run()" in srv.log()


def test_environment_configures_the_server(serve, tmp_path):
    """Azure's variables alone (no flags) configure entry script, app root, model dir; cwd = app root."""
    app = tmp_path / "app"
    (app / "src").mkdir(parents=True)
    (app / "azureml-models" / "m" / "1").mkdir(parents=True)
    (app / "src" / "score.py").write_text(
        "import os\n"
        "def init():\n    pass\n"
        "def run(data):\n"
        "    return {'cwd': os.getcwd(), 'model_dir': os.getenv('AZUREML_MODEL_DIR'),\n"
        "            'exists': os.path.isdir(os.getenv('AZUREML_MODEL_DIR')), 'name': __name__}\n")
    srv = serve(None, env={"AZUREML_ENTRY_SCRIPT": "src/score.py", "AML_APP_ROOT": str(app),
                           "AZUREML_MODEL_DIR": "azureml-models/m/1", "SERVICE_NAME": "my-svc"})
    got = requests.post(srv.url + "/score", data="{}").json()
    assert got == {"cwd": str(app), "model_dir": "azureml-models/m/1", "exists": True, "name": "entry_module"}
    assert requests.get(srv.url + "/swagger.json").json()["info"]["title"] == "my-svc"


def test_config_file_keys_are_environment_names(serve, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"SCORING_TIMEOUT_MS": 250, "SERVICE_VERSION": "7.1"}))
    (tmp_path / "score.py").write_text(
        "import time\ndef init():\n    pass\ndef run(data):\n    time.sleep(1)\n    return 1\n")
    srv = serve(None, env={"AZUREML_ENTRY_SCRIPT": "score.py"}, cwd=tmp_path)
    r = requests.post(srv.url + "/score", data="{}")
    assert r.status_code == 500 and r.json() == {"message": "Scoring timeout after 250 ms"}
    assert requests.get(srv.url + "/swagger.json").json()["info"]["version"] == "7.1"


def test_numpy_response_option(serve):
    srv = serve("plain_echo.py", "--response-json", "numpy")
    r = requests.post(srv.url + "/score", data=json.dumps({"return": "numpy"}))
    assert r.status_code == 200 and r.json() == [0, 1, 2]


def test_cors_only_when_configured(serve):
    srv = serve("plain_echo.py", env={"AML_CORS_ORIGINS": "https://app.example"})
    r = requests.post(srv.url + "/score", data="{}", headers={"Origin": "https://app.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    r = requests.post(srv.url + "/score", data="{}", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
    r = requests.options(srv.url + "/score", headers={"Origin": "https://app.example",
                                                      "Access-Control-Request-Method": "POST"})
    assert r.status_code == 200 and "POST" in r.headers["Access-Control-Allow-Methods"]


def test_swagger_and_405_say_run_function_not_failed(srv):
    r = requests.get(srv.url + "/swagger.json")
    assert r.status_code == 200 and r.headers["x-ms-run-function-failed"] == "False"
    r = requests.get(srv.url + "/swagger.json?version=5")
    assert r.status_code == 404 and r.headers["x-ms-run-function-failed"] == "False"
    for method, path in (("PUT", "/score"), ("POST", "/")):
        r = requests.request(method, srv.url + path)
        assert r.status_code == 405 and r.headers["x-ms-run-function-failed"] == "False"
