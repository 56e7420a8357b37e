"""The request a piece of user code runs for, readable from run() threads and coroutines.

The server sets it before calling run(); shims (ModelDataCollector) and print() capture read it.
"""

from contextvars import ContextVar

current_request_id: ContextVar[str | None] = ContextVar("openscore_request_id", default=None)

# True while the current thread or task executes the user's run(): os._exit() is refused there.
in_user_run: ContextVar[bool] = ContextVar("openscore_in_user_run", default=False)
