"""/swagger.json documents: generated from real inference-schema decorators, overridden by user files, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.pandas_parameter_type import PandasParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema

from openscore.runtime.swagger import (
    SwaggerDocuments,
    SwaggerGenerationError,
    SwaggerVersionError,
    parse_swagger_version,
)

# inference-schema keys its registry by "<module>.<function name>": every run below has its own name.


@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0, 3.0]], dtype=np.float32)))
@input_schema("frame", PandasParameterType(pd.DataFrame({"age": [42], "city": ["Oslo"]})))
@input_schema("top_k", StandardPythonParameterType(3))
@output_schema(StandardPythonParameterType({"scores": [0.5, 0.25]}))
def run_stacked(data, frame, top_k, request_headers=None):
    return {"scores": []}


@input_schema("data", NumpyParameterType(np.array([10, 9, 8], dtype=np.int64)))
@output_schema(NumpyParameterType(np.array([3726.995])))
def run_numpy(data):
    return data.sum().tolist()


@input_schema("data", StandardPythonParameterType([1, "a"]))  # mixed-type array: OpenAPI 3 only
def run_mixed(data):
    return data


def run_plain(raw_data):
    return raw_data


def _recursive_run():
    def run_recursive(data):  # its closure holds itself: inference-schema's introspection recurses forever
        return run_recursive(data) if data else None
    return run_recursive


def doc(docs: SwaggerDocuments, version: str | None = None) -> dict[str, Any]:
    return json.loads(docs.get(version))


def resolve_ref(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [r for k, v in node.items() for r in ([v] if k == "$ref" else all_refs(v))]
    if isinstance(node, list):
        return [r for item in node for r in all_refs(item)]
    return []


def assert_valid_openapi3(document: dict[str, Any], openapi: str) -> None:
    assert document["openapi"] == openapi
    assert "swagger" not in document and "definitions" not in document
    assert {"title", "version"} <= document["info"].keys()
    assert document["components"]["securitySchemes"]["Bearer"] == {
        "type": "apiKey", "name": "Authorization", "in": "header", "description": "For example: Bearer abc123"}
    for path, item in document["paths"].items():
        assert path.startswith("/")
        for op in item.values():
            assert "default" in op["responses"] and op["operationId"]
    refs = all_refs(document)
    assert refs and all(resolve_ref(document, r) is not None for r in refs)


# --- version parsing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "expected"), [
    (None, "2"), ("2", "2"), ("2.0", "2"), ("3", "3"), ("3.0", "3"), ("3.1", "3.1")])
def test_parse_swagger_version(query, expected):
    assert parse_swagger_version(query) == expected


@pytest.mark.parametrize("query", ["5", "", "3.0a", "2.0.0", " 3", "v3", "3.10"])
def test_parse_swagger_version_rejects_with_azure_message(query):
    with pytest.raises(SwaggerVersionError) as info:
        parse_swagger_version(query)
    assert str(info.value) == f"Swagger version [{query}] is not valid. Supported versions: [2, 3, 3.1]."


def test_bad_version_through_get():
    docs = SwaggerDocuments(run_numpy)
    with pytest.raises(SwaggerVersionError, match=r"^Swagger version \[5\] is not valid\. "
                                                  r"Supported versions: \[2, 3, 3\.1\]\.$"):
        docs.get("5")
    assert isinstance(SwaggerVersionError("x"), ValueError)


# --- generated documents -------------------------------------------------------------------------------------


def test_swagger2_for_numpy_script_matches_azure_layout():
    document = doc(SwaggerDocuments(run_numpy))  # no ?version= means 2
    assert document["swagger"] == "2.0"
    assert list(document["definitions"]) == ["ServiceInput", "ServiceOutput", "ErrorResponse"]
    assert document["definitions"]["ServiceInput"] == {
        "type": "object",
        "properties": {"data": {"type": "array", "items": {"type": "integer", "format": "int64"},
                                "format": "numpy.ndarray"}},
        "example": {"data": [10, 9, 8]},
    }
    assert document["definitions"]["ServiceOutput"] == {
        "type": "array", "items": {"type": "number", "format": "double"}, "format": "numpy.ndarray",
        "example": [3726.995]}
    assert document["definitions"]["ErrorResponse"] == {"type": "object", "properties": {"message": {"type": "string"}}}
    assert document["securityDefinitions"]["Bearer"]["name"] == "Authorization"
    score = document["paths"]["/score"]["post"]
    assert score["operationId"] == "RunMLService"
    assert score["security"] == [{"Bearer": []}]
    assert score["parameters"][0]["in"] == "body"
    assert score["parameters"][0]["schema"] == {"$ref": "#/definitions/ServiceInput"}
    assert score["responses"]["200"]["schema"] == {"$ref": "#/definitions/ServiceOutput"}
    assert score["responses"]["default"]["schema"] == {"$ref": "#/definitions/ErrorResponse"}
    assert document["paths"]["/"]["get"]["operationId"] == "ServiceHealthCheck"
    assert set(document["paths"]) == {"/", "/score", "/swagger.json"}
    assert all(resolve_ref(document, r) for r in all_refs(document))


@pytest.mark.parametrize(("query", "openapi"), [("3", "3.0.3"), ("3.0", "3.0.3"), ("3.1", "3.1.0")])
def test_openapi3_documents_are_structurally_valid(query, openapi):
    document = doc(SwaggerDocuments(run_stacked), query)
    assert_valid_openapi3(document, openapi)
    schemas = document["components"]["schemas"]
    assert set(schemas) == {"ServiceInput", "ServiceOutput", "ErrorResponse"}
    score = document["paths"]["/score"]["post"]
    assert score["security"] == [{"Bearer": []}]
    assert score["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ServiceInput"}
    assert score["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ServiceOutput"}
    health = document["paths"]["/"]["get"]["responses"]["200"]["content"]["text/plain"]["schema"]
    assert health["example"] == "Healthy"


def test_stacked_input_schemas_numpy_pandas_and_python_types():
    service_input = doc(SwaggerDocuments(run_stacked), "3")["components"]["schemas"]["ServiceInput"]
    props = service_input["properties"]
    assert list(props) == ["data", "frame", "top_k", "request_headers"]
    assert props["data"] == {"type": "array", "format": "numpy.ndarray",
                             "items": {"type": "array", "items": {"type": "number", "format": "float"}}}
    assert props["frame"]["format"] == "pandas.DataFrame:records"
    assert props["frame"]["items"]["properties"] == {"age": {"type": "integer", "format": "int64"},
                                                     "city": {"type": "string"}}
    assert props["top_k"] == {"type": "integer", "format": "int64"}
    assert props["request_headers"] == {}  # an argument without a decorator: empty schema, "" example
    assert service_input["example"] == {"data": [[1.0, 2.0, 3.0]], "frame": [{"age": 42, "city": "Oslo"}],
                                        "top_k": 3, "request_headers": ""}
    output = doc(SwaggerDocuments(run_stacked), "3")["components"]["schemas"]["ServiceOutput"]
    assert output["required"] == ["scores"] and output["example"] == {"scores": [0.5, 0.25]}


def test_versions_only_differ_in_openapi_field_and_aliases_are_the_same_body():
    docs = SwaggerDocuments(run_stacked)
    three, three_one = doc(docs, "3"), doc(docs, "3.1")
    assert {**three_one, "openapi": "3.0.3"} == three
    assert docs.get("3.0") == docs.get("3") and docs.get(None) == docs.get("2.0") == docs.get("2")


def test_body_is_what_azmlinfsrv_sends():
    """azmlinfsrv sends json.dumps(document): default separators, ASCII only."""
    body = SwaggerDocuments(run_numpy, service_name="Café").get("3")
    document = json.loads(body)
    assert body == json.dumps(document).encode()
    assert b"Caf\\u00e9" in body


def test_undecorated_run_gets_empty_object_schemas_in_every_version():
    docs = SwaggerDocuments(run_plain)
    empty = {"type": "object", "example": {}}
    assert doc(docs, "2")["definitions"]["ServiceInput"] == empty
    assert doc(docs, "2")["definitions"]["ServiceOutput"] == empty
    for version in ("3", "3.1"):
        schemas = doc(docs, version)["components"]["schemas"]
        assert schemas["ServiceInput"] == schemas["ServiceOutput"] == empty
    assert docs.supported_versions() == ["2", "3", "3.1"]


def test_version_the_decorators_do_not_support_is_refused():
    docs = SwaggerDocuments(run_mixed)
    for query in ("2", None, "2.0"):
        with pytest.raises(SwaggerVersionError) as info:
            docs.get(query)
        shown = query or "2"
        assert str(info.value) == (f"Swagger version [{shown}] is not supported for the scoring script. "
                                   "Supported swagger versions: [3, 3.1].")
    with pytest.raises(SwaggerVersionError, match=r"Supported versions: \[3, 3\.1\]\.$"):
        docs.get("4")
    assert doc(docs, "3")["components"]["schemas"]["ServiceInput"]["example"] == {"data": [1, "a"]}


# --- substitutions -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["models/iris", "/models/iris", "models/iris/", "//models/iris//"])
def test_title_version_and_path_prefix(prefix):
    docs = SwaggerDocuments(run_numpy, service_name="iris-svc", service_version="7", path_prefix=prefix)
    for version in ("2", "3", "3.1"):
        document = doc(docs, version)
        assert document["info"]["title"] == "iris-svc"
        assert document["info"]["version"] == "7"
        assert document["info"]["description"] == "API specification for the Azure Machine Learning service iris-svc"
        assert list(document["paths"]) == ["/models/iris/", "/models/iris/score", "/models/iris/swagger.json"]


@pytest.mark.parametrize("prefix", ["", "/", "  "])
def test_empty_prefix_keeps_plain_paths(prefix):
    assert list(doc(SwaggerDocuments(run_numpy, path_prefix=prefix), "3")["paths"]) == ["/", "/score", "/swagger.json"]


def test_defaults_and_names_that_need_json_escaping():
    assert doc(SwaggerDocuments(run_numpy))["info"] == {
        "title": "ML service", "description": "API specification for the Azure Machine Learning service ML service",
        "version": "1.0"}
    tricky = 'my "quoted" \\ service'
    assert doc(SwaggerDocuments(run_numpy, service_name=tricky), "3")["info"]["title"] == tricky


# --- user documents ------------------------------------------------------------------------------------------


def write(path: Path, content: Any) -> bytes:
    data = json.dumps(content, indent=4).encode()
    path.write_bytes(data)
    return data


def test_user_files_are_served_byte_for_byte_per_version(tmp_path):
    v2 = write(tmp_path / "swagger2.json", {"swagger": "2.0", "info": {"title": "mine"}})
    v3 = write(tmp_path / "swagger3.json", {"openapi": "3.0.0", "info": {"title": "mine3"}})
    v31 = write(tmp_path / "swagger3.1.json", {"openapi": "3.1.0"})
    docs = SwaggerDocuments(run_numpy, app_root=str(tmp_path))
    assert docs.get(None) == docs.get("2") == v2
    assert docs.get("3") == docs.get("3.0") == v3
    assert docs.get("3.1") == v31


def test_plain_swagger_json_wins_for_version_2_only(tmp_path):
    write(tmp_path / "swagger2.json", {"which": "swagger2"})
    mine = write(tmp_path / "swagger.json", {"which": "swagger"})
    docs = SwaggerDocuments(run_numpy, app_root=str(tmp_path))
    assert docs.get("2") == mine
    assert doc(docs, "3")["openapi"] == "3.0.3"  # still generated, as in azmlinfsrv


def test_user_file_is_read_once(tmp_path):
    first = write(tmp_path / "swagger3.json", {"v": 1})
    docs = SwaggerDocuments(run_numpy, app_root=str(tmp_path))
    assert docs.get("3") == first
    write(tmp_path / "swagger3.json", {"v": 2})
    assert docs.get("3") == first


def test_user_file_beside_entry_script_and_app_root_first(tmp_path):
    app_root, script_dir = tmp_path / "app", tmp_path / "src"
    app_root.mkdir()
    script_dir.mkdir()
    beside = write(script_dir / "swagger3.json", {"from": "script dir"})
    docs = SwaggerDocuments(run_numpy, app_root=str(app_root), entry_script_dir=str(script_dir))
    assert docs.get("3") == beside
    in_root = write(app_root / "swagger3.json", {"from": "app root"})
    assert SwaggerDocuments(run_numpy, app_root=str(app_root), entry_script_dir=str(script_dir)).get("3") == in_root


def test_user_file_makes_an_unsupported_version_available(tmp_path):
    mine = write(tmp_path / "swagger2.json", {"swagger": "2.0"})
    docs = SwaggerDocuments(run_mixed, app_root=str(tmp_path))
    assert docs.supported_versions() == ["2", "3", "3.1"]
    assert docs.get("2") == mine


def test_invalid_user_file_is_a_generation_error_for_that_version_only(tmp_path):
    (tmp_path / "swagger3.json").write_text("{not json")
    docs = SwaggerDocuments(run_numpy, app_root=str(tmp_path))
    with pytest.raises(SwaggerGenerationError, match=r"swagger3\.json is not valid JSON"):
        docs.get("3")
    assert doc(docs, "2")["swagger"] == "2.0"


# --- failures must not take the server down ------------------------------------------------------------------


def test_schema_introspection_failure_is_a_generation_error():
    docs = SwaggerDocuments(_recursive_run())
    with pytest.raises(SwaggerGenerationError,
                       match=r"^Could not generate the swagger 3 document: RecursionError") as info:
        docs.get("3")
    assert isinstance(info.value.__cause__, RecursionError)
    with pytest.raises(SwaggerVersionError):  # a bad version is still a 404, not a 500
        docs.get("9")


def test_introspection_failure_still_serves_user_file(tmp_path):
    mine = write(tmp_path / "swagger.json", {"swagger": "2.0"})
    docs = SwaggerDocuments(_recursive_run(), app_root=str(tmp_path))
    assert docs.get(None) == mine
    with pytest.raises(SwaggerGenerationError):
        docs.get("3.1")
