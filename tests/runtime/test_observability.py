"""Metrics, logs and data collection of a real server."""

import csv
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

MDC_SCRIPT = '''
import json
from azureml.monitoring import ModelDataCollector

def init():
    global inputs_dc
    inputs_dc = ModelDataCollector("my-model", designation="inputs", feature_names=["a", "b"])

def run(raw_data):
    rows = json.loads(raw_data)["data"]
    inputs_dc.collect(rows)
    return {"rows": len(rows)}
'''


def metric_value(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(name + (labels if labels else "")) and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            if labels or key == name or key.startswith(name + "{"):
                return float(value)
    raise AssertionError(f"{name}{labels} not in metrics:\n{text}")


def test_metrics_count_requests_and_split_latency(serve):
    srv = serve("plain_echo.py")
    for _ in range(5):
        requests.post(srv.url + "/score", data="{}")
    requests.post(srv.url + "/score", data=json.dumps({"return": "raise"}))
    text = requests.get(srv.url + "/metrics").text
    assert metric_value(text, "openscore_requests_total", '{route="score",status="200"}') == 5
    assert metric_value(text, "openscore_requests_total", '{route="score",status="500"}') == 1
    assert metric_value(text, "openscore_run_duration_seconds_count") == 6
    assert metric_value(text, "openscore_queue_wait_seconds_count") == 6
    assert metric_value(text, "openscore_slots_total") == 1
    assert metric_value(text, "openscore_slots_busy") == 0
    assert metric_value(text, "openscore_workers_ready") == 1
    assert metric_value(text, "openscore_init_duration_seconds_count") == 1


def test_metrics_are_summed_across_workers(serve):
    srv = serve("plain_echo.py", "--workers", "2", "--max-concurrent-requests", "3")
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: requests.post(srv.url + "/score", data="{}").status_code, range(40)))
    text = requests.get(srv.url + "/metrics").text
    assert metric_value(text, "openscore_requests_total", '{route="score",status="200"}') == 40
    assert metric_value(text, "openscore_slots_total") == 6
    assert metric_value(text, "openscore_workers") == 2
    slots = requests.get(srv.url + "/slots").json()
    assert slots["total"] == 6 and slots["busy"] == 0 and slots["workers_ready"] == 2


def test_json_logs_carry_request_ids(serve):
    srv = serve("plain_echo.py", "--log-format", "json")
    requests.post(srv.url + "/score", data=json.dumps({"return": "print"}), headers={"x-request-id": "json-1"})
    time.sleep(0.2)
    records = [json.loads(line) for line in srv.log().splitlines() if line.startswith("{")]
    printed = next(r for r in records if r["message"] == "hello from run")
    assert printed["request_id"] == "json-1" and printed["logger"] == "openscore.print"
    access = next(r for r in records if r["logger"] == "openscore.access" and r.get("path") == "/score")
    assert access["status"] == 200 and access["request_id"] == "json-1" and access["method"] == "POST"
    assert all({"time", "level", "pid", "logger", "message"} <= set(r) for r in records)


def test_collect_model_data_writes_rotated_json_lines(serve, tmp_path):
    out = tmp_path / "collected"
    srv = serve("plain_echo.py", "--collect-model-data", str(out), "--collect-max-bytes", "2048",
                "--collect-keep-files", "3")
    for i in range(60):
        requests.post(srv.url + "/score", data=json.dumps({"i": i, "pad": "x" * 50}),
                      headers={"Content-Type": "application/json", "x-request-id": f"c-{i}"})
    requests.post(srv.url + "/score", data=b"\xff\xfe", headers={"Content-Type": "application/octet-stream"})
    srv.stop()  # drains and closes the writer
    files = sorted(out.glob("*.jsonl"))
    assert 2 <= len(files) <= 3, files  # rotated, and only the newest kept
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    by_id = {r["request_id"]: r for r in records}
    last = by_id["c-59"]
    assert last["status"] == 200 and last["request"] == {"i": 59, "pad": "x" * 50}
    assert last["response"] == {"echo": {"i": 59, "pad": "x" * 50}}
    assert last["latency_ms"] >= 0 and last["time"].endswith("Z")
    bad = next(r for r in records if r["status"] == 400)
    assert bad["request"] == {"base64": "//4="}


def test_model_data_collector_shim_writes_csv_with_request_id(serve, tmp_path):
    (tmp_path / "score.py").write_text(MDC_SCRIPT)
    store = tmp_path / "mdc"
    srv = serve(str(tmp_path / "score.py"), cwd=tmp_path,
                env={"AML_MODEL_DC_STORAGE_ENABLED": "true", "AML_MODEL_DC_STORAGE": str(store),
                     "SERVICE_NAME": "svc"})
    r = requests.post(srv.url + "/score", data=json.dumps({"data": [[1, 2], [3, 4]]}),
                      headers={"x-request-id": "mdc-req-1"})
    assert r.json() == {"rows": 2}
    files = list(Path(store).rglob("*.csv"))
    assert len(files) == 1 and "/my-model/" in str(files[0]) and "/inputs/" in str(files[0])
    rows = list(csv.DictReader(files[0].open()))
    assert [(row["a"], row["b"]) for row in rows] == [("1", "2"), ("3", "4")]
    assert {row["$aml_request_id"] for row in rows} == {"mdc-req-1"}


def test_one_request_id_in_headers_access_log_and_prints(serve):
    """x-request-id is Azure's REQUEST_ID: with x-ms-client-request-id also sent, everything records x-request-id."""
    srv = serve("plain_echo.py", "--log-format", "json")
    r = requests.post(srv.url + "/score", data=json.dumps({"return": "print"}),
                      headers={"x-request-id": "req-A", "x-ms-client-request-id": "client-B"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "req-A" and r.headers["x-ms-client-request-id"] == "client-B"
    srv.stop()  # flushes the access log
    records = [json.loads(line) for line in srv.log().splitlines() if line.startswith("{")]
    printed = next(r for r in records if r["message"] == "hello from run")
    access = next(r for r in records if r["logger"] == "openscore.access" and r.get("path") == "/score")
    assert printed["request_id"] == access["request_id"] == "req-A"
