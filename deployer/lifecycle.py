"""The service lifecycle (Azure's `Model.deploy`, `Webservice` and `az ml service`): deploy, wait, update,
delete, logs, keys, tokens, scoring, and an aksendpoint's versions.

The workspace database holds what was deployed (`services`, `service_models`) and the in-progress lock
(`operations`); the router holds what runs, and is driven only through its admin API (router_client.py).
Every check that can fail (names, files, configs, packages, targets) runs before anything is written, so a
refused deploy leaves the workspace as it was.

An operation (create, update, delete, a version change) holds the service's row in `operations` from its
start until its outcome is known (wait() settles it); a second one meanwhile is a 409 naming it. A lock whose
process died, or whose service has already settled, is taken over.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openscore.deployer import cluster_deploy, packaging, service_state
from openscore.deployer.deployment_config import DeploymentConfigSpec, deployment_config_from_dict
from openscore.deployer.errors import ConflictError, DeployError, NotFoundError
from openscore.deployer.local_router import LocalRouter, pid_alive
from openscore.deployer.router_client import RouterClient, RouterError
from openscore.router.config import ConfigError, validate_name

if TYPE_CHECKING:
    from openscore.deployer.computes import Compute
    from openscore.deployer.inference_config import InferenceConfigSpec
    from openscore.deployer.models import ModelRecord
    from openscore.deployer.workspace import Workspace

LOCAL = "local"
ATTACHED_TARGETS = (LOCAL,)
POLL_S = 0.1
DEFAULT_WAIT_S = 900.0
Log = Callable[[str], None]


@dataclass
class ServiceInfo:
    name: str
    compute_type: str
    compute_target: str
    state: str
    error: dict[str, Any] | None
    scoring_uri: str | None
    swagger_uri: str | None
    models: list[str] = field(default_factory=list)
    versions: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    auth_enabled: bool = True
    token_auth_enabled: bool = False
    operation: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Azure's keys (what `az ml service show` prints)."""
        return {"name": self.name, "computeType": self.compute_type.upper(), "computeTarget": self.compute_target,
                "state": self.state, "error": self.error, "scoringUri": self.scoring_uri,
                "swaggerUri": self.swagger_uri, "models": list(self.models), "versions": self.versions,
                "createdTime": _iso(self.created), "updatedTime": _iso(self.updated),
                "description": self.description, "tags": dict(self.tags), "properties": dict(self.properties),
                "authEnabled": self.auth_enabled, "tokenAuthEnabled": self.token_auth_enabled,
                "operationInProgress": self.operation}


class _Progress:
    """Azure's wait display: "Running", a dot every second while it runs, then the outcome on its own line."""

    def __init__(self, enabled: bool, log: Log):
        self.enabled, self.log = enabled, log
        self.last = time.monotonic()
        self.dotted = False

    def tick(self) -> None:
        if self.enabled and time.monotonic() - self.last >= 1.0:
            self.last = time.monotonic()
            sys.stdout.write(".")
            sys.stdout.flush()
            self.dotted = True

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.dotted:
            sys.stdout.write("\n")
            self.dotted = False
        if text:
            self.log(text)


def _iso(ts: float) -> str | None:
    if not ts:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}+00:00"


def check_service_name(name: Any, what: str = "service name") -> str:
    try:
        return validate_name(name, "name", what)
    except ConfigError as e:
        raise DeployError(f"Invalid {what}: {e.rule}") from None


class ServiceManager:
    def __init__(self, ws: Workspace):
        self.ws = ws
        self.router = LocalRouter(ws.root)

    # ================================================================== records
    def _row(self, name: str) -> dict[str, Any] | None:
        r = self.ws.db().execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
        if r is None:
            return None
        return {"name": r["name"], "compute_type": r["compute_type"], "compute_target": r["compute_target"],
                "record": json.loads(r["record"]), "state": r["state"],
                "error": json.loads(r["error"]) if r["error"] else None, "created": r["created"],
                "updated": r["updated"]}

    def _require(self, name: str) -> dict[str, Any]:
        row = self._row(name)
        if row is None:
            raise NotFoundError(f"No service with name {name} found in workspace {self.ws.root} "
                                "(`openscore service list` shows them)")
        return row

    def _save(self, name: str, compute_type: str, record: dict[str, Any], state: str,
              error: dict[str, Any] | None = None, *, models: Sequence[str] | None = None,
              compute_target: str = LOCAL) -> None:
        now = time.time()
        with self.ws.transaction() as c:
            c.execute("INSERT INTO services(name, compute_type, compute_target, record, state, error, created, "
                      "updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                      "compute_type = excluded.compute_type, compute_target = excluded.compute_target, "
                      "record = excluded.record, state = excluded.state, error = excluded.error, "
                      "updated = excluded.updated",
                      (name, compute_type, compute_target, json.dumps(record), state,
                       json.dumps(error) if error else None, now, now))
            if models is not None:
                c.execute("DELETE FROM service_models WHERE service = ?", (name,))
                for ref in models:
                    mname, ver = ref.rsplit(":", 1)
                    c.execute("INSERT OR IGNORE INTO service_models(service, model_name, model_version) "
                              "VALUES (?, ?, ?)", (name, mname, int(ver)))

    def _set_state(self, name: str, state: str, error: dict[str, Any] | None) -> None:
        with self.ws.transaction() as c:
            c.execute("UPDATE services SET state = ?, error = ?, updated = updated WHERE name = ?",
                      (state, json.dumps(error) if error else None, name))

    # ================================================================== the operations lock
    def _operation(self, name: str) -> dict[str, Any] | None:
        r = self.ws.db().execute("SELECT * FROM operations WHERE service = ?", (name,)).fetchone()
        return dict(r) if r is not None else None

    def _acquire(self, name: str, operation: str) -> float:
        """Take the service's operation lock; ConflictError (409) naming the one in progress."""
        held = self._operation(name)
        if held is not None and pid_alive(held["pid"]) and not self._settled(name):
            raise ConflictError(f"Operation {held['operation']!r} on service {name} is in progress (started "
                                f"{_iso(held['started'])} by process {held['pid']}): wait for it to finish "
                                "(`openscore service show`) and try again")
        started = time.time()
        with self.ws.transaction() as c:
            now = c.execute("SELECT started FROM operations WHERE service = ?", (name,)).fetchone()
            if now is not None and (held is None or now["started"] != held["started"]):
                raise ConflictError(f"Another operation on service {name} started just now: try again")
            c.execute("INSERT OR REPLACE INTO operations(service, operation, pid, started) VALUES (?, ?, ?, ?)",
                      (name, operation, os.getpid(), started))
        return started

    def _release(self, name: str) -> None:
        with self.ws.transaction() as c:
            c.execute("DELETE FROM operations WHERE service = ?", (name,))

    def _settled(self, name: str) -> bool:
        """True when the service's last operation has an outcome (so its lock is no longer needed)."""
        row = self._row(name)
        if row is None:
            return True
        state, _ = self._live(row)
        return state != service_state.TRANSITIONING

    # ================================================================== live state
    def _status(self, client: RouterClient | None, name: str) -> dict[str, Any] | None:
        if client is None:
            return None
        try:
            return client.get_service(name)
        except NotFoundError:
            return None

    def _live(self, row: dict[str, Any], status: dict[str, Any] | None = None,
              client: RouterClient | None = None, fetch: bool = True) -> tuple[str, dict[str, Any] | None]:
        compute = self._compute(row)
        if compute is not None:
            return self._cluster_state(compute, row)
        if status is None and fetch:
            status = self._status(client or self.router.running(), row["name"])
        since = float(row["record"].get("operationStarted") or 0.0)
        return service_state.live_state(row["state"], status, self.router.folder / "logs", row["name"], since,
                                        self._deployments_in_use(row))

    def _compute(self, row: Mapping[str, Any] | None) -> Compute | None:
        """The attached compute a service runs on; None for the embedded local target."""
        if row is None or row.get("compute_target", LOCAL) == LOCAL:
            return None
        from openscore.deployer.computes import ComputeRegistry
        return ComputeRegistry(self.ws).get(row["compute_target"])

    def _cluster_state(self, compute: Compute, row: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
        st = cluster_deploy.status(compute, row["name"])
        if st is None:
            return service_state.FAILED, {"code": "NotFound", "message": f"the ScoringService {row['name']} is "
                                          f"not in namespace {compute.namespace} of compute {compute.name}"}
        return st.state, st.error

    def _base_url(self, row: Mapping[str, Any], client: RouterClient | None) -> str | None:
        compute = self._compute(row)
        if compute is not None:
            return cluster_deploy.base_url(compute)
        return client.base_url if client is not None else None

    def _info(self, row: dict[str, Any], state: str, error: dict[str, Any] | None,
              base_url: str | None) -> ServiceInfo:
        rec = row["record"]
        name = row["name"]
        scoring = f"{base_url}/api/v1/service/{name}/score" if base_url else None
        versions = {}
        for vname, v in rec.get("versions", {}).items():
            doc = v.get("doc", {})
            endpoint = rec.get("computeType") == "aksendpoint"
            versions[vname] = {"models": v.get("models", []),
                               "trafficPercentile": doc.get("trafficPercentile", 0) if endpoint else 100,
                               "isDefault": bool(doc.get("isDefault")) or not endpoint,
                               "type": doc.get("type", "Treatment") if endpoint else "Control",
                               "deploymentId": v.get("deploymentId"),
                               "scoringUri": (f"{base_url}/api/v1/service/{name}/versions/{vname}/score"
                                              if base_url else None)}
        ep = rec.get("endpoint", {})
        token = bool(ep.get("tokenAuthEnabled"))
        auth = bool(ep.get("authEnabled")) if ep.get("authEnabled") is not None else not token
        op = self._operation(name)
        return ServiceInfo(
            name=name, compute_type=rec.get("computeType", row["compute_type"]),
            compute_target=row.get("compute_target") or LOCAL,
            state=state, error=error, scoring_uri=scoring,
            swagger_uri=scoring[: -len("score")] + "swagger.json" if scoring else None,
            models=sorted({m for v in rec.get("versions", {}).values() for m in v.get("models", [])}),
            versions=versions, created=row["created"], updated=row["updated"],
            description=rec.get("description", ""), tags=rec.get("tags", {}), properties=rec.get("properties", {}),
            auth_enabled=auth, token_auth_enabled=token,
            operation=op["operation"] if op is not None and pid_alive(op["pid"]) else None)

    # ================================================================== deploy
    def _target(self, compute_target: str | None, dc: DeploymentConfigSpec | None, log: Log) -> Compute | None:
        ct = compute_target or (dc.compute_target_name if dc is not None else None)
        if ct and ct != LOCAL:
            from openscore.deployer.computes import ComputeRegistry, check_submit
            if ct in {c.name for c in ComputeRegistry(self.ws).list()}:
                compute = ComputeRegistry(self.ws).get(ct)
                for line in check_submit(compute, dc):
                    log(line)
                return compute
            raise DeployError(f"Compute target {ct!r} is not attached to workspace {self.ws.root}; attached "
                              f"targets: {', '.join(ATTACHED_TARGETS)}")
        if not ct and dc is not None and dc.compute_type in ("aks", "aksendpoint"):
            log(f"Warning: no Kubernetes cluster is attached: deploying the {dc.compute_type} service on the "
                "embedded local target (--ct local)")
        return None

    def _prepare_version(self, service: str, models: Sequence[ModelRecord], ic: InferenceConfigSpec | None,
                         env_ref: tuple[str, str | None] | None, rebuild: bool, log: Log,
                         compute: Compute | None = None) -> dict[str, Any]:
        """Check, build the environment and lay out one version's deployment; returns its record part. For a
        cluster `compute` the folder becomes an app image and the paths are the image's."""
        if ic is None:
            raise DeployError("an inference config is required (--ic inferenceconfig.json with entryScript): "
                              "openscore has no no-code deploy of registered models yet")
        packaging.check_models(models)
        packaging.check_source(ic)
        if env_ref is not None:
            ic = ic.with_environment_ref(*env_ref)
        environment = ic.resolve_environment(self.ws)
        packages = environment.resolved_packages()   # a conda-only package fails here, before any write
        if packages:
            log(f"Environment {environment.name or '(unnamed)'}: {len(packages)} package(s)")
        if compute is not None:
            cluster_deploy.check_environment(environment, compute)
            python = sys.executable  # unused: the image's interpreter runs the replicas
        else:
            python = packaging.environment_python(self.ws, environment, rebuild=rebuild, log=log)
        pkg = packaging.build_package(self.ws, service, models, ic, environment, python)
        keys = pkg.router_keys()
        if compute is not None:
            try:
                keys = cluster_deploy.cluster_keys(pkg, cluster_deploy.build_app_image(compute, pkg, log))
            except BaseException:
                import shutil
                shutil.rmtree(pkg.app_root, ignore_errors=True)
                raise
        # enough to lay the version out again (a later update with new models), paths absolute
        inference = {"entryScript": ic.entry_script, "environment": environment.to_azure()}
        if ic.source_directory is not None:
            inference["sourceDirectory"] = str(ic.source_directory)
        return {"models": [m.id for m in models], "deploymentId": pkg.deployment_id, "package": keys,
                "inference": inference}

    def deploy(self, name: str, models: Sequence[ModelRecord], inference_config: InferenceConfigSpec | None,
               deployment_config: DeploymentConfigSpec | None, *, compute_target: str | None = None,
               overwrite: bool = False, rebuild: bool = False, environment: tuple[str, str | None] | None = None,
               description: str | None = None, tags: Mapping[str, str] | None = None,
               properties: Mapping[str, str] | None = None, log: Log = print) -> ServiceInfo:
        """Create (or with `overwrite` replace) a service; returns once the router has accepted it."""
        check_service_name(name)
        dc = deployment_config or deployment_config_from_dict({"computeType": LOCAL})
        for w in dc.warnings:
            log(f"Warning: {w}")
        compute = self._target(compute_target, deployment_config, log)
        existing = self._row(name)
        if existing is not None and not overwrite:
            raise ConflictError(f"Service {name} already exists in workspace {self.ws.root}: pass --overwrite to "
                                "replace it, or use `openscore service update`")
        started = self._acquire(name, "Create" if existing is None else "Overwrite")
        ok = False
        version: dict[str, Any] | None = None
        try:
            version = self._prepare_version(name, models, inference_config, environment, rebuild, log, compute)
            vname = dc.version_name(name) if dc.compute_type == "aksendpoint" else name
            if dc.compute_type == "aksendpoint":
                check_service_name(vname, "version name")
            version["doc"] = dc.version_keys()
            if dc.compute_type == "aksendpoint" and "isDefault" not in version["doc"]:
                version["doc"]["isDefault"] = True  # an endpoint's only version is its default (Azure's rule)
            record = {"computeType": dc.compute_type, "endpoint": dc.endpoint_keys(),
                      "versions": {vname: version}, "operationStarted": started,
                      "description": description or dc.raw.get("description") or "", "tags": dict(tags or {}),
                      "properties": dict(properties or {}), "deploymentConfig": dc.raw}
            client = None
            if compute is not None:
                cluster_deploy.publish(compute, name, self.router_document(record),
                                       cluster_deploy.deployment_record(record))
            else:
                client = self._router(dc.port, log)
                self._put(client, name, record)
            self._save(name, dc.compute_type, record, service_state.TRANSITIONING, models=version["models"],
                       compute_target=compute.name if compute is not None else LOCAL)
            ok = True
        finally:
            if not ok:
                if version is not None:
                    packaging.remove_deployments(self.ws, name, keep=self._deployments_in_use(existing))
                self._release(name)
        if existing is not None and compute is not None:  # local: see _drop_unused_folders
            packaging.remove_deployments(self.ws, name, keep={version["deploymentId"]} if version else set())
        row = self._require(name)
        return self._info(row, service_state.TRANSITIONING, None, self._base_url(row, client))

    def _drop_unused_folders(self, name: str) -> None:
        """The deployment folders no version uses any more, once an operation's outcome is known. On the local
        target the replaced version's replicas run from its folder until the rollout is over, and one may be
        starting as the new version is published: deleting the folder then made it crash at start
        (FileNotFoundError from getcwd) and the deployment fail. A later operation drops what is left."""
        row = self._row(name)
        if row is not None:
            packaging.remove_deployments(self.ws, name, keep=self._deployments_in_use(row))

    def _deployments_in_use(self, row: Mapping[str, Any] | None) -> set[str]:
        if row is None:
            return set()
        return {str(v["deploymentId"]) for v in row["record"].get("versions", {}).values() if v.get("deploymentId")}

    def _router(self, port: int | None, log: Log) -> RouterClient:
        client = self.router.ensure(port)
        if port is not None and client.port != port:
            log(f"Warning: the workspace's router already listens on port {client.port}; the deploymentconfig's "
                f"port {port} applies when it is started")
        return client

    def router_document(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """What the router is given for a service record (its admin API's PUT body)."""
        versions = record["versions"]
        if record["computeType"] != "aksendpoint":
            (vname, v), = versions.items()
            return {**record.get("endpoint", {}), **_version_document(v), "computeType": "aks",
                    "versionName": vname}
        return {**record.get("endpoint", {}), "computeType": "aksendpoint",
                "versions": {n: _version_document(v) for n, v in versions.items()}}

    def _put(self, client: RouterClient, name: str, record: Mapping[str, Any]) -> None:
        try:
            client.put_service(name, self.router_document(record))
        except RouterError as e:
            raise DeployError(f"The router refused service {name}: {e}") from None

    # ================================================================== wait
    def wait(self, name: str, *, timeout_s: float | None = None, show_output: bool = False,
             log: Log = print) -> ServiceInfo:
        """Poll until the service is Healthy or Failed; Azure's success line, or DeployError with its failure
        message. The operation lock is released once the outcome is known."""
        row = self._require(name)
        ctype = row["record"].get("computeType", "aks").upper()
        compute = self._compute(row)
        if compute is not None:
            return self._wait_cluster(compute, row, timeout_s or DEFAULT_WAIT_S, show_output, ctype, log)
        client = self.router.ensure()
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else DEFAULT_WAIT_S)
        progress = _Progress(show_output, log)
        progress.line("Running")
        while True:
            row = self._require(name)
            state, error = self._live(row, client=client)
            if state in service_state.FINAL:
                break
            if time.monotonic() > deadline:
                progress.line("")
                raise DeployError(f"Service {name} is still {state} after {timeout_s or DEFAULT_WAIT_S:g} s "
                                  "(`openscore service get-logs -n NAME` shows its replicas' logs)")
            progress.tick()
            time.sleep(POLL_S)
        self._set_state(name, state, error)
        self._drop_unused_folders(name)
        self._release(name)
        info = self._info(self._require(name), state, error, client.base_url)
        if state == service_state.HEALTHY:
            progress.line("Succeeded")
            log(f'{ctype} service creation operation finished, operation "Succeeded"')
            return info
        progress.line("Failed")
        raise DeployError(f"Service deployment polling reached non-successful terminal state, current service "
                          f"state: {state}\nMore information can be found using `openscore service get-logs -n "
                          f"{name}`.\nError:\n{json.dumps(error, indent=2)}")

    def _wait_cluster(self, compute: Compute, row: Mapping[str, Any], timeout_s: float, show_output: bool,
                      ctype: str, log: Log) -> ServiceInfo:
        """The cluster's watch-based wait (ends early on Failed); the same outcome lines as the local one."""
        name = row["name"]
        st = cluster_deploy.wait(compute, name, timeout_s, log if show_output else None)
        if st.state not in service_state.FINAL:
            raise DeployError(f"Service {name} is still {st.state} after {timeout_s:g} s (`openscore service "
                              f"get-logs -n {name}` shows its replicas' logs)"
                              + (f"\nError:\n{json.dumps(st.error, indent=2)}" if st.error else ""))
        self._set_state(name, st.state, st.error)
        self._release(name)
        info = self._info(self._require(name), st.state, st.error, self._base_url(row, None))
        if st.state == service_state.HEALTHY:
            log(f'{ctype} service creation operation finished, operation "Succeeded"')
            return info
        raise DeployError(f"Service deployment polling reached non-successful terminal state, current service "
                          f"state: {st.state}\nMore information can be found using `openscore service get-logs "
                          f"-n {name}`.\nError:\n{json.dumps(st.error, indent=2)}")

    # ================================================================== read
    def get(self, name: str, *, start_router: bool = True) -> ServiceInfo:
        row = self._require(name)
        if self._compute(row) is not None:
            state, error = self._live(row)
            return self._info(row, state, error, self._base_url(row, None))
        client = self.router.ensure() if start_router else self.router.running()
        state, error = self._live(row, client=client, fetch=client is not None)
        if client is None:
            state, error = service_state.live_state(row["state"], None, self.router.folder / "logs", name, 0)
        return self._info(row, state, error, client.base_url if client else None)

    def list(self, *, compute_type: str | None = None, model_name: str | None = None,
             model_id: str | None = None, tags: Mapping[str, str | None] | None = None,
             properties: Mapping[str, str | None] | None = None) -> list[ServiceInfo]:
        """Every service (one router call for all their states; the router is not started for a list)."""
        rows = self.ws.db().execute("SELECT * FROM services ORDER BY name").fetchall()
        client = self.router.running() if rows else None
        statuses: dict[str, dict[str, Any]] = {}
        if client is not None:
            statuses = {s["name"]: s for s in client.list_services()}
        out = []
        for r in rows:
            row = {"name": r["name"], "compute_type": r["compute_type"], "compute_target": r["compute_target"],
                   "record": json.loads(r["record"]),
                   "state": r["state"], "error": json.loads(r["error"]) if r["error"] else None,
                   "created": r["created"], "updated": r["updated"]}
            if compute_type and row["compute_type"].lower() != compute_type.lower():
                continue
            models = [m for v in row["record"].get("versions", {}).values() for m in v.get("models", [])]
            if model_name and not any(m.rsplit(":", 1)[0] == model_name for m in models):
                continue
            if model_id and model_id not in models:
                continue
            if tags and not _matches(row["record"].get("tags", {}), tags):
                continue
            if properties and not _matches(row["record"].get("properties", {}), properties):
                continue
            if row["compute_target"] != LOCAL:
                state, error = self._live(row)
                out.append(self._info(row, state, error, self._base_url(row, None)))
                continue
            if row["state"] in service_state.FINAL and client is not None and row["name"] in statuses \
                    and statuses[row["name"]].get("state") == "Healthy" and row["state"] == "Healthy":
                state, error = service_state.HEALTHY, None  # the common case, without reading any log file
            else:
                state, error = self._live(row, statuses.get(row["name"]), fetch=False)
            out.append(self._info(row, state, error, client.base_url if client else None))
        return out

    def get_logs(self, name: str, *, num_lines: int = 5000, init: bool = False) -> str:
        """Each replica's log (a crashed one's too), newest last; `init`: each one's lines up to init()'s end."""
        compute = self._compute(self._require(name))
        if compute is not None:
            return cluster_deploy.logs(compute, name, init=init, num_lines=num_lines)
        client = self.router.running()
        status = self._status(client, name) if client else None
        listed = service_state.listed_replicas(status) if status else set()
        logs = service_state.replica_logs(self.router.folder / "logs", name, listed)
        if not logs:
            return f"(no replica of service {name} has written a log yet)\n"
        parts = []
        for rl in logs:
            lines = (service_state.init_part(rl.path, num_lines) if init
                     else service_state.tail(rl.path, num_lines))
            parts.append(f"=== replica {rl.replica} (version {rl.version}, "
                         f"{'running' if rl.running else 'exited'}) {rl.path} ===\n" + "\n".join(lines))
        return "\n".join(parts) + "\n"

    # ================================================================== keys, tokens, scoring
    def _client_for(self, name: str) -> RouterClient:
        self._require(name)
        return self.router.ensure()

    def get_keys(self, name: str) -> tuple[str, str]:
        compute = self._compute(self._require(name))
        if compute is not None:
            return cluster_deploy.get_keys(compute, name)
        return self._client_for(name).get_keys(name)

    def regen_key(self, name: str, key: str, set_key: str | None = None) -> tuple[str, str]:
        if not isinstance(key, str) or key.lower() not in ("primary", "secondary"):
            raise DeployError(f"--key must be Primary or Secondary, got {key!r}")
        if set_key is not None and len(set_key) < 8:
            raise DeployError("--set-key must be at least 8 characters")
        compute = self._compute(self._require(name))
        if compute is not None:
            return cluster_deploy.regen_key(compute, name, key.capitalize(), set_key)
        client = self._client_for(name)
        self._acquire(name, "RegenerateKey")
        try:
            try:
                client.regenerate_key(name, key.capitalize(), set_key)
            except RouterError as e:
                raise DeployError(str(e)) from None
            return client.get_keys(name)
        finally:
            self._release(name)

    def get_access_token(self, name: str) -> dict[str, Any]:
        row = self._require(name)
        if not row["record"].get("endpoint", {}).get("tokenAuthEnabled"):
            raise DeployError(f"Token auth is not enabled for service {name} (deploy it with tokenAuthEnabled: "
                              "true in the deploymentconfig)")
        try:
            return self._client_for(name).token(name)
        except RouterError as e:
            raise DeployError(str(e)) from None

    def run(self, name: str, input_data: str | bytes) -> Any:
        """POST `input_data` to the scoring URI with the service's key (or token); the JSON answer."""
        row = self._require(name)
        data = input_data.encode() if isinstance(input_data, str) else bytes(input_data)
        compute = self._compute(row)
        if compute is not None:
            return self._run_cluster(compute, row, data)
        client = self.router.ensure()
        ep = row["record"].get("endpoint", {})
        token_mode = bool(ep.get("tokenAuthEnabled"))
        key_mode = not token_mode and ep.get("authEnabled") is not False

        def authorization() -> str | None:
            if token_mode:
                return f"Bearer {client.token(name)['accessToken']}"
            if key_mode:
                return f"Bearer {client.get_keys(name)[0]}"
            return None

        path = f"/api/v1/service/{name}/score"
        status, _, body = client.score(path, data, authorization())
        if status == 401:
            status, _, body = client.score(path, data, authorization())
        text = body.decode("utf-8", "replace")
        if status != 200:
            err = RouterError(f"Received bad response from service {name}: Response Code: {status}\n"
                              f"Content: {text[:2000]}", status)
            raise err
        try:
            return json.loads(text)
        except ValueError:
            return text

    def _run_cluster(self, compute: Compute, row: Mapping[str, Any], data: bytes) -> Any:
        name = row["name"]
        ep = row["record"].get("endpoint", {})
        if ep.get("tokenAuthEnabled"):
            raise DeployError(f"service {name}: token auth on a cluster compute is not available yet")
        base = cluster_deploy.base_url(compute)
        if base is None:
            raise DeployError(f"compute {compute.name} has no router Service (`openscore cluster install -n "
                              f"{compute.name}`)")
        key = cluster_deploy.get_keys(compute, name)[0] if ep.get("authEnabled") is not False else None
        status, body = cluster_deploy.score(f"{base}/api/v1/service/{name}/score", data, key)
        text = body.decode("utf-8", "replace")
        if status != 200:
            raise RouterError(f"Received bad response from service {name}: Response Code: {status}\n"
                              f"Content: {text[:2000]}", status)
        try:
            return json.loads(text)
        except ValueError:
            return text

    # ================================================================== update / delete
    def update(self, name: str, *, models: Sequence[ModelRecord] | None = None,
               inference_config: InferenceConfigSpec | None = None,
               deployment_config: DeploymentConfigSpec | None = None, changes: Mapping[str, Any] | None = None,
               environment: tuple[str, str | None] | None = None, rebuild: bool = False,
               description: str | None = None, add_tags: Mapping[str, str] | None = None,
               remove_tags: Sequence[str] | None = None, add_properties: Mapping[str, str] | None = None,
               version_name: str | None = None, log: Log = print) -> ServiceInfo:
        """Change a running service (Azure's update): given keys only; a new script, environment or model
        list is a new deployment folder, the rest applies in the router. Returns once accepted."""
        row = self._require(name)
        rec = json.loads(json.dumps(row["record"]))
        if all(x is None for x in (models, inference_config, deployment_config, changes, environment, description,
                                   add_tags, remove_tags, add_properties)) and not rebuild:
            raise DeployError("No parameters provided to update.")
        vname = version_name or _default_version(rec)
        _require_version(rec, vname, f"Service {name}")
        merged = self._merged_config(rec, vname, deployment_config, changes, name)
        if add_properties:
            clash = [k for k in add_properties if k in rec.get("properties", {})]
            if clash:
                raise DeployError(f"properties cannot be changed once set, only added: {', '.join(clash)}")

        def change() -> None:
            old = rec["versions"][vname]
            if models is not None or inference_config is not None or environment is not None or rebuild:
                new_version = self._prepare_version(name, self._version_models(models, old),
                                                    inference_config or self._stored_inference(old),
                                                    environment, rebuild, log, self._compute(row))
                new_version["doc"] = old["doc"]
                rec["versions"][vname] = new_version
            self._apply_config(rec, vname, merged)
            if description is not None:
                rec["description"] = description
            rec["tags"] = {k: v for k, v in {**rec.get("tags", {}), **(add_tags or {})}.items()
                           if k not in set(remove_tags or ())}
            rec["properties"] = {**rec.get("properties", {}), **(add_properties or {})}

        return self._change(name, "Update", row, rec, change)

    def _change(self, name: str, operation: str, row: Mapping[str, Any], rec: dict[str, Any],
                change: Callable[[], None]) -> ServiceInfo:
        """One operation on a stored service, under its lock: `change` edits `rec` (it may make new deployment
        folders), the router gets it and the workspace stores it as Transitioning (the lock is released when
        the operation finishes, see wait). On any failure the new folders go and the lock is released; on
        success the folders no version uses any more go."""
        started = self._acquire(name, operation)
        try:
            change()
            client = self._publish(name, row, rec, started)
        except BaseException:
            packaging.remove_deployments(self.ws, name, keep=self._deployments_in_use(row))
            self._release(name)
            raise
        if self._compute(row) is not None:  # local: see _drop_unused_folders
            packaging.remove_deployments(self.ws, name, keep=self._deployments_in_use({"record": rec}))
        new_row = self._require(name)
        return self._info(new_row, service_state.TRANSITIONING, None, self._base_url(new_row, client))

    def _publish(self, name: str, row: Mapping[str, Any], rec: dict[str, Any],
                 started: float) -> RouterClient | None:
        """The changed record to the router (or the cluster), then stored as Transitioning with the
        operation's start."""
        rec["operationStarted"] = started
        compute = self._compute(row)
        client = None
        if compute is not None:
            cluster_deploy.publish(compute, name, self.router_document(rec), cluster_deploy.deployment_record(rec))
        else:
            client = self.router.ensure()
            self._put(client, name, rec)
        self._save(name, row["compute_type"], rec, service_state.TRANSITIONING,
                   models=[m for v in rec["versions"].values() for m in v["models"]],
                   compute_target=compute.name if compute is not None else LOCAL)
        return client

    def _version_models(self, models: Sequence[ModelRecord] | None,
                        old: Mapping[str, Any]) -> Sequence[ModelRecord]:
        """The models given, else the ones the version has now."""
        return list(models) if models is not None else [self.ws.models.resolve(m) for m in old["models"]]

    def _stored_inference(self, version: Mapping[str, Any]) -> InferenceConfigSpec:
        from openscore.deployer.inference_config import InferenceConfigSpec
        return InferenceConfigSpec.from_dict(version["inference"], Path("/"), where="the deployed inference config")

    def _merged_config(self, rec: dict[str, Any], vname: str, dc: DeploymentConfigSpec | None,
                       changes: Mapping[str, Any] | None, name: str) -> DeploymentConfigSpec:
        """The deploymentconfig after the update, checked with the router's rules (same messages)."""
        base = dict(rec.get("deploymentConfig") or {"computeType": rec["computeType"]})
        base.update(rec.get("endpoint", {}))
        base.update(rec["versions"][vname]["doc"])
        for src in (dc.raw if dc is not None else None, changes):
            src = src or {}
            # a fixed count replaces autoscaling and the reverse, as Azure's update does
            if "numReplicas" in src:
                base.pop("autoScaler", None)
            scaler = src.get("autoScaler")
            if isinstance(scaler, Mapping) and scaler.get("autoscaleEnabled") and "numReplicas" not in src:
                base.pop("numReplicas", None)
            for k, v in src.items():
                if k == "computeType":
                    continue
                if isinstance(v, Mapping) and isinstance(base.get(k), Mapping):
                    base[k] = {**base[k], **v}
                else:
                    base[k] = v
        base["computeType"] = rec["computeType"]
        return deployment_config_from_dict(base, f"service {name}")

    def _apply_config(self, rec: dict[str, Any], vname: str, dc: DeploymentConfigSpec) -> None:
        keys = dc.version_keys()
        if rec["computeType"] == "aksendpoint":
            for k in ("trafficPercentile", "isDefault", "type"):
                if k in rec["versions"][vname]["doc"] and k not in keys:
                    keys[k] = rec["versions"][vname]["doc"][k]
        rec["versions"][vname]["doc"] = keys
        rec["endpoint"] = dc.endpoint_keys()
        rec["deploymentConfig"] = dc.raw

    def delete(self, name: str) -> None:
        """Remove the service from the router and the workspace (rows, deployment folders, replica logs)."""
        compute = self._compute(self._require(name))
        self._acquire(name, "Delete")
        try:
            if compute is not None:
                cluster_deploy.delete(compute, name, print)
            else:
                client = self.router.ensure()
                try:
                    client.delete_service(name)
                except NotFoundError:
                    pass
            with self.ws.transaction() as c:
                c.execute("DELETE FROM services WHERE name = ?", (name,))
                c.execute("DELETE FROM service_models WHERE service = ?", (name,))
        finally:
            self._release(name)
        packaging.remove_deployments(self.ws, name)
        import shutil
        shutil.rmtree(self.router.folder / "logs" / name, ignore_errors=True)

    # ================================================================== aksendpoint versions
    def _endpoint(self, endpoint: str) -> tuple[dict[str, Any], dict[str, Any]]:
        row = self._require(endpoint)
        rec = json.loads(json.dumps(row["record"]))
        if rec["computeType"] != "aksendpoint":
            raise DeployError(f"Service {endpoint} is an {rec['computeType']} service; versions belong to an "
                              "aksendpoint (deploy it with computeType: aksendpoint)")
        return row, rec

    def create_version(self, endpoint: str, version_name: str, models: Sequence[ModelRecord],
                       inference_config: InferenceConfigSpec | None, *, changes: Mapping[str, Any] | None = None,
                       traffic_percentile: float | None = None, is_default: bool | None = None,
                       is_control_version_type: bool | None = None,
                       environment: tuple[str, str | None] | None = None, log: Log = print) -> ServiceInfo:
        check_service_name(version_name, "version name")
        row, rec = self._endpoint(endpoint)
        if version_name in rec["versions"]:
            raise ConflictError(f"Endpoint {endpoint} already has a version {version_name} (use update-version)")
        doc = dict(changes or {})
        if traffic_percentile is not None:
            doc["trafficPercentile"] = traffic_percentile
        doc["isDefault"] = bool(is_default)
        doc["type"] = "Control" if is_control_version_type else "Treatment"
        self._check_versions(rec, version_name, doc, endpoint)

        def change() -> None:
            version = self._prepare_version(endpoint, models, inference_config, environment, False, log,
                                            self._compute(row))
            version["doc"] = {k: v for k, v in doc.items() if k not in ("versionName",)}
            rec["versions"][version_name] = version
            self._exclusive(rec, version_name, is_default, is_control_version_type)

        return self._change(endpoint, "CreateVersion", row, rec, change)

    def update_version(self, endpoint: str, version_name: str, *, models: Sequence[ModelRecord] | None = None,
                       inference_config: InferenceConfigSpec | None = None,
                       changes: Mapping[str, Any] | None = None, traffic_percentile: float | None = None,
                       is_default: bool | None = None, is_control_version_type: bool | None = None,
                       log: Log = print) -> ServiceInfo:
        row, rec = self._endpoint(endpoint)
        _require_version(rec, version_name, f"Endpoint {endpoint}")
        doc = {**rec["versions"][version_name]["doc"], **(changes or {})}
        if traffic_percentile is not None:
            doc["trafficPercentile"] = traffic_percentile
        if is_default is not None:
            doc["isDefault"] = is_default
        if is_control_version_type is not None:
            doc["type"] = "Control" if is_control_version_type else "Treatment"
        if doc == rec["versions"][version_name]["doc"] and models is None and inference_config is None:
            raise DeployError("No parameters provided to update.")
        self._check_versions(rec, version_name, doc, endpoint)

        def change() -> None:
            if models is not None or inference_config is not None:
                old = rec["versions"][version_name]
                rec["versions"][version_name] = self._prepare_version(
                    endpoint, self._version_models(models, old), inference_config or self._stored_inference(old),
                    None, False, log, self._compute(row))
            rec["versions"][version_name]["doc"] = doc
            self._exclusive(rec, version_name, is_default, is_control_version_type)

        return self._change(endpoint, "UpdateVersion", row, rec, change)

    def delete_version(self, endpoint: str, version_name: str) -> ServiceInfo:
        row, rec = self._endpoint(endpoint)
        _require_version(rec, version_name, f"Endpoint {endpoint}")
        if len(rec["versions"]) == 1:
            raise DeployError(f"{version_name} is the only version of endpoint {endpoint}: delete the endpoint "
                              "(`openscore service delete`) instead")
        was_default = bool(rec["versions"][version_name]["doc"].get("isDefault"))
        del rec["versions"][version_name]
        if was_default:
            first = next(iter(rec["versions"]))
            rec["versions"][first]["doc"]["isDefault"] = True
        started = self._acquire(endpoint, "DeleteVersion")
        try:
            self._publish(endpoint, row, rec, started)
        finally:
            self._release(endpoint)
        packaging.remove_deployments(self.ws, endpoint, keep=self._deployments_in_use({"record": rec}))
        return self.get(endpoint)

    def _exclusive(self, rec: dict[str, Any], vname: str, is_default: bool | None, control: bool | None) -> None:
        """One default and one Control version (Azure's update_version turns the others off)."""
        for n, v in rec["versions"].items():
            if n == vname:
                continue
            if is_default:
                v["doc"]["isDefault"] = False
            if control:
                v["doc"]["type"] = "Treatment"

    def _check_versions(self, rec: dict[str, Any], vname: str, doc: Mapping[str, Any], endpoint: str) -> None:
        """The endpoint with the version changed, through the router's rules, before anything is written."""
        from openscore.deployer.deployment_config import check_service_document
        versions = {n: dict(v["doc"]) for n, v in rec["versions"].items()}
        versions[vname] = dict(doc)
        if doc.get("isDefault"):
            for n in versions:
                if n != vname:
                    versions[n]["isDefault"] = False
        if str(doc.get("type", "")).lower() == "control":
            for n in versions:
                if n != vname:
                    versions[n]["type"] = "Treatment"
        check = {**rec.get("endpoint", {}), "computeType": "aksendpoint",
                 "versions": {n: {**v, "entryScript": "/openscore-deploymentconfig-check/score.py"}
                              for n, v in versions.items()}}
        check_service_document(check, f"endpoint {endpoint}")


def _require_version(rec: Mapping[str, Any], vname: str, owner: str) -> None:
    if vname not in rec["versions"]:
        raise NotFoundError(f"{owner} has no version {vname} (versions: {', '.join(rec['versions'])})")


def _version_document(v: Mapping[str, Any]) -> dict[str, Any]:
    """A version's deploymentconfig keys with its package's; the package's replica flags go first, so the
    user's own `replicaArgs` come after them and win."""
    doc = {**v["doc"], **v["package"]}
    doc["replicaArgs"] = [*v["package"].get("replicaArgs", []), *v["doc"].get("replicaArgs", [])]
    if not doc["replicaArgs"]:
        del doc["replicaArgs"]
    return doc


def _default_version(rec: Mapping[str, Any]) -> str:
    versions = rec["versions"]
    for n, v in versions.items():
        if v.get("doc", {}).get("isDefault"):
            return str(n)
    return str(next(iter(versions)))


def _matches(have: Mapping[str, str], wanted: Mapping[str, str | None]) -> bool:
    return all(k in have and (v is None or have[k] == v) for k, v in wanted.items())
