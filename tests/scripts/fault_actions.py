"""One run() with many misbehaviours, chosen by the JSON body: {"action": ..., ...}.

Every answer that returns normally carries the worker pid, so tests can tell whether a worker was
replaced. init() prints one line per worker process, so tests can count init() calls in the log.
"""

import ctypes
import json
import os
import signal
import sys
import threading
import time

_lock = threading.Lock()
_current = 0
_max_seen = 0


def init():
    print(f"fault_actions: init() in pid {os.getpid()}")


def _overlap(args):
    """Count simultaneous run() calls. Waits (bounded) until `expect` calls run together, then holds the
    slot a little longer so that a call the server should not have admitted would be seen."""
    global _current, _max_seen
    expect = int(args.get("expect", 2))
    with _lock:
        _current += 1
        _max_seen = max(_max_seen, _current)
    try:
        deadline = time.monotonic() + float(args.get("max_wait", 5))
        while time.monotonic() < deadline:
            with _lock:
                if _current >= expect:
                    break
            time.sleep(0.01)
        time.sleep(float(args.get("hold", 0.3)))
        with _lock:
            return {"pid": os.getpid(), "max_concurrent": _max_seen}
    finally:
        with _lock:
            _current -= 1


def _wait_file(args):
    """Block until the file named in the request exists (at most `max_wait` s)."""
    deadline = time.monotonic() + float(args.get("max_wait", 20))
    while time.monotonic() < deadline and not os.path.exists(args["path"]):
        time.sleep(0.01)
    return {"pid": os.getpid(), "released": os.path.exists(args["path"])}


def run(raw_data):
    args = json.loads(raw_data) if raw_data else {}
    action = args.get("action", "pid")
    if action == "pid":
        return {"pid": os.getpid()}
    if action == "sleep":
        time.sleep(float(args["seconds"]))
        return {"pid": os.getpid()}
    if action == "overlap":
        return _overlap(args)
    if action == "wait_file":
        return _wait_file(args)
    if action == "hang":
        threading.Event().wait()  # never returns
    if action == "raise":
        raise KeyError("fault_actions: run() raised on purpose")
    if action == "numpy":
        import numpy as np
        return np.arange(3)
    if action == "object":
        return object()
    if action == "sys_exit":
        sys.exit(2)
    if action == "os_exit":
        os._exit(1)
    if action == "segfault":
        ctypes.string_at(0)  # reads address 0: SIGSEGV in the interpreter
    if action == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(5)
    return {"unknown action": action}
