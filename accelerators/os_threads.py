"""Names for the operating system's view of our threads, so `top -H`, `ps -L` and /proc show (and tools
can pin) a model's dispatcher threads. Python 3.11 names threads only inside Python."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_PR_SET_NAME = 15
_prctl = None
if sys.platform.startswith("linux"):
    try:
        _prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        _prctl = None


def name_this_thread(name: str) -> None:
    """Set the calling thread's OS name (Linux keeps 15 bytes); a no-op where that is not possible."""
    if _prctl is not None:
        _prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode("utf-8", "replace")[:15]), 0, 0, 0)
