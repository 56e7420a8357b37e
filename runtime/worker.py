"""One worker process: serves HTTP at once, runs the entry script's init() without blocking health checks,
scores until told to stop, then drains.

Exit codes the supervisor reads: 0 stopped, 3 the entry script failed to load or init() raised (Azure's
code), EXIT_RECYCLE when too many run() threads are stuck and the worker asks to be replaced.
"""

from __future__ import annotations

import asyncio
import faulthandler
import inspect
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from openscore.accelerators import Model
from openscore.runtime import metrics
from openscore.runtime.data_collection import ModelDataCollector
from openscore.runtime.data_plane import DataPlane
from openscore.runtime.entry_script import EntryScript, load_entry_script
from openscore.runtime.logs import capture_prints
from openscore.runtime.nocode import check_device, is_nocode, load_configured_model
from openscore.runtime.repeated_errors import run_errors
from openscore.runtime.request_context import in_user_run
from openscore.runtime.run_batch import with_run_batch
from openscore.runtime.run_threads import RunThreadPool
from openscore.runtime.scoring import InitState
from openscore.runtime.settings import ServerSettings
from openscore.runtime.slots import SlotGate
from openscore.runtime.swagger import SwaggerDocuments
from openscore.runtime.web_server import WorkerHttpApp
from openscore.runtime.worker_state import DRAINING, READY, STARTING, WorkerTable

EXIT_INIT_FAILED = 3
EXIT_RECYCLE = 75
log = logging.getLogger("openscore.worker")


class UserExitRefused(BaseException):
    """os._exit() called from run(): refused, so one request cannot take the worker down."""


def _guard_os_exit() -> None:
    """Refuse os._exit() from run() and from every thread but the worker's main one (threads that run() or init()
    started have no request context, so the context check alone let them through). The worker's own exit is
    on the main thread; a process forked from the worker (another pid) exits as usual."""
    real_exit = os._exit
    worker_pid = os.getpid()
    main = threading.main_thread()

    def guarded_exit(code: int) -> None:
        if os.getpid() == worker_pid and (in_user_run.get() or threading.current_thread() is not main):
            caller = ("run() called os._exit" if in_user_run.get() else
                      f"os._exit called from a thread ({threading.current_thread().name}) with")
            raise UserExitRefused(f"{caller}({code}); refused, the worker keeps serving")
        real_exit(code)

    os._exit = guarded_exit  # type: ignore[assignment]
    default_hook = threading.excepthook

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, UserExitRefused):  # one line per interval, not a traceback each time
            run_errors.error(log, args.exc_value, "thread %s stopped: %s",
                             args.thread.name if args.thread else "?", args.exc_value)
        else:
            default_hook(args)

    threading.excepthook = thread_excepthook


def _model_dir_listing(model_dir: str, limit: int = 200) -> str:
    root = Path(model_dir or ".")
    if not root.exists():
        return f"AZUREML_MODEL_DIR {model_dir!r} does not exist"
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames) + sorted(filenames):
            lines.append(os.path.join(dirpath, name))
            if len(lines) >= limit:
                return "\n".join(lines + ["..."])
    return "\n".join(lines) or "(empty)"


class Worker:
    def __init__(self, settings: ServerSettings, sock: socket.socket, index: int, table: WorkerTable):
        self.settings = settings
        self.sock = sock
        self.index = index
        self.table = table
        self.exit_code = 0
        self._stop = asyncio.Event()

    async def main(self) -> int:
        s = self.settings
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        gate = SlotGate(s.max_concurrent_requests, s.max_queue_size, s.max_queue_wait_ms / 1000,
                        on_change=lambda busy, queued: self.table.set_slots(self.index, busy, queued))
        self.pool = RunThreadPool()
        init_state = InitState()
        collector = (ModelDataCollector(s.collect_model_data, s.collect_max_bytes, s.collect_keep_files)
                     if s.collect_model_data else None)
        plane = DataPlane(gate, self.pool, init_state, scoring_timeout_ms=s.scoring_timeout_ms,
                          numpy_json=s.response_json == "numpy", server_version=s.server_version_header,
                          collector=collector)
        self.app = WorkerHttpApp(s, plane, self.table, self.index, swagger=None)
        http = self.app.make_server()
        listener = await loop.create_server(http, sock=self.sock, backlog=2048)

        boot = asyncio.ensure_future(self._boot(plane, init_state))
        stop_wait = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({boot, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if boot.done() and boot.result() is not None:
            # init failed: answer whoever waited, then exit with Azure's code
            await asyncio.sleep(0.2)
            listener.close()
            stop_wait.cancel()
            return EXIT_INIT_FAILED
        if not boot.done():
            boot.cancel()  # stopped during init: the init thread is left to die with the process
        else:
            await self._serve_until_stopped()
            stop_wait.cancel()

        await self._drain(listener, http, gate)
        if collector is not None:
            collector.close()
        return self.exit_code

    async def _boot(self, plane: DataPlane, init_state: InitState) -> str | None:
        """Load the script and run init() (no-code: load the model into the registry); returns a failure
        description, or None once ready."""
        s = self.settings
        start = time.perf_counter()
        try:
            script = await asyncio.get_running_loop().run_in_executor(None, self._load_and_init)
            if is_nocode(s):
                plane.registry.add(await asyncio.get_running_loop().run_in_executor(None, load_configured_model))
                plane.nocode = True
            else:
                if inspect.iscoroutinefunction(script.init):
                    await script.init()
                published = getattr(script.module, "v2_model", None)  # a model init() serves over V2 too
                if isinstance(published, Model):
                    plane.registry.add(published)
            served = with_run_batch(script, s)  # run_batch(list): requests batched into one call
        except BaseException as e:
            if isinstance(e, asyncio.CancelledError):
                raise
            log.error("The entry script %s failed to %s:\n%s", s.entry_script_path(),
                      getattr(e, "_openscore_phase", "initialize"),
                      "".join(traceback.format_exception(e)))
            log.error("Model folder (AZUREML_MODEL_DIR=%r):\n%s", s.model_dir, _model_dir_listing(s.model_dir))
            failure = f"{type(e).__name__}: {e}"
            init_state.finish(failure)
            return failure
        seconds = time.perf_counter() - start
        metrics.INIT_SECONDS.observe(seconds)
        plane.script = served
        self.app.swagger = SwaggerDocuments(
            script.run, service_name=s.service_name, service_version=s.service_version,
            path_prefix=s.service_path_prefix, app_root=s.app_root,
            entry_script_dir=str(script.path.parent))
        self.table.set_total(self.index, s.max_concurrent_requests)
        self.table.set_state(self.index, READY)
        init_state.finish()
        log.info("Worker %d ready: init() took %.3f s; input mode %s; %d concurrency slot(s); %s run()",
                 os.getpid(), seconds, script.mode.value, s.max_concurrent_requests,
                 "async" if script.is_async else "threaded")
        return None

    def _load_and_init(self) -> EntryScript:
        try:
            check_device(self.settings.device)
        except BaseException as e:
            e._openscore_phase = f"start on device {self.settings.device}"  # type: ignore[attr-defined]
            raise
        try:
            script = load_entry_script(self.settings.entry_script_path())
        except BaseException as e:
            e._openscore_phase = "load"  # type: ignore[attr-defined]
            raise
        if not is_nocode(self.settings) and not inspect.iscoroutinefunction(script.init):
            script.init()
        return script

    async def _serve_until_stopped(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), 1.0)
            except TimeoutError:
                pass
            if self.pool.abandoned >= self.settings.max_stuck_threads:
                log.error("%d run() threads never returned; this worker stops taking requests and will be "
                          "replaced", self.pool.abandoned)
                self.exit_code = EXIT_RECYCLE
                return

    async def _drain(self, listener: asyncio.AbstractServer, http: object, gate: SlotGate) -> None:
        """Stop accepting, let in-flight requests finish within the grace period, close connections."""
        self.app.draining = True
        self.table.set_state(self.index, DRAINING)
        listener.close()
        grace = self.settings.graceful_timeout_s
        log.info("Worker %d draining: %d request(s) in flight, grace %d s", os.getpid(), self.app.in_flight, grace)
        try:
            await asyncio.wait_for(self.app.wait_idle(), grace)
        except TimeoutError:
            log.warning("Worker %d: %d request(s) still in flight after the %d s grace period",
                        os.getpid(), self.app.in_flight, grace)
        gate.fail_waiters("the server is shutting down")
        await http.shutdown(1.0)  # type: ignore[attr-defined]
        self.app.plane.metrics.flush()
        self.pool.shutdown()
        if self.app.access_log is not None:
            self.app.access_log.flush()


def run_worker(settings: ServerSettings, sock: socket.socket, index: int, table: WorkerTable) -> int:
    """Entry point in the forked child; returns the exit code."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    faulthandler.enable(file=sys.__stderr__ or sys.stderr)
    table.set_state(index, STARTING, os.getpid())
    capture_prints()
    _guard_os_exit()
    loop_factory: Callable[[], asyncio.AbstractEventLoop]
    try:
        import uvloop  # optional: a faster event loop where installed
        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = asyncio.new_event_loop
    loop = loop_factory()
    asyncio.set_event_loop(loop)
    # Not closed on purpose: closing joins executor threads, and a stuck init() or run() thread would
    # then hang the exit. The supervisor's os._exit ends the process.
    code = loop.run_until_complete(Worker(settings, sock, index, table).main())
    logging.shutdown()
    return code
