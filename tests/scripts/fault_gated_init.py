"""init() blocks until the test releases it, so tests can look at the server while init() runs.

FAULT_DIR (environment) is a folder the test owns. Each worker's init() claims a ticket file
(`ticket-0`, `ticket-1`, ...); worker k waits until `release-<k>` or `release-all` exists there
(at most 30 s). run() answers the worker pid and how many init() calls this process made.
"""

import os
import time

_inits = 0
_ticket = None


def _claim_ticket(folder):
    k = 0
    while True:
        try:
            fd = os.open(os.path.join(folder, f"ticket-{k}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            k += 1
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return k


def init():
    global _inits, _ticket
    folder = os.environ["FAULT_DIR"]
    _ticket = _claim_ticket(folder)
    print(f"fault_gated_init: init() started in pid {os.getpid()} with ticket {_ticket}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if os.path.exists(os.path.join(folder, "release-all")) or \
                os.path.exists(os.path.join(folder, f"release-{_ticket}")):
            break
        time.sleep(0.02)
    _inits += 1
    print(f"fault_gated_init: init() finished in pid {os.getpid()}")


def run(data):
    return {"pid": os.getpid(), "inits": _inits, "ticket": _ticket}
