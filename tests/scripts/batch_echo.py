"""run_batch(list) script for tests/accelerators/test_run_batch.py.

Each item is run()'s raw_data (a JSON string). A batch holding an item with "gate": NAME waits until the file
NAME exists in GATE_DIR, so a test can queue requests behind it deterministically. Items: {"i": n} -> echo,
{"bad": true} makes the whole batch raise, {"exc": true} returns an exception for that item only,
{"sizes": true} returns the batch sizes seen so far.
"""
import json
import os
import time

sizes: list[int] = []


def init():
    pass


def run(raw_data):
    return run_batch([raw_data])[0]


def run_batch(items):
    docs = [json.loads(raw) for raw in items]
    sizes.append(len(docs))
    for d in docs:
        if "gate" in d:
            path = os.path.join(os.environ["GATE_DIR"], d["gate"])
            deadline = time.monotonic() + 30
            while not os.path.exists(path) and time.monotonic() < deadline:
                time.sleep(0.005)
    if any(d.get("bad") for d in docs):
        raise ValueError("a bad item in this batch")
    out = []
    for d in docs:
        if d.get("exc"):
            out.append(RuntimeError("this item failed"))
        elif d.get("sizes"):
            out.append({"sizes": list(sizes)})
        else:
            out.append({"echo": d.get("i"), "batch": len(docs)})
    return out
