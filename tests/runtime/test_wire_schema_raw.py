"""@input_schema and @rawhttp input modes (spec 1.4, 1.6, 1.11) against a real server."""

import json

import pytest
import requests


@pytest.fixture(scope="module")
def schema_srv(module_serve):
    return module_serve("schema_numpy.py")


@pytest.fixture(scope="module")
def raw_srv(module_serve):
    return module_serve("rawhttp_echo.py")


# ------------------------------------------------------------------ @input_schema

def test_schema_arguments_by_name_with_defaults(schema_srv):
    r = requests.post(schema_srv.url + "/score", json={"data": [[1, 2, 3], [4, 5, 6]]})
    assert r.status_code == 200 and r.json() == [12.0, 30.0]
    r = requests.post(schema_srv.url + "/score", json={"data": [[1, 2, 3]], "scale": 1.0, "extra": "ignored"})
    assert r.json() == [6.0]


def test_schema_get_uses_query_parameters(schema_srv):
    r = requests.get(schema_srv.url + "/score", params={"data": "[[1,1,1]]", "scale": "3"})
    assert r.status_code == 200 and r.json() == [9.0]


@pytest.mark.parametrize("body,ctype,status,message", [
    ('{"data": [[1,2,3]]}', "text/plain", 415, "Expects Content-Type to be application/json"),
    ("", "application/json", 400, "POST body is empty. Expecting a JSON dictionary."),
    ("[1, 2]", "application/json", 400, "POST body should be a JSON dictionary."),
    ('{"scale": 1.0}', "application/json", 400, "A value is not provided for the 'data' parameter."),
])
def test_schema_input_errors(schema_srv, body, ctype, status, message):
    r = requests.post(schema_srv.url + "/score", data=body, headers={"Content-Type": ctype})
    assert r.status_code == status
    assert r.json() == {"message": message}
    assert r.headers["x-ms-run-function-failed"] == "False"


def test_schema_bad_json_is_400(schema_srv):
    r = requests.post(schema_srv.url + "/score", data="{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["message"].startswith("POST body could not be decoded as JSON: ")


def test_schema_accepts_plus_json_content_type(schema_srv):
    r = requests.post(schema_srv.url + "/score", data='{"data": [[1,2,3]]}',
                      headers={"Content-Type": "application/vnd.api+json; charset=utf-8"})
    assert r.status_code == 200


def test_schema_wrong_shape_fails_inside_run_as_500(schema_srv):
    r = requests.post(schema_srv.url + "/score", json={"data": [[1, 2]]})
    assert r.status_code == 500
    assert r.headers["x-ms-run-function-failed"] == "True"


def test_schema_swagger_lists_parameters(schema_srv):
    doc = requests.get(schema_srv.url + "/swagger.json?version=3").json()
    props = doc["components"]["schemas"]["ServiceInput"]["properties"]
    assert set(props) == {"data", "scale"}
    assert props["data"]["type"] == "array"


# ------------------------------------------------------------------ @rawhttp

def test_raw_request_object_offers_werkzeug_api(raw_srv):
    r = requests.post(raw_srv.url + "/score?mode=info&k=1&k=2", json={"a": 1}, headers={"X-Custom": "yes"})
    assert r.status_code == 200
    info = r.json()
    assert info["method"] == "POST"
    assert info["args"] == {"mode": ["info"], "k": ["1", "2"]}
    assert info["full_path"] == "/score?mode=info&k=1&k=2"
    assert info["url"].endswith("/score?mode=info&k=1&k=2")
    assert info["is_json"] and info["json"] == {"a": 1}
    assert info["x_custom"] == "yes"
    assert info["data_len"] == len(json.dumps({"a": 1}))


def test_raw_multipart_files_and_form(raw_srv):
    r = requests.post(raw_srv.url + "/score?mode=info", files={"image": ("cat.png", b"\x89PNG" + b"0" * 100)},
                      data={"label": "cat"})
    info = r.json()
    assert info["files"] == {"image": {"filename": "cat.png", "size": 104}}
    assert info["form"] == {"label": ["cat"]}


def test_raw_get_and_options_reach_run(raw_srv):
    assert requests.get(raw_srv.url + "/score?x=1").json()["method"] == "GET"
    r = requests.options(raw_srv.url + "/score")
    assert r.text == "options handled by run"


def test_raw_bytes_response_with_content_type(raw_srv):
    r = requests.post(raw_srv.url + "/score?mode=bytes", data=b"\x00\x01\x02")
    assert r.content == b"\x02\x01\x00"
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["x-ms-run-function-failed"] == "False"


def test_raw_response_changed_after_construction(raw_srv):
    r = requests.post(raw_srv.url + "/score?mode=after", data=b"")
    assert r.status_code == 201
    assert r.headers["X-After"] == "set later"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.text == "plain text"


def test_raw_response_header_values_split_on_commas(raw_srv):
    r = requests.post(raw_srv.url + "/score?mode=multi", data=b"")
    assert r.headers["X-Multi"].replace(" ", "") == "a,b"


def test_raw_statuses_pass_through_and_5xx_marks_failure(raw_srv):
    r = requests.post(raw_srv.url + "/score?mode=422", data=b"")
    assert r.status_code == 422 and "x-ms-run-fn-exec-ms" in r.headers
    r = requests.post(raw_srv.url + "/score?mode=503", data=b"")
    assert r.status_code == 503 and r.headers["x-ms-run-function-failed"] == "True"
    assert "x-ms-run-fn-exec-ms" in r.headers


def test_raw_json_with_wrong_content_type_fails_inside_run(raw_srv):
    r = requests.post(raw_srv.url + "/score?mode=json", data=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status_code == 500 and r.headers["x-ms-run-function-failed"] == "True"


def test_raw_put_is_405_before_run(raw_srv):
    assert requests.put(raw_srv.url + "/score?mode=info", data=b"").status_code == 405
