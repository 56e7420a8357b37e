"""init() raises: the server must exit 3 with the traceback in its log."""


def init():
    raise ValueError("fault_init_error: model could not be loaded")


def run(data):
    return data
