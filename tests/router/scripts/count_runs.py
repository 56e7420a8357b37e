"""Appends one line per run() call (its pid) to the file $RUN_COUNT_FILE, then sleeps `sleep` seconds (default
0): a test counts the lines to see whether a request ran once or twice."""
import json
import os
import time


def init():
    pass


def run(raw_data):
    data = json.loads(raw_data) if raw_data else {}
    with open(os.environ["RUN_COUNT_FILE"], "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(float(data.get("sleep", 0)))
    return {"pid": os.getpid(), "echo": data.get("echo")}
