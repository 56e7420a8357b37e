"""The master process: owns the listening socket, forks workers, replaces the ones that die, and on SIGTERM
stops accepting and waits for workers to drain.

Holding the socket here means connections that arrive while a worker restarts wait in the kernel backlog
instead of being refused. The master runs no event loop and no threads, so forking is safe.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time

from openscore.runtime import metrics
from openscore.runtime.parent_death import die_with_parent
from openscore.runtime.settings import ServerSettings
from openscore.runtime.worker import EXIT_INIT_FAILED, EXIT_RECYCLE, run_worker
from openscore.runtime.worker_state import READY, STOPPED, WorkerTable

log = logging.getLogger("openscore.supervisor")
EXIT_KILLED_AT_INIT = 128 + signal.SIGKILL  # what a shell reports for a SIGKILLed process: 137
_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT)


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock




class Supervisor:
    def __init__(self, settings: ServerSettings, sock: socket.socket):
        self.settings = settings
        self.sock = sock
        self.table = WorkerTable(settings.workers)
        self.pids: dict[int, int] = {}        # pid -> worker index
        self.ever_ready: list[bool] = [False] * settings.workers
        self.stopping = False
        self._recent_deaths: list[float] = []

    def spawn(self, index: int) -> None:
        self.table.set_state(index, STOPPED)
        self.ever_ready[index] = False
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # child
            die_with_parent(parent)
            code = 1
            try:
                code = run_worker(self.settings, self.sock, index, self.table)
            except BaseException:
                logging.getLogger("openscore.worker").exception("worker crashed")
            finally:
                sys.stdout.flush() if hasattr(sys.stdout, "flush") else None
                os._exit(code)
        self.pids[pid] = index

    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        for i in range(self.settings.workers):
            self.spawn(i)
        log.info("Listening on http://%s:%d with %d worker(s); liveness GET /healthz, readiness GET /readyz",
                 self.settings.host, self.sock.getsockname()[1], self.settings.workers)
        while True:
            info = signal.sigtimedwait(_SIGNALS, 0.5)
            for i in range(self.settings.workers):
                if self.table.state(i) == READY:
                    self.ever_ready[i] = True
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT) and not self.stopping:
                return self.shutdown(0)
            code = self.reap()
            if code is not None:
                return code

    def reap(self) -> int | None:
        """Collect dead workers; replace them, or return an exit code when the server must stop."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == 0:
                return None
            index = self.pids.pop(pid, None)
            if index is None:
                continue
            was_ready = self.ever_ready[index] or self.table.state(index) == READY
            self.table.set_state(index, STOPPED)
            metrics.worker_died(pid)
            code = os.waitstatus_to_exitcode(status)
            if self.stopping:
                continue
            if code == EXIT_INIT_FAILED and not was_ready:
                log.error("Worker %d failed to boot (the entry script or its init() failed, see above); "
                          "stopping with exit code %d", pid, EXIT_INIT_FAILED)
                return self.shutdown(EXIT_INIT_FAILED)
            if code == -signal.SIGKILL and not was_ready:
                # almost always the memory limit during init() (the kernel kills the worker, not PID 1): a
                # replacement would be killed the same way forever while /healthz still answers, so stop and
                # let the container's exit (OOMKilled in a pod) say what happened
                log.error("Worker %d was killed (SIGKILL) before it was ready, most likely by the memory limit "
                          "while init() loaded the model; stopping with exit code %d", pid, EXIT_KILLED_AT_INIT)
                return self.shutdown(EXIT_KILLED_AT_INIT)
            reason = ("recycled" if code == EXIT_RECYCLE else
                      f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}")
            label = "recycled" if code == EXIT_RECYCLE else "signal" if code < 0 else "exit"
            log.error("Worker %d (#%d) died (%s)%s; starting a replacement", pid, index, reason,
                      "" if was_ready else " before it was ready")
            metrics.WORKER_RESTARTS.labels(label).inc()
            self._throttle()
            self.spawn(index)

    def _throttle(self) -> None:
        """Avoid a fork storm when workers die in a loop (e.g. a crash at every request)."""
        now = time.monotonic()
        self._recent_deaths = [t for t in self._recent_deaths if now - t < 10] + [now]
        if len(self._recent_deaths) > 5:
            time.sleep(min(5.0, 0.2 * len(self._recent_deaths)))

    def shutdown(self, code: int) -> int:
        self.stopping = True
        self.sock.close()
        for pid in list(self.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.settings.graceful_timeout_s + 5
        while self.pids and time.monotonic() < deadline:
            signal.sigtimedwait(_SIGNALS, 0.2)
            self.reap()
        for pid in list(self.pids):
            log.warning("Worker %d did not stop within the grace period; killing it", pid)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        log.info("Server stopped")
        return code
