"""init() is SIGKILLed (as the kernel's OOM killer does at a memory limit): the server must stop with 137, not
respawn the worker forever."""

import os
import signal


def init():
    os.kill(os.getpid(), signal.SIGKILL)


def run(data):
    return data
