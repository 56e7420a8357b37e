"""Logging: Azure's line format by default, JSON lines on request; print() captured with the request id."""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import time
from typing import Any, TextIO

import orjson

from openscore.log_lines import BatchedLineWriter, UtcFormatter
from openscore.runtime.request_context import current_request_id


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        return True


class AzureFormatter(UtcFormatter):
    def formatMessage(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        if rid and record.name == PRINT_LOGGER:
            record.message = f"[{rid}] {record.message}"
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            doc["request_id"] = rid
        for key in ("method", "path", "status", "duration_ms", "bytes"):
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


PRINT_LOGGER = "openscore.print"


class PrintCapture(io.TextIOBase):
    """Replaces sys.stdout in workers: each line printed becomes a log record (with the request id)."""

    def __init__(self, logger: logging.Logger):
        self._logger = logger
        self._partial = threading.local()

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        buf = getattr(self._partial, "buf", "") + s
        *lines, rest = buf.split("\n")
        self._partial.buf = rest
        for line in lines:
            self._logger.info(line)
        return len(s)

    def flush(self) -> None:
        rest = getattr(self._partial, "buf", "")
        if rest:
            self._partial.buf = ""
            self._logger.info(rest)


def configure_logging(log_format: str, level: str, stream: TextIO | None = None) -> None:
    """Set up the root handler on the real stdout (print() output is redirected separately)."""
    handler = logging.StreamHandler(stream or sys.__stdout__)
    handler.setFormatter(JsonFormatter() if log_format == "json" else AzureFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # we write our own access log


def capture_prints() -> None:
    sys.stdout = PrintCapture(logging.getLogger(PRINT_LOGGER))


class AccessLog:
    """One line per request, formatted and written without the logging machinery.

    The logging module costs tens of microseconds per record, a fifth of a trivial request; lines go
    through a BatchedLineWriter instead.
    """

    def __init__(self, log_format: str, fd: int | None = None):
        self._json = log_format == "json"
        self._out = BatchedLineWriter((sys.__stdout__ or sys.stdout).fileno() if fd is None else fd)
        self._pid = os.getpid()

    def log(self, method: str, path: str, status: int, duration_ms: float, length: int | None,
            request_id: str | None) -> None:
        now = time.time()
        if self._json:
            doc = {"time": self._out.timestamp(now).replace(" ", "T").replace(",", ".") + "Z", "level": "INFO",
                   "pid": self._pid, "logger": "openscore.access",
                   "message": f"{method} {path} {status} {duration_ms:.3f}ms {length if length is not None else '-'}",
                   "method": method, "path": path, "status": status, "duration_ms": round(duration_ms, 3)}
            if request_id:
                doc["request_id"] = request_id
            line = orjson.dumps(doc) + b"\n"
        else:
            line = (f"{self._out.timestamp(now)} I [{self._pid}] openscore.access - {method} {path} {status} "
                    f"{duration_ms:.3f}ms {length if length is not None else '-'}\n").encode()
        self._out.write(line)

    def flush(self) -> None:
        self._out.flush()
