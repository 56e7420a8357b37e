"""Log lines shared by every component: Azure's line format (UTC) and a batched writer for access logs."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

AZURE_FORMAT = "%(asctime)s %(levelname).1s [%(process)d] %(name)s - %(message)s"


class UtcFormatter(logging.Formatter):
    """Azure's line format with UTC times, as azmlinfsrv writes them."""

    def __init__(self) -> None:
        super().__init__(AZURE_FORMAT)
        self.converter = time.gmtime  # set on the instance: as a class attribute mypy takes it for a method


class BatchedLineWriter:
    """Lines gathered during one event-loop iteration and written to a file descriptor together, in pieces
    below PIPE_BUF so lines from several processes never interleave. `stream`, when given, is flushed first so
    what the logging module wrote to it earlier stays earlier. Shared by the server's and the router's access
    logs."""

    def __init__(self, fd: int, stream: Any = None):
        self._fd = fd
        self._stream = stream
        self._buf: list[bytes] = []
        self._size = 0
        self._scheduled = False
        self._second = -1
        self._stamp = ""

    def timestamp(self, now: float) -> str:
        """`YYYY-mm-dd HH:MM:SS,mmm` in UTC as logging writes it, formatted once per second."""
        sec = int(now)
        if sec != self._second:
            self._second = sec
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sec))
        return f"{self._stamp},{int((now - sec) * 1000):03d}"

    def write(self, line: bytes) -> None:
        if self._size + len(line) > 4096:
            self.flush()  # keep each write within PIPE_BUF so it stays atomic
        self._buf.append(line)
        self._size += len(line)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._buf:
            return
        data = b"".join(self._buf)
        self._buf.clear()
        self._size = 0
        if self._stream is not None:
            try:
                self._stream.flush()
            except (AttributeError, OSError, ValueError):
                pass
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError:
            pass  # a closed log must not break serving
