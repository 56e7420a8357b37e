"""The workspace's database and folders, for the registries to use without knowing how a workspace is found.

Several CLI processes, the SDK and the router use one workspace at once: each thread (and each process
after a fork) gets its own connection, writers take the database lock up front (BEGIN IMMEDIATE) and wait
for it (busy_timeout) rather than failing with "database is locked".
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from openscore.deployer import schema
from openscore.deployer.errors import DeployError, NotFoundError

ENV_VAR = "OPENSCORE_WORKSPACE"
BUSY_TIMEOUT_S = 60.0


class Store:
    """A workspace folder's database and folders (Workspace adds finding one and its registries)."""

    def __init__(self, root: str | Path, *, create: bool = True) -> None:
        self.root = Path(root).expanduser().absolute()
        self._local = threading.local()
        self._prepare(create)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    # ------------------------------------------------------------------------------------------ database
    def _prepare(self, create: bool) -> None:
        if not self.root.exists():
            if not create:
                raise NotFoundError(f"workspace {self.root} does not exist (register a model to create it, "
                                    f"or pass --workspace / set {ENV_VAR})")
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise DeployError(f"workspace {self.root} cannot be created: {e.strerror or e} "
                                  f"(choose a writable folder with --workspace or {ENV_VAR})") from None
        elif not self.root.is_dir():
            raise DeployError(f"workspace {self.root} is not a folder")
        self.db()  # opens and migrates now, so a read-only folder is reported before anything else runs

    def db(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; use transaction() to write), schema migrated."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        path = self.root / "workspace.db"
        try:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=True)
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, never corrupt
            conn.execute("PRAGMA foreign_keys = ON")
            schema.migrate(conn, str(self.root))
        except sqlite3.Error as e:
            raise self._storage_error(e) from None
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _storage_error(self, e: BaseException) -> DeployError:
        text = str(e)
        if not os.access(self.root, os.W_OK) or "readonly" in text or "read-only" in text \
                or "unable to open" in text:
            return DeployError(f"workspace {self.root} is not writable ({text}): choose a writable folder "
                               f"with --workspace or {ENV_VAR}")
        return DeployError(f"workspace {self.root}: database error: {text}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database lock from its start (so read-then-write is safe)."""
        conn = self.db()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise self._storage_error(e) from None
        try:
            yield conn
        except sqlite3.OperationalError as e:  # read-only, disk full, locked past the timeout: the user's to fix
            self._rollback(conn)
            raise self._storage_error(e) from None
        except BaseException:
            self._rollback(conn)
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback(conn)
            raise self._storage_error(e) from None

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:  # SQLite may have rolled back already (some errors do), which ROLLBACK rejects
            conn.execute("ROLLBACK")

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    # -------------------------------------------------------------------------------------------- folders
    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    @property
    def envs_dir(self) -> Path:
        return self.root / "envs"

    @property
    def deployments_dir(self) -> Path:
        return self.root / "deployments"

    @property
    def router_dir(self) -> Path:
        return self.root / "router"
