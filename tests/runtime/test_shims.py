"""Azure ML compatibility shims: import behaviour (checked in fresh interpreters), AMLResponse,
Model.get_model_path on real folder trees, and the CSV files ModelDataCollector writes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from openscore.runtime import shim_loader
from openscore.runtime.request_context import current_request_id

ROOT = Path(__file__).resolve().parents[2]
SHIM_ROOT = str(shim_loader.SHIM_ROOT)
AML_HEADERS = ["$aml_dc_correlation_id", "$aml_dc_scoring_timestamp", "$aml_dc_boundary", "$aml_workspace",
               "$aml_service_name", "$aml_model_name", "$aml_model_version", "$aml_request_id"]


def run_python(code: str, *, extra_path: tuple[Path, ...] = ()) -> dict:
    """Run `code` in a fresh interpreter (openscore as installed); it must print one JSON object."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AML_", "AZUREML_", "OPENSCORE_"))}
    env["PYTHONPATH"] = os.pathsep.join(map(str, extra_path))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def shims():
    """The shim finder in this process for the in-process tests, removed again afterwards."""
    already = shim_loader._installed_finder() is not None
    shim_loader.install_shims()
    yield
    if not already:
        shim_loader.uninstall_shims()
        for name, module in list(sys.modules.items()):
            if str(getattr(module, "__file__", "") or "").startswith(SHIM_ROOT):
                del sys.modules[name]


# --- import behaviour, each in a fresh interpreter -------------------------------------------------------------

def test_shims_importable_only_after_install_and_rawhttp_flag_shared():
    facts = run_python("""
        import importlib.util, json, sys
        before = importlib.util.find_spec("azureml") is not None
        from openscore.runtime.shim_loader import install_shims, rawhttp_requested
        names = install_shims()
        again = install_shims()
        finders = [f for f in sys.meta_path if getattr(f, "_openscore_shim_finder", False)]
        from azureml.contrib.services.aml_request import AMLRequest, rawhttp
        from azureml.contrib.services import rawhttp as rawhttp_from_package
        from azureml.contrib.services.aml_response import AMLResponse
        from azureml.core import Model
        from azureml.core.model import Model as ModelFromModule
        from azureml.monitoring import ModelDataCollector
        from azureml.exceptions import ModelNotFoundException, WebserviceException
        import azureml_inference_server_http.api.aml_request as new_request
        from azureml_inference_server_http.api.aml_response import AMLResponse as NewResponse
        import werkzeug.wrappers
        flag_before = rawhttp_requested()

        @new_request.rawhttp
        def run(request):
            return request

        old_request = sys.modules["azureml.contrib.services.aml_request"]
        print(json.dumps({
            "before": before, "same_names": names == again, "finders": len(finders),
            "finder_last": sys.meta_path[-1] is finders[0],
            "served": [n for n in ["azureml.core.model", "azureml.contrib.services.aml_request",
                                   "azureml_inference_server_http.api.aml_request"] if n in names],
            "one_module": new_request is old_request, "same_response": NewResponse is AMLResponse,
            "same_model": Model is ModelFromModule, "same_rawhttp": rawhttp is rawhttp_from_package,
            "run_unchanged": run.__name__ == "run",
            "flag_before": flag_before, "flag_after": old_request._rawHttpRequested, "requested": rawhttp_requested(),
            "request_is_werkzeug": issubclass(AMLRequest, werkzeug.wrappers.Request),
            "response_is_werkzeug": issubclass(AMLResponse, werkzeug.wrappers.Response),
            "not_found_is_webservice": issubclass(ModelNotFoundException, WebserviceException),
        }))
    """)
    assert facts.pop("before") is False, "azureml must not be importable before install_shims()"
    assert facts.pop("flag_before") is False
    assert facts.pop("finders") == 1
    assert facts.pop("served") == ["azureml.core.model", "azureml.contrib.services.aml_request",
                                   "azureml_inference_server_http.api.aml_request"]
    assert all(facts.values()), facts


def test_real_packages_win_module_by_module(tmp_path):
    # A "real" install: PEP 420 namespace packages (no azureml/__init__.py), as pip lays out azureml-*.
    fake = tmp_path / "site"
    (fake / "azureml/core").mkdir(parents=True)
    (fake / "azureml/core/__init__.py").write_text("from .model import Model\n")
    (fake / "azureml/core/model.py").write_text("class Model:\n    REAL = True\n")
    (fake / "azureml/contrib/services").mkdir(parents=True)
    (fake / "azureml/contrib/services/aml_request.py").write_text(
        "_rawHttpRequested = False\n"
        "def rawhttp(func):\n    global _rawHttpRequested\n    _rawHttpRequested = True\n    return func\n")
    facts = run_python("""
        import json, sys
        from openscore.runtime.shim_loader import install_shims, rawhttp_requested
        install_shims()
        import azureml.core.model, azureml.contrib.services.aml_request, azureml.contrib.services.aml_response
        import azureml.monitoring
        import azureml_inference_server_http.api.aml_request as new_request
        new_request.rawhttp(lambda request: None)
        origin = lambda name: sys.modules[name].__file__
        print(json.dumps({
            "core_model": origin("azureml.core.model"),
            "aml_request": origin("azureml.contrib.services.aml_request"),
            "aml_response": origin("azureml.contrib.services.aml_response"),
            "monitoring": origin("azureml.monitoring"),
            "real_model": getattr(azureml.core.model.Model, "REAL", False),
            "alias_is_real": new_request is sys.modules["azureml.contrib.services.aml_request"],
            "requested": rawhttp_requested(),
        }))
    """, extra_path=[fake])
    assert facts["core_model"].startswith(str(fake)) and facts["real_model"]
    assert facts["aml_request"].startswith(str(fake))
    assert facts["aml_response"].startswith(SHIM_ROOT)  # missing from the real install: served by the shim
    assert facts["monitoring"].startswith(SHIM_ROOT)
    assert facts["alias_is_real"] and facts["requested"]


def test_sklearn_externals_joblib_alias_is_opt_in():
    facts = run_python("""
        import json, sys
        from openscore.runtime.shim_loader import install_shims
        install_shims()
        try:
            from sklearn.externals import joblib
            without = True
        except ImportError:
            without = False
        names = install_shims(sklearn_joblib_alias=True)
        from sklearn.externals import joblib as old_path
        import sklearn.externals.joblib.numpy_pickle as old_numpy_pickle
        import joblib
        print(json.dumps({"without": without, "listed": "sklearn.externals.joblib" in names,
                          "same": old_path is joblib, "submodule": old_numpy_pickle is joblib.numpy_pickle}))
    """)
    assert facts == {"without": False, "listed": True, "same": True, "submodule": True}


# --- AMLResponse -------------------------------------------------------------------------------------------------

def test_aml_response_body_mimetype_and_headers(shims):
    from azureml.contrib.services.aml_response import AMLResponse

    empty = AMLResponse(None, 200)
    assert (empty.get_data(), empty.mimetype, empty.headers["x-ms-run-function-failed"]) == \
        (b"{}", "application/json", "False")

    as_json = AMLResponse({"ok": "é"}, 201, json_str=True)
    assert as_json.status_code == 201 and as_json.content_type == "application/json"
    assert as_json.get_data() == b'{"ok": "\\u00e9"}'

    text = AMLResponse(message="New Model A", status_code=422, run_function_failed=True)
    assert (text.status_code, text.get_data(as_text=True)) == (422, "New Model A")
    assert text.content_type == "text/html; charset=utf-8"
    assert text.headers["x-ms-run-function-failed"] == "True"

    image = AMLResponse(b"\x89PNG", 200, {"Content-Type": "image/png", "X-Custom": "a, b"})
    assert image.headers.getlist("Content-Type") == ["image/png"]
    assert image.headers.getlist("X-Custom") == ["a", "b"]
    assert image.get_data() == b"\x89PNG"

    image.headers["Access-Control-Allow-Origin"] = "*"
    image.mimetype = "image/jpeg"
    assert image.headers["Access-Control-Allow-Origin"] == "*" and image.content_type == "image/jpeg"


# --- Model.get_model_path ----------------------------------------------------------------------------------------

@pytest.fixture
def app_root(tmp_path, monkeypatch):
    """An AML_APP_ROOT with the multi-model layout azureml-models/<name>/<version>/<entry>."""
    models = tmp_path / "azureml-models"
    for rel in ["sklearn_model/1/model.pkl", "sklearn_model/2/model.pkl", "sklearn_model/10/model.pkl",
                "tf_model/3/saved_model/saved_model.pb", "tf_model/3/saved_model/variables/v.index",
                "broken/1/a.pkl", "broken/1/b.pkl", "badversions/latest/model.pkl"]:
        (models / rel).parent.mkdir(parents=True, exist_ok=True)
        (models / rel).write_bytes(b"x")
    monkeypatch.setenv("AML_APP_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_get_model_path_latest_pinned_and_folder_models(shims, app_root):
    from azureml.core import Model

    models = app_root / "azureml-models"
    assert Model.get_model_path("sklearn_model") == str(models / "sklearn_model/10/model.pkl")  # 10 > 2, numerically
    assert Model.get_model_path("sklearn_model", version=1) == str(models / "sklearn_model/1/model.pkl")
    assert Model.get_model_path(model_name="tf_model") == str(models / "tf_model/3/saved_model")


def test_get_model_path_relative_when_app_root_unset_and_cwd_fallback(shims, app_root, monkeypatch):
    from azureml.core.model import Model

    monkeypatch.delenv("AML_APP_ROOT")
    assert Model.get_model_path("sklearn_model", 2) == os.path.join("azureml-models", "sklearn_model", "2", "model.pkl")
    (app_root / "legacy.pkl").write_bytes(b"x")  # registered long ago, copied next to the script
    assert Model.get_model_path("legacy.pkl") == "legacy.pkl"


def test_get_model_path_errors(shims, app_root):
    from azureml.core.model import Model
    from azureml.exceptions import ModelNotFoundException, WebserviceException

    with pytest.raises(WebserviceException, match=r"Dir .*broken.1 can contain only 1 file or folder. "
                                                  r"Found \['a.pkl', 'b.pkl'\]"):
        Model.get_model_path("broken")
    with pytest.raises(WebserviceException, match="version should be an int"):
        Model.get_model_path("sklearn_model", version="1")
    with pytest.raises(WebserviceException, match="integer version folders"):
        Model.get_model_path("badversions")
    with pytest.raises(ModelNotFoundException, match="Model no_such_model not found"):
        Model.get_model_path("no_such_model")
    with pytest.raises(ModelNotFoundException, match="sklearn_model version 7 not found"):
        Model.get_model_path("sklearn_model", version=7)
    with pytest.raises(WebserviceException, match="workspace access is not available in openscore"):
        Model(object(), "sklearn_model")


# --- ModelDataCollector ------------------------------------------------------------------------------------------

@pytest.fixture
def mdc_env(tmp_path, monkeypatch):
    """Clean data-collection settings, cwd = tmp; returns the folder AML_MODEL_DC_STORAGE will name."""
    for var in ("AML_MODEL_DC_STORAGE_ENABLED", "AML_MODEL_DC_STORAGE", "AML_MODEL_DC_DEBUG",
                "AML_MODEL_DC_BOUNDARY", "OPENSCORE_MDC_DIR", "SERVICE_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AML_MODEL_CONFIG_MAP", str(tmp_path / "no_config_map.json"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "collected"


def enable(monkeypatch, storage: Path | str) -> None:
    monkeypatch.setenv("AML_MODEL_DC_STORAGE_ENABLED", "True")
    monkeypatch.setenv("AML_MODEL_DC_STORAGE", str(storage))


def only_csv(root: Path) -> tuple[Path, list[list[str]]]:
    files = sorted(root.rglob("*.csv"))
    assert len(files) == 1, files
    with open(files[0], newline="") as f:
        return files[0].relative_to(root), list(csv.reader(f))


def test_mdc_disabled_prints_azure_message_and_writes_nothing(shims, mdc_env, capsys):
    from azureml.monitoring import ModelDataCollector

    dc = ModelDataCollector("m", designation="inputs", feature_names=["a", "b"])
    assert "Data collection is not enabled. Set environment variable AML_MODEL_DC_STORAGE_ENABLED" \
        in capsys.readouterr().out
    correlation = dc.collect([[1, 2]])
    assert list(correlation) == ["$aml_dc_scoring_timestamp", "$aml_request_id", "$aml_dc_correlation_id",
                                 "$aml_dc_boundary", "$aml_workspace", "$aml_service_name", "$aml_model_name",
                                 "$aml_model_version"]
    assert not list(mdc_env.parent.rglob("*.csv"))


def test_mdc_inputs_written_in_blob_layout_with_header_once(shims, mdc_env, monkeypatch):
    from azureml.monitoring import ModelDataCollector

    enable(monkeypatch, mdc_env)
    dc = ModelDataCollector("diabetes", designation="inputs", feature_names=["age", "bmi"],
                            workspace="Sub-1/RG/WS", webservice_name="svc", model_version=3)
    token = current_request_id.set("req-42")
    try:
        first = dc.collect([[50, 22.5], [61, 30.1]], user_correlation_id="batch7")
    finally:
        current_request_id.reset(token)
    second = dc.collect([70, 25.0])  # a single row
    path, rows = only_csv(mdc_env)
    day = datetime.fromisoformat(first["$aml_dc_scoring_timestamp"])
    assert path == Path(f"modeldata/sub-1/rg/ws/svc/diabetes/3/inputs/{day:%Y/%m/%d}/inputs.csv")
    assert rows[0] == ["age", "bmi", *AML_HEADERS]
    assert [r[:2] for r in rows[1:]] == [["50", "22.5"], ["61", "30.1"], ["70", "25.0"]]
    assert rows[1][2:] == [first["$aml_dc_correlation_id"], first["$aml_dc_scoring_timestamp"], "1440",
                           "sub-1/rg/ws", "svc", "diabetes", "3", "req-42"]
    assert first["$aml_dc_correlation_id"].startswith("batch7-")
    assert rows[3][-1] == "00000000-0000-0000-0000-000000000000"  # no request in context
    assert rows[3][2] == second["$aml_dc_correlation_id"] != first["$aml_dc_correlation_id"]


def test_mdc_numpy_predictions_with_correlations_and_hour_boundary(shims, mdc_env, monkeypatch):
    from azureml.monitoring import ModelDataCollector

    enable(monkeypatch, mdc_env)
    monkeypatch.setenv("AML_MODEL_DC_BOUNDARY", "hour")
    inputs = ModelDataCollector("m", designation="inputs")
    predictions = ModelDataCollector("m", identifier="predictions")  # the pre-0.1.0a15 keyword
    correlation = inputs.collect(np.array([[1.5, 2.0], [3.0, 4.0]]))
    assert correlation["$aml_dc_boundary"] == 60
    assert predictions.collect(predictions.add_correlations(np.array([0.25, 0.75]), correlation)) is None
    predictions.collect(np.array([[1], [0]]))
    files = sorted(mdc_env.rglob("*.csv"))
    assert [f.name for f in files] == ["inputs.csv", "predictions.csv"]
    with open(files[1], newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["feature_0", "feature_1", *AML_HEADERS]  # generated names, correlation columns added
    assert rows[1][:3] == ["0.25", "0.75", correlation["$aml_dc_correlation_id"]]
    assert rows[2:] == [["1"], ["0"]]
    assert files[1].relative_to(mdc_env).parts[:8] == \
        ("modeldata", "default", "default", "default", "default", "m", "default", "predictions")


def test_mdc_dataframe_signals_config_map_and_connection_string(shims, mdc_env, monkeypatch, tmp_path):
    from azureml.monitoring import ModelDataCollector

    config_map = tmp_path / "model_config_map.json"
    config_map.write_text(json.dumps({
        "modelsInfo": {"churn": {"1": {}, "12": {}, "2": {}}},
        "accountContext": {"subscriptionId": "SUB", "resourceGroupName": "Rg", "accountName": "Ws"}}))
    monkeypatch.setenv("AML_MODEL_CONFIG_MAP", str(config_map))
    monkeypatch.setenv("SERVICE_NAME", "churn-svc")
    enable(monkeypatch, "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=k==;"
                        "EndpointSuffix=core.windows.net")
    monkeypatch.setenv("OPENSCORE_MDC_DIR", str(mdc_env))
    dc = ModelDataCollector("churn", designation="signals", collection_name="drift")
    frame = pd.DataFrame({"score": [0.5, 0.25], "label": ["a", "b"]})
    assert dc.collect(frame) is None
    path, rows = only_csv(mdc_env)
    assert path.parts[:8] == ("modeldata", "sub", "rg", "ws", "churn-svc", "churn", "12", "signals")
    assert path.name == "drift.csv"
    assert rows == [["score", "label"], ["0.5", "a"], ["0.25", "b"]]


def test_mdc_debug_prints_csv_instead_of_writing(shims, mdc_env, monkeypatch, capsys):
    from azureml.monitoring import ModelDataCollector

    monkeypatch.setenv("AML_MODEL_DC_DEBUG", "true")
    dc = ModelDataCollector("m", designation="labels", feature_names=["y"])
    dc.collect([[1], [0]])
    assert capsys.readouterr().out.endswith("y\n1\n0\n")
    records = ModelDataCollector("m")  # JSON records: keys become the header
    records.collect([{"a": 1, "b": "x"}, {"a": 2}])
    assert capsys.readouterr().out.endswith("a,b\n1,x\n2,\n")
    assert not list(mdc_env.parent.rglob("*.csv"))


def test_mdc_concurrent_collects_keep_rows_whole(shims, mdc_env, monkeypatch):
    from azureml.monitoring import ModelDataCollector

    enable(monkeypatch, mdc_env)
    dc = ModelDataCollector("m", designation="inputs", feature_names=["x", "y", "z"])

    def worker(n: int) -> None:
        for i in range(50):
            dc.collect([[n, i, "text, with comma"], [n, i, 'quote "q"']])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, rows = only_csv(mdc_env)
    assert rows[0] == ["x", "y", "z", *AML_HEADERS]
    assert len(rows) == 1 + 8 * 50 * 2
    assert all(len(r) == 11 and r[2] in ("text, with comma", 'quote "q"') for r in rows[1:])


def test_mdc_bad_input_is_reported(shims, mdc_env, monkeypatch):
    from azureml.monitoring import ModelDataCollector

    enable(monkeypatch, mdc_env)
    with pytest.raises(ValueError, match="Incorrect designation value 'outputs'"):
        ModelDataCollector("m", designation="outputs")
    with pytest.raises(ValueError, match="<subscription_id>/<resource_group>/<workspace_name>"):
        ModelDataCollector("m", workspace="just-a-name")
    dc = ModelDataCollector("m", designation="predictions")
    with pytest.warns(UserWarning, match="collect failed"):
        assert dc.collect("not tabular") is None
    with pytest.warns(UserWarning, match="more than 2 dimensions"):
        dc.collect(np.zeros((2, 2, 2)))
    assert not list(mdc_env.rglob("*.csv"))
