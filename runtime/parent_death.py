"""PR_SET_PDEATHSIG for the scoring server's child processes (workers, their decode helper): a child is
SIGKILLed when its parent dies, however it dies, so none is left serving or holding memory as an orphan.
Kept apart from the supervisor so a spawned helper can import it without the server."""

from __future__ import annotations

import ctypes
import logging
import os
import signal

log = logging.getLogger("openscore.worker")

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """In a fresh child: be SIGKILLed when its parent (the supervisor, or a worker) dies, however it dies
    (kill -9 included).

    Without this a worker outlives a SIGKILLed supervisor as an orphan, still serving the port with nobody to
    replace, drain or account for it. The supervisor has a single thread, so the death of the thread that forked
    (what the kernel watches) is the death of the process. A supervisor that died before the call is caught by
    the parent check after it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed (errno %d): this worker may outlive its supervisor",
                        ctypes.get_errno())
    except (OSError, AttributeError):  # not Linux: the supervisor's shutdown still stops its workers
        pass
    if os.getppid() != parent_pid:
        os._exit(1)
