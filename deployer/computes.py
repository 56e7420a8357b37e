"""Attached computes: Kubernetes clusters a workspace deploys to with `--ct NAME` (Azure's AKS computes).

A compute is a kubeconfig (path, context), the namespace its services and router live in, the registry its
nodes pull app images from, and its instance types (Azure's InstanceType documents, parsed by
openscore.kube.instance_types). Attaching checks the cluster answers, so a compute that is recorded was
reachable once; nothing is recorded when any check fails.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from openscore.deployer.errors import ConflictError, DeployError, NotFoundError
from openscore.deployer.store import Store

if TYPE_CHECKING:
    from openscore.deployer.deployment_config import DeploymentConfigSpec
    from openscore.kube.client import KubeClient
    from openscore.kube.instance_types import InstanceType
    from openscore.router.config import VersionSpec

COMPUTE_TYPE = "AKS"
DEFAULT_NAMESPACE = "openscore"
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,23}$")  # Azure's compute names: 2-24, letter first
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_REGISTRY_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
T = TypeVar("T")


@dataclass(frozen=True)
class Compute:
    name: str
    kubeconfig: str
    context: str | None
    namespace: str
    registry: str | None
    fpga_resource: str | None
    instance_type_docs: list[dict[str, Any]] = field(default_factory=list)
    server_version: str = ""
    created: float = 0.0
    runtime_image: str | None = None  # the app images' base (default <registry>/openscore:cpu)

    def instance_types(self) -> dict[str, InstanceType]:
        from openscore.kube import instance_types as it
        fpga = self.fpga_resource or it.DEFAULT_FPGA_RESOURCE
        return it.parse_instance_types(self.instance_type_docs, fpga_resource=fpga)

    def client(self) -> KubeClient:
        """A new client for the compute's cluster (the caller closes it)."""
        from openscore.kube.client import KubeClient, KubeError
        try:
            return KubeClient.from_kubeconfig(self.kubeconfig, self.context, self.namespace)
        except KubeError as e:
            raise DeployError(f"compute {self.name}: {e.message}") from None

    def to_json(self) -> dict[str, Any]:
        from openscore.kube.instance_types import to_document
        return {"name": self.name, "computeType": COMPUTE_TYPE, "kubeconfig": self.kubeconfig,
                "context": self.context, "namespace": self.namespace, "registry": self.registry,
                "fpgaResource": self.fpga_resource, "runtimeImage": self.runtime_image,
                "serverVersion": self.server_version,
                "instanceTypes": [to_document(t) for t in self.instance_types().values()],
                "createdTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))}


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """The deployer is synchronous; each cluster call runs its own short event loop."""
    return asyncio.run(coro)


async def with_client(compute: Compute, work: Callable[[KubeClient], Awaitable[T]]) -> T:
    """`work(client)` on a client of the compute's cluster, closed after; the API server's refusal is a
    DeployError naming the compute."""
    from openscore.kube.client import KubeError
    client = compute.client()
    try:
        return await work(client)
    except KubeError as e:
        raise DeployError(f"compute {compute.name}: {e.message or e.reason}") from None
    finally:
        await client.close()


def load_instance_types(path: str | Path, fpga_resource: str | None) -> list[dict[str, Any]]:
    """The documents of an instance types file (YAML or JSON: a list, an InstanceTypeList or one document),
    validated; DeployError naming the file and the bad field."""
    from openscore.kube import instance_types as it
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise NotFoundError(f"instance types file {path} does not exist") from None
    except OSError as e:
        raise DeployError(f"instance types file {path} cannot be read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise DeployError(f"instance types file {path} is not YAML or JSON: {str(e).splitlines()[0]}") from None
    try:
        it.parse_instance_types(doc, fpga_resource=fpga_resource or it.DEFAULT_FPGA_RESOURCE)
    except it.InstanceTypeError as e:
        raise DeployError(f"instance types file {path}: {e}") from None
    if isinstance(doc, dict) and doc.get("kind") == "InstanceTypeList":
        return list(doc["items"])
    return list(doc) if isinstance(doc, list) else [doc]


async def _server_version(client: KubeClient) -> str:
    try:
        return await client.server_version()
    finally:
        await client.close()


class ComputeRegistry:
    """The workspace's computes table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def attach(self, name: str, kubeconfig: str | Path, *, context: str | None = None,
               namespace: str | None = None, registry: str | None = None,
               instance_types_file: str | Path | None = None, fpga_resource: str | None = None,
               runtime_image: str | None = None) -> Compute:
        """Check everything, ask the cluster its version, then record the compute."""
        from openscore.kube.client import KubeError
        if not _NAME_RE.match(name):
            raise DeployError(f"compute name {name!r} must be 2 to 24 letters, digits or '-', starting with "
                              "a letter")
        namespace = namespace or DEFAULT_NAMESPACE
        if not _DNS_LABEL.match(namespace):
            raise DeployError(f"namespace {namespace!r} must be a DNS label (lower-case letters, digits, '-')")
        if registry is not None and not _REGISTRY_RE.match(registry):
            raise DeployError(f"registry {registry!r} must be HOST[:PORT]")
        if runtime_image is not None and ("/" not in runtime_image or not runtime_image.strip()):
            raise DeployError(f"runtime image {runtime_image!r} must be HOST[:PORT]/NAME[:TAG|@DIGEST]")
        path = Path(kubeconfig).expanduser().absolute()
        if not path.is_file():
            raise NotFoundError(f"kubeconfig {path} does not exist")
        docs = load_instance_types(instance_types_file, fpga_resource) if instance_types_file else []
        if self._row(name) is not None:
            raise ConflictError(f"compute {name} is already attached (detach it first)")
        compute = Compute(name, str(path), context, namespace, registry, fpga_resource, docs)
        try:
            version = run_async(_server_version(compute.client()))
        except KubeError as e:
            raise DeployError(f"cluster of kubeconfig {path} ({context or 'current context'}) cannot be "
                              f"reached: {e.message}") from None
        compute = Compute(name, str(path), context, namespace, registry, fpga_resource, docs, version, time.time(),
                          runtime_image)
        config = {"kubeconfig": compute.kubeconfig, "context": context, "namespace": namespace,
                  "registry": registry, "fpgaResource": fpga_resource, "runtimeImage": runtime_image}
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM computes WHERE name = ?", (name,)).fetchone():
                raise ConflictError(f"compute {name} is already attached (detach it first)")
            db.execute("INSERT INTO computes(name, compute_type, config, instance_types, server_version, created)"
                       " VALUES (?, ?, ?, ?, ?, ?)", (name, COMPUTE_TYPE, json.dumps(config), json.dumps(docs),
                                                      version, compute.created))
        return compute

    def _row(self, name: str) -> Any:
        return self.store.db().execute("SELECT * FROM computes WHERE name = ?", (name,)).fetchone()

    @staticmethod
    def _from_row(row: Any) -> Compute:
        cfg = json.loads(row["config"])
        return Compute(row["name"], cfg["kubeconfig"], cfg.get("context"), cfg["namespace"], cfg.get("registry"),
                       cfg.get("fpgaResource"), json.loads(row["instance_types"]), row["server_version"],
                       row["created"], cfg.get("runtimeImage"))

    def get(self, name: str) -> Compute:
        row = self._row(name)
        if row is None:
            known = [c.name for c in self.list()]
            raise NotFoundError(f"no compute {name} in this workspace (attached: {', '.join(known) or 'none'}; "
                                "`openscore compute attach` adds one)")
        return self._from_row(row)

    def list(self) -> list[Compute]:
        rows = self.store.db().execute("SELECT * FROM computes ORDER BY name").fetchall()
        return [self._from_row(r) for r in rows]

    def detach(self, name: str) -> Compute:
        """Forget a compute; refused while services are deployed to it (naming them). The cluster is not
        touched: `openscore cluster uninstall` removes what was installed there."""
        compute = self.get(name)
        with self.store.transaction() as db:
            services = [r[0] for r in db.execute(
                "SELECT name FROM services WHERE compute_target = ? ORDER BY name", (name,)).fetchall()]
            if services:
                raise ConflictError(f"compute {name} has services deployed: {', '.join(services)} (delete them "
                                    "first)")
            db.execute("DELETE FROM computes WHERE name = ?", (name,))
        return compute


def _version_specs(dc: DeploymentConfigSpec) -> list[VersionSpec]:
    """The deploymentconfig's versions as the router parses them (inference keys stood in for)."""
    from openscore.deployer.deployment_config import _for_check
    from openscore.router.config import ConfigError, parse_service
    check = _for_check(dc.raw)
    if dc.compute_type == "aksendpoint" and isinstance(dc.raw.get("versions"), dict):
        check["versions"] = {n: _for_check(v) if isinstance(v, dict) else v for n, v in dc.raw["versions"].items()}
        check.pop("entryScript")
    else:
        check["computeType"] = "aks"
        check.pop("versions", None)
    try:
        return list(parse_service("check", check, None, path="").versions.values())
    except ConfigError as e:
        raise DeployError(f"Invalid configuration, {e}") from None


async def _nodes(compute: Compute) -> list[dict[str, Any]]:
    from openscore.kube.client import KubeError
    client = compute.client()
    try:
        items, _ = await client.list("v1", "Node")
        return items
    except KubeError as e:
        raise DeployError(f"compute {compute.name}: listing its nodes: {e.message}") from None
    finally:
        await client.close()


def check_submit(compute: Compute, dc: DeploymentConfigSpec | None) -> list[str]:
    """Submit-time checks of a deploy to `compute`: each version's instance type resolves (an unknown name
    is refused naming the known ones) and fits a node it can land on (Azure's Code 9 names the largest);
    returns "version: instance type on node" lines."""
    from openscore.kube import instance_types as it
    types = compute.instance_types()
    fpga = compute.fpga_resource or it.DEFAULT_FPGA_RESOURCE
    if dc is None:  # no deploymentconfig: one version on the compute's defaultinstancetype
        from openscore.deployer.deployment_config import deployment_config_from_dict
        dc = deployment_config_from_dict({"computeType": "aks"})
    specs = _version_specs(dc)
    nodes = run_async(_nodes(compute))
    out = []
    for spec in specs:
        try:
            chosen = it.resolve(spec, types, fpga_resource=fpga)
            node = it.check_fits(chosen, nodes)
        except it.InstanceTypeError as e:
            code = f"Code {e.code}: " if e.code is not None else ""
            raise DeployError(f"compute {compute.name}, version {spec.name}: {code}{e}") from None
        out.append(f"{spec.name}: instance type {chosen.name} fits node {node['metadata']['name']}")
    return out
