"""Fails while the module is imported: the server must exit 3 with the traceback in its log."""

raise RuntimeError("fault_import_error: boom at import time")


def init():
    pass


def run(data):
    return data
