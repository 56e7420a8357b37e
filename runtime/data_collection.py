"""`--collect-model-data`: request/response pairs as JSON lines, written by a background thread.

The event loop only appends to a queue; a writer thread batches lines to a per-process file and rotates
it by size, keeping the newest files. A full queue drops records (counted) rather than stall scoring.
"""

from __future__ import annotations

import base64
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("openscore.collect")


def _payload(body: bytes, content_type: str) -> Any:
    """JSON bodies stay JSON, text stays text, anything else is base64 (with a marker)."""
    if not body:
        return None
    if "json" in content_type:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(body).decode()}


class ModelDataCollector:
    def __init__(self, folder: str | Path, max_bytes: int, keep_files: int, max_queue: int = 10_000):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.keep_files = keep_files
        self.dropped = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._path = self.folder / f"requests-{os.getpid()}.jsonl"
        self._thread = threading.Thread(target=self._write_loop, name="collect-model-data", daemon=True)
        self._thread.start()

    def record(self, *, request_id: str, method: str, path: str, status: int, latency_ms: float,
               request_body: bytes, request_type: str, response_body: bytes, response_type: str) -> None:
        item = {
            "request_id": request_id,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z",
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": round(latency_ms, 3),
            "_req": (request_body, request_type),
            "_resp": (response_body, response_type),
        }
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _write_loop(self) -> None:
        f = open(self._path, "ab")
        try:
            while True:
                item = self._queue.get()
                batch = [item]
                while item is not None and len(batch) < 512:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    batch.append(item)
                done = batch[-1] is None
                lines = []
                for rec in batch:
                    if rec is None:
                        continue
                    rec["request"] = _payload(*rec.pop("_req"))
                    rec["response"] = _payload(*rec.pop("_resp"))
                    lines.append(orjson.dumps(rec) + b"\n")
                if lines:
                    f.write(b"".join(lines))
                    f.flush()
                    if f.tell() >= self.max_bytes:
                        f.close()
                        self._rotate()
                        f = open(self._path, "ab")
                if done:
                    return
        except Exception:
            log.exception("model data collection stopped writing to %s", self._path)
        finally:
            f.close()

    def _rotate(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time() % 1:.6f}"[1:]
        self._path.rename(self._path.with_name(f"{self._path.stem}-{stamp}.jsonl"))
        old = sorted(self.folder.glob(f"{self._path.stem}-*.jsonl"))
        for p in old[: max(0, len(old) - (self.keep_files - 1))]:
            p.unlink(missing_ok=True)
