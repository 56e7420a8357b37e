"""`ModelDataCollector` (azureml-monitoring 0.1.0a21 API, spec 4.4), writing real CSV files locally.

Azure's collector hands rows to a native library that uploads them to blob storage; here the rows
go to the same `modeldata/...` layout under a local folder (see _storage). Disabled unless
AML_MODEL_DC_STORAGE_ENABLED=true, as on Azure; AML_MODEL_DC_DEBUG=true prints the CSV instead.
"""

import csv
import io
import os
import sys
import uuid
import warnings
from datetime import datetime, timezone
from typing import Any

from . import _storage

try:
    from openscore.runtime.request_context import current_request_id as _current_request_id
except ImportError:  # the shim used outside the openscore server
    _current_request_id = None  # type: ignore[assignment]

_DESIGNATIONS = ("inputs", "predictions", "labels", "signals", "general")
_NO_REQUEST_ID = "00000000-0000-0000-0000-000000000000"


class ModelDataCollector:
    """Collect model inputs, predictions, labels or other signals as CSV rows.

    One collector per model and designation. `collect()` takes a list (one row, or a list of rows),
    a 1-D/2-D numpy array or a pandas DataFrame; for the `inputs` designation it appends the
    `$aml_*` correlation columns and returns them as a dict, which `add_correlations()` can attach to
    the matching predictions.
    """

    AML_DC_CORRELATION_HEADER = "$aml_dc_correlation_id"
    AML_DC_SCORING_TIMESTAMP_HEADER = "$aml_dc_scoring_timestamp"
    AML_DC_BOUNDARY_HEADER = "$aml_dc_boundary"
    AML_WORKSPACE_HEADER = "$aml_workspace"
    AML_SERVICE_NAME_HEADER = "$aml_service_name"
    AML_MODEL_NAME_HEADER = "$aml_model_name"
    AML_MODEL_VERSION_HEADER = "$aml_model_version"
    AML_REQUEST_ID_HEADER = "$aml_request_id"
    CORRELATION_HEADERS = (AML_DC_CORRELATION_HEADER, AML_DC_SCORING_TIMESTAMP_HEADER, AML_DC_BOUNDARY_HEADER,
                           AML_WORKSPACE_HEADER, AML_SERVICE_NAME_HEADER, AML_MODEL_NAME_HEADER,
                           AML_MODEL_VERSION_HEADER, AML_REQUEST_ID_HEADER)

    def __init__(self, model_name: str, designation: str = "default", feature_names: list[str] | None = None,
                 workspace: str = "default/default/default", webservice_name: str = "default",
                 model_version: Any = "default", collection_name: str = "default",
                 identifier: str | None = None) -> None:
        if identifier is not None and designation == "default":
            designation = identifier  # the keyword's name before azureml-monitoring 0.1.0a15
        self.model_name = model_name
        self.model_version = model_version
        self.workspace = str(workspace).lower()
        self.service_name = webservice_name
        self.collection_name = collection_name
        self._designation = "general" if designation == "default" else designation
        self._feature_names = list(feature_names) if feature_names is not None else None
        self._correlation_headers: tuple[str, ...] = ()
        self._hour_boundary = os.environ.get("AML_MODEL_DC_BOUNDARY") == "hour"
        self._debug = os.environ.get("AML_MODEL_DC_DEBUG", "").lower() == "true"
        self._enabled = os.environ.get("AML_MODEL_DC_STORAGE_ENABLED", "").lower() == "true"
        self._root = ""
        if self._debug:
            print("Data collection is in debug mode. Set environment variable AML_MODEL_DC_STORAGE_ENABLED to "
                  "'true' to send data to the cloud (http://aka.ms/amlmodeldatacollection).")
        elif not self._enabled:
            print("Data collection is not enabled. Set environment variable AML_MODEL_DC_STORAGE_ENABLED to "
                  "'true' to enable (http://aka.ms/amlmodeldatacollection).")
            self._apply_settings(None)
            return
        if self._designation not in _DESIGNATIONS:
            raise ValueError(f"Incorrect designation value {designation!r}. "
                             "Supported values: 'default', 'inputs', 'predictions', 'labels', 'signals', 'general'")
        self._apply_settings(_storage.load_config_map())
        self._workspace_parts = self.workspace.split("/")
        if len(self._workspace_parts) != 3 or not all(self._workspace_parts):
            raise ValueError(f"ModelDataCollector workspace must look like "
                             f"'<subscription_id>/<resource_group>/<workspace_name>', got {workspace!r}")
        self._filename = (f"{collection_name}.csv" if self._designation in ("signals", "general")
                          else f"{self._designation}.csv")
        if self._designation == "inputs":
            self._correlation_headers = self.CORRELATION_HEADERS
        if not self._debug:
            self._root, note = _storage.storage_root()
            if note:
                print(note)

    def _apply_settings(self, config_map: dict[str, Any] | None) -> None:
        """Fill 'default' ids from model_config_map.json and SERVICE_NAME, as the Azure collector does."""
        if config_map:
            versions = config_map.get("modelsInfo", {}).get(self.model_name) or {}
            if self.model_version == "default" and versions:
                self.model_version = max(versions, key=int)
            account = config_map.get("accountContext") or {}
            ids = [account.get(k) for k in ("subscriptionId", "resourceGroupName", "accountName")]
            if self.workspace == "default/default/default" and all(ids):
                self.workspace = "/".join(str(i).lower() for i in ids)
        if self.service_name == "default" and os.environ.get("SERVICE_NAME"):
            self.service_name = os.environ["SERVICE_NAME"]

    def collect(self, input_data: Any, user_correlation_id: str = "") -> dict[str, Any] | None:
        """Write `input_data` as CSV rows; return the correlation dict for `inputs`, else None.

        While collection is disabled nothing is written (the `inputs` correlation dict is still returned).
        Unsupported data types are skipped with a warning, as azureml-monitoring does.
        """
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        correlation = self._correlation(now, user_correlation_id) if self._designation == "inputs" else None
        if not (self._enabled or self._debug):
            return correlation
        encoded = _encode(input_data, [correlation[h] for h in self.CORRELATION_HEADERS] if correlation else [])
        if encoded is None:
            warnings.warn("collect failed: input data must be list, numpy array, pandas dataframe, or spark "
                          f"dataframe (got {type(input_data).__name__}, or an array with more than 2 dimensions).")
            return None
        columns, width, body = encoded
        if not body:
            return correlation
        header = _csv_line(columns or self._header(width))
        if self._debug:
            print(header + body, end="")
        else:
            parts = [*self._workspace_parts, self.service_name, self.model_name, str(self.model_version),
                     self._designation]
            _storage.append(_storage.csv_path(self._root, parts, now, self._filename), header, body)
        return correlation

    def add_correlations(self, input_data: Any, correlations: dict[str, Any] | None) -> Any:
        """Return `input_data` with the `$aml_*` columns of `correlations` (from an inputs collect()) appended."""
        if correlations is None:
            return input_data
        self._correlation_headers = self.CORRELATION_HEADERS
        values = [correlations.get(h) for h in self.CORRELATION_HEADERS]
        pd, np = sys.modules.get("pandas"), sys.modules.get("numpy")
        if isinstance(input_data, list):
            if _is_rows(input_data):
                return [list(row) + values for row in input_data]
            if input_data and all(isinstance(row, dict) for row in input_data):
                return [{**row, **dict(zip(self.CORRELATION_HEADERS, values))} for row in input_data]
            return input_data + values
        if np is not None and isinstance(input_data, np.ndarray) and input_data.ndim in (1, 2):
            rows = np.atleast_2d(input_data).astype(object)
            return np.concatenate([rows, np.array([values] * len(rows), dtype=object)], axis=1)
        if pd is not None and isinstance(input_data, pd.DataFrame):
            return _with_columns(input_data, dict(zip(self.CORRELATION_HEADERS, values)))
        warnings.warn(f"add_correlations: unsupported data type {type(input_data).__name__}; data left unchanged")
        return input_data

    def _correlation(self, now: datetime, user_correlation_id: str) -> dict[str, Any]:
        request_id = _current_request_id.get() if _current_request_id is not None else None
        generated = str(uuid.uuid4())
        return {
            self.AML_DC_SCORING_TIMESTAMP_HEADER: now.isoformat(),
            self.AML_REQUEST_ID_HEADER: request_id or _NO_REQUEST_ID,
            self.AML_DC_CORRELATION_HEADER: f"{user_correlation_id}-{generated}" if user_correlation_id else generated,
            self.AML_DC_BOUNDARY_HEADER: 60 if self._hour_boundary else 1440,
            self.AML_WORKSPACE_HEADER: self.workspace,
            self.AML_SERVICE_NAME_HEADER: self.service_name,
            self.AML_MODEL_NAME_HEADER: self.model_name,
            self.AML_MODEL_VERSION_HEADER: self.model_version,
        }

    def _header(self, width: int) -> list[str]:
        extra = list(self._correlation_headers)
        if self._feature_names is not None:
            return self._feature_names + extra
        return [f"feature_{i}" for i in range(max(width - len(extra), 0))] + extra


def _encode(data: Any, correlation: list[Any]) -> tuple[list[str] | None, int, str] | None:
    """(column names when the data carries them, row width, CSV rows) for supported data, else None."""
    pd, np = sys.modules.get("pandas"), sys.modules.get("numpy")
    if hasattr(data, "toPandas") and not (pd is not None and isinstance(data, pd.DataFrame)):
        data = data.toPandas()  # a Spark DataFrame
        pd = sys.modules.get("pandas")
    if pd is not None and isinstance(data, pd.DataFrame):
        if correlation:
            data = _with_columns(data, dict(zip(ModelDataCollector.CORRELATION_HEADERS, correlation)))
        body = data.to_csv(index=False, header=False, lineterminator="\n")
        return [str(c) for c in data.columns], len(data.columns), body
    columns = None
    if np is not None and isinstance(data, np.ndarray):
        if data.ndim not in (1, 2):
            return None
        rows = np.atleast_2d(data).tolist()
    elif isinstance(data, (list, tuple)):
        if _is_rows(data):
            rows = [list(r) for r in data]
        elif data and all(isinstance(r, dict) for r in data):  # JSON records: the keys name the columns
            columns = list(dict.fromkeys(k for r in data for k in r))
            rows = [[r.get(k) for k in columns] for r in data]
            columns += ModelDataCollector.CORRELATION_HEADERS[:len(correlation)]
        else:
            rows = [list(data)] if data else []
    else:
        return None
    rows = [r + correlation for r in rows]
    return columns, len(rows[0]) if rows else 0, _csv_rows(rows)


def _is_rows(data: list | tuple) -> bool:
    np = sys.modules.get("numpy")
    row_types = (list, tuple) if np is None else (list, tuple, np.ndarray)
    return bool(data) and all(isinstance(r, row_types) for r in data)


def _with_columns(frame: Any, columns: dict[str, Any]) -> Any:
    frame = frame.copy(deep=False)
    for name, value in columns.items():
        frame.insert(len(frame.columns), name, value, allow_duplicates=True)
    return frame


def _csv_rows(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _csv_line(values: list[Any]) -> str:
    return _csv_rows([values])
