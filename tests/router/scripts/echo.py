"""Echoes facts about the request with the replica's pid and version; `big:N` answers N bytes of text."""
import os


def init():
    pass


def run(raw_data):
    if raw_data.startswith("big:"):
        return "x" * int(raw_data[4:])
    return {"pid": os.getpid(), "version": os.environ.get("SERVICE_VERSION"),
            "tag": os.environ.get("TAG"), "len": len(raw_data)}
