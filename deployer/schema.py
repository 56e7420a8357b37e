"""The workspace database's schema, as an ordered list of migrations.

`PRAGMA user_version` holds how many have been applied; opening a workspace applies the rest in one
IMMEDIATE transaction, so two processes opening an old workspace at once migrate it once. Append new
migrations; never edit an applied one (workspaces in the field already ran it).
"""

from __future__ import annotations

import sqlite3

from openscore.deployer.errors import DeployError

MIGRATIONS: list[str] = [
    # 1: the registries. Blobs are named by their sha256 in artifacts/; rows only refer to them.
    """
    CREATE TABLE models (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        digest TEXT NOT NULL,              -- sha256 of the file, or of the folder's deterministic tar
        file_name TEXT NOT NULL,           -- the registered file's or folder's basename
        is_dir INTEGER NOT NULL,
        size INTEGER NOT NULL,
        tags TEXT NOT NULL DEFAULT '{}',   -- JSON object
        properties TEXT NOT NULL DEFAULT '{}',
        description TEXT NOT NULL DEFAULT '',
        model_framework TEXT,
        model_framework_version TEXT,
        created REAL NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE INDEX models_digest ON models(digest);
    CREATE TABLE environments (
        name TEXT NOT NULL,
        version TEXT NOT NULL,             -- Azure's versions are strings ("1", "2", or the user's own)
        seq INTEGER NOT NULL,              -- registration order within the name: "latest" is the highest
        definition TEXT NOT NULL,          -- JSON, Azure's Environment keys
        hash TEXT NOT NULL,
        created REAL NOT NULL,
        PRIMARY KEY (name, version)
    );
    """,
    # 2: the service lifecycle (written by openscore.deployer.lifecycle) and source snapshots.
    """
    CREATE TABLE services (
        name TEXT PRIMARY KEY,
        compute_type TEXT NOT NULL,
        compute_target TEXT,
        record TEXT NOT NULL,              -- JSON: what was deployed (models, configs, versions, keys' refs)
        state TEXT NOT NULL,
        error TEXT,                        -- JSON or NULL
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE service_models (
        service TEXT NOT NULL,
        model_name TEXT NOT NULL,
        model_version INTEGER NOT NULL,
        PRIMARY KEY (service, model_name, model_version)
    );
    CREATE INDEX service_models_model ON service_models(model_name, model_version);
    CREATE TABLE operations (              -- the in-progress lock: one operation per service at a time
        service TEXT PRIMARY KEY,
        operation TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started REAL NOT NULL
    );
    CREATE TABLE snapshots (
        digest TEXT PRIMARY KEY,           -- sha256 of the deterministic zip in artifacts/
        files INTEGER NOT NULL,
        size INTEGER NOT NULL,
        created REAL NOT NULL
    );
    """,
    # 3: the highest version each model name was ever given, so a deleted version's number is never given to
    # other bytes (a NAME:VERSION someone wrote down keeps meaning what it meant, or nothing).
    """
    CREATE TABLE model_names (
        name TEXT PRIMARY KEY,
        last_version INTEGER NOT NULL
    );
    INSERT INTO model_names(name, last_version) SELECT name, MAX(version) FROM models GROUP BY name;
    """,
    # 4: attached Kubernetes computes (openscore.deployer.computes): where `--ct NAME` deploys go.
    """
    CREATE TABLE IF NOT EXISTS computes (
        name TEXT PRIMARY KEY,
        compute_type TEXT NOT NULL,        -- "AKS" (a Kubernetes cluster)
        config TEXT NOT NULL,              -- JSON: kubeconfig, context, namespace, registry, fpgaResource
        instance_types TEXT NOT NULL,      -- JSON list of Azure InstanceType documents ('[]': the default)
        server_version TEXT NOT NULL,      -- what the cluster said at attach time
        created REAL NOT NULL
    );
    """,
]

LATEST = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, where: str) -> int:
    """Bring the database on `conn` (autocommit mode) to LATEST; returns the version it was at."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current == LATEST:
        return current
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have just done it
        if current > LATEST:
            raise DeployError(f"workspace {where} has schema version {current}, newer than this openscore "
                              f"knows ({LATEST}): upgrade openscore to use it")
        for number in range(current, LATEST):
            for statement in _statements(MIGRATIONS[number]):
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {LATEST}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return current


def _statements(script: str) -> list[str]:
    """executescript() would COMMIT our transaction first: split the script and run each statement in it."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
