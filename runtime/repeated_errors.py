"""Repeated identical tracebacks logged once in full, then as one counted line per interval.

A run() that fails the same way at every request (a refused sys.exit() under load) would otherwise write its
whole traceback thousands of times a second: megabytes of log that bury everything else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from types import TracebackType
from typing import Any

INTERVAL_S = 10.0
MAX_KINDS = 256  # distinct tracebacks remembered; the least recent is forgotten (and logged in full again)


def _key(exc: BaseException) -> tuple[Any, ...]:
    """The exception's type and where it was raised: the same bug, whatever its message says."""
    frames: list[tuple[str, int]] = []
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    return (type(exc), tuple(frames))


class _Seen:
    __slots__ = ("repeats", "since")

    def __init__(self, now: float):
        self.since = now  # the last line written for this traceback
        self.repeats = 0  # occurrences since then, not written


class RepeatedTracebacks:
    def __init__(self, interval_s: float = INTERVAL_S, max_kinds: int = MAX_KINDS):
        self.interval_s = interval_s
        self.max_kinds = max_kinds
        self._seen: OrderedDict[tuple[Any, ...], _Seen] = OrderedDict()
        self._lock = threading.Lock()  # run() threads and the event loop both report

    def error(self, logger: logging.Logger, exc: BaseException, msg: str, *args: Any) -> None:
        """`logger.error(msg % args)` with exc's traceback the first time; a repeat within the interval is
        counted, and at most one line per interval says how many there were."""
        key = _key(exc)
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None:
                self._seen[key] = _Seen(now)
                if len(self._seen) > self.max_kinds:
                    self._seen.popitem(last=False)
                line, repeats, elapsed = "full", 0, 0.0
            else:
                self._seen.move_to_end(key)
                seen.repeats += 1
                if now - seen.since < self.interval_s:
                    return
                line, repeats, elapsed = "count", seen.repeats, now - seen.since
                seen.repeats, seen.since = 0, now
        if line == "full":
            logger.error(msg, *args, exc_info=exc)
        else:
            logger.error(msg + " (the same traceback as logged before; repeated %d times in the last %.0f s)",
                         *args, repeats, elapsed)


run_errors = RepeatedTracebacks()
