"""run() sleeps `sleep` seconds (default 0.2) and reports how many run() calls overlapped in this process."""
import json
import os
import threading
import time

lock = threading.Lock()
current = 0
peak = 0


def init():
    pass


def run(raw_data):
    global current, peak
    try:
        data = json.loads(raw_data) if raw_data else {}
    except ValueError:
        data = {}
    if data.get("raise"):
        raise RuntimeError("asked to fail")
    with lock:
        current += 1
        peak = max(peak, current)
        seen = current
    try:
        time.sleep(float(data.get("sleep", 0.2)))
    finally:
        with lock:
            current -= 1
    return {"pid": os.getpid(), "concurrent": seen, "peak": peak}
