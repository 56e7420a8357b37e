"""Instance types: the SKU a version's replicas run on, in Azure ML's Kubernetes shape.

A compute target lists instance types as Azure's `InstanceType` documents (`metadata.name`, `spec.nodeSelector`,
`spec.resources.requests/limits` with cpu, memory, `nvidia.com/gpu`), plus what Azure's shape lacks and users
asked for: `spec.tolerations` (accelerator pools are commonly tainted) and an FPGA resource whose name the
compute configures (`xilinx.com/fpga-...`, Azure's retired `microsoft.com/fpga_catapult`). A version names one
(`instanceType`), or gets an ad-hoc one from `gpuCores` and `containerResourceRequirements` (Azure v1 AKS), or
the compute's `defaultinstancetype`. The type decides the replica's device (`--device cpu|cuda|fpga`) and the
image flavour (cpu, cuda, opencl for FPGAs).

`check_fits` refuses, at submit time, a type no node it could land on can hold (Azure's "Code 9"), comparing
with node *allocatable* rather than capacity (users confuse the two: Azure/azure-sdk-for-python#14168).
Everything here is pure: the caller lists the nodes.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightkube.utils.quantity import parse_quantity

from openscore.router.config import ResourceSpec, VersionSpec

DEFAULT_NAME = "defaultinstancetype"
GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_FPGA_RESOURCE = "microsoft.com/fpga_catapult"  # Azure's (Project Brainwave); computes set their own
CPU, CUDA, FPGA = "cpu", "cuda", "fpga"
FLAVOURS = {CPU: "cpu", CUDA: "cuda", FPGA: "opencl"}  # device -> runtime image flavour (images/Dockerfile)
# AKS's documented GPU pool taint (`az aks nodepool add --node-taints sku=gpu:NoSchedule`), and the device
# plugin's own: an ad-hoc GPU or FPGA type tolerates these unless the compute says otherwise. Tolerating a
# taint no node has changes nothing.
DEFAULT_GPU_TOLERATIONS: tuple[dict[str, str], ...] = (
    {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
    {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
)
DEFAULT_FPGA_TOLERATIONS: tuple[dict[str, str], ...] = (
    {"key": "sku", "operator": "Equal", "value": "fpga", "effect": "NoSchedule"},
)
AZURE_API_VERSION = "amlarc.azureml.com/v1alpha1"
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TOP_KEYS = {"apiVersion", "kind", "metadata", "spec"}
_METADATA_KEYS = {"name", "labels", "annotations"}
_SPEC_KEYS = {"nodeSelector", "resources", "tolerations"}
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_GI = 1024 ** 3


class InstanceTypeError(ValueError):
    """A deploy refused for its instance type (HTTP 400; the CLI's usage-error exit): a bad instance-type
    document, an unknown name, or a type no node can hold. `field` is the dotted path of the bad value."""

    status = 400
    code: int | None = None

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field

    def to_azure(self) -> dict[str, Any]:
        """Azure's error document: `{"Code": n, "Msg": ...}` where Azure has a code, else `{"Msg": ...}`."""
        return {"Code": self.code, "Msg": str(self)} if self.code is not None else {"Msg": str(self)}


class InstanceTypeTooLarge(InstanceTypeError):
    """Azure's Code 9: the type requests more than the largest node it could be scheduled on allocates."""

    code = 9


@dataclass(frozen=True)
class InstanceType:
    """One SKU. `requests`/`limits` hold Kubernetes quantity strings as they go into the pod; an accelerator
    count (`nvidia.com/gpu`, the FPGA resource) is only in `limits` (Kubernetes makes the request equal)."""

    name: str
    requests: Mapping[str, str]
    limits: Mapping[str, str]
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    accelerator: str = CPU  # cpu | cuda | fpga: the replica's --device
    fpga_resource: str = DEFAULT_FPGA_RESOURCE

    @property
    def device(self) -> str:
        return self.accelerator

    @property
    def flavour(self) -> str:
        """The runtime image flavour the replica needs (cpu, cuda, opencl)."""
        return FLAVOURS[self.accelerator]

    @property
    def is_accelerator(self) -> bool:
        return self.accelerator != CPU

    @property
    def gpus(self) -> int:
        return int(self.limits.get(GPU_RESOURCE, 0))

    @property
    def fpgas(self) -> int:
        return int(self.limits.get(self.fpga_resource, 0))

    def resources(self) -> dict[str, dict[str, str]]:
        """The container's `resources` block."""
        out: dict[str, dict[str, str]] = {"requests": dict(self.requests)}
        if self.limits:
            out["limits"] = dict(self.limits)
        return out

    def scheduling_requests(self) -> dict[str, decimal.Decimal]:
        """What the scheduler compares with a node's allocatable: requests, and limits for a resource without
        a request (an extended resource's request is its limit)."""
        out = {k: _quantity(v) for k, v in self.limits.items() if k not in self.requests}
        out.update({k: _quantity(v) for k, v in self.requests.items()})
        return out


DEFAULT_INSTANCE_TYPE = InstanceType(
    name=DEFAULT_NAME, requests={"cpu": "100m", "memory": "2Gi"}, limits={"cpu": "2", "memory": "2Gi"})


# ------------------------------------------------------------------------------------------------- parsing
def _quantity(v: str) -> decimal.Decimal:
    q = parse_quantity(v)
    assert q is not None
    return q


def _mapping(v: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise InstanceTypeError(f"must be an object, got {_show(v)}", field=path)
    return v


def _show(v: Any) -> str:
    return f"{type(v).__name__} {v!r}" if not isinstance(v, (Mapping, list)) else type(v).__name__


def _unknown(d: Mapping[str, Any], known: Iterable[str], path: str) -> None:
    extra = [k for k in d if k not in known]
    if extra:
        raise InstanceTypeError(f"unknown key {extra[0]!r} (known: {', '.join(sorted(known))})",
                                field=f"{path}.{extra[0]}" if path else str(extra[0]))


def _parse_quantity_value(v: Any, path: str) -> tuple[str, decimal.Decimal]:
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise InstanceTypeError(f"must be a Kubernetes quantity such as \"500m\", \"2\" or \"4Gi\", got {_show(v)}",
                                field=path)
    text = str(v).strip() if isinstance(v, str) else (str(int(v)) if float(v).is_integer() else repr(v))
    try:
        q = parse_quantity(text)
    except (ValueError, decimal.InvalidOperation):
        q = None
    if q is None:
        raise InstanceTypeError(f"{v!r} is not a Kubernetes quantity (e.g. \"500m\", \"2\", \"4Gi\")", field=path)
    if q <= 0:
        raise InstanceTypeError(f"must be greater than zero, got {v!r}", field=path)
    return text, q


def _resource_block(d: Any, path: str, fpga_resource: str, *, accelerators: bool) -> dict[str, str]:
    block = _mapping(d, path)
    known = {"cpu", "memory", GPU_RESOURCE, fpga_resource}
    for k in block:
        if k not in known:
            raise InstanceTypeError(
                f"unknown resource {k!r} (known: cpu, memory, {GPU_RESOURCE}, {fpga_resource}; the FPGA resource "
                "is the compute's, set where the compute is attached)", field=f"{path}.{k}")
    out: dict[str, str] = {}
    for k in ("cpu", "memory"):
        if block.get(k) is None:
            raise InstanceTypeError("is required (cpu and memory requests and limits must be given)",
                                    field=f"{path}.{k}")
        out[k] = _parse_quantity_value(block[k], f"{path}.{k}")[0]
    for k in (GPU_RESOURCE, fpga_resource):
        if k not in block:
            continue
        if not accelerators:
            raise InstanceTypeError("goes only in limits (Kubernetes sets an extended resource's request to its "
                                    "limit)", field=f"{path}.{k}")
        v = block[k]
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v.strip())
        if isinstance(v, bool) or not (isinstance(v, int) or (isinstance(v, float) and v.is_integer())):
            raise InstanceTypeError(f"must be a whole number of devices, got {v!r}", field=f"{path}.{k}")
        if int(v) < 0:
            raise InstanceTypeError(f"must be >= 0, got {v!r}", field=f"{path}.{k}")
        if int(v) > 0:
            out[k] = str(int(v))
    return out


def _tolerations(v: Any, path: str) -> tuple[dict[str, Any], ...]:
    if v is None:
        return ()
    if not isinstance(v, list):
        raise InstanceTypeError(f"must be a list of tolerations, got {_show(v)}", field=path)
    out = []
    for i, t in enumerate(v):
        tp = f"{path}[{i}]"
        t = _mapping(t, tp)
        _unknown(t, _TOLERATION_KEYS, tp)
        op = t.get("operator", "Equal")
        if op not in ("Equal", "Exists"):
            raise InstanceTypeError(f"must be Equal or Exists, got {op!r}", field=f"{tp}.operator")
        for k in ("key", "value"):
            if k in t and not isinstance(t[k], str):
                raise InstanceTypeError(f"must be a string, got {_show(t[k])}", field=f"{tp}.{k}")
        if op == "Exists" and t.get("value"):
            raise InstanceTypeError("must be empty when operator is Exists", field=f"{tp}.value")
        if op == "Equal" and not t.get("key"):
            raise InstanceTypeError("is required when operator is Equal", field=f"{tp}.key")
        effect = t.get("effect", "")
        if effect not in ("", *_EFFECTS):
            raise InstanceTypeError(f"must be one of {', '.join(_EFFECTS)} (or empty for all), got {effect!r}",
                                    field=f"{tp}.effect")
        secs = t.get("tolerationSeconds")
        if secs is not None and (isinstance(secs, bool) or not isinstance(secs, int)):
            raise InstanceTypeError(f"must be a whole number of seconds, got {secs!r}", field=f"{tp}.tolerationSeconds")
        if secs is not None and effect != "NoExecute":
            raise InstanceTypeError("is only allowed with effect NoExecute", field=f"{tp}.tolerationSeconds")
        out.append({k: t[k] for k in ("key", "operator", "value", "effect", "tolerationSeconds") if k in t}
                   | {"operator": op})
    return tuple(out)


def parse_instance_type(doc: Any, path: str = "instanceTypes[0]", *,
                        fpga_resource: str = DEFAULT_FPGA_RESOURCE) -> InstanceType:
    """One `InstanceType` document; InstanceTypeError naming the field for bad input."""
    d = _mapping(doc, path)
    _unknown(d, _TOP_KEYS, path)
    if "kind" in d and d["kind"] != "InstanceType":
        raise InstanceTypeError(f"must be InstanceType, got {d['kind']!r}", field=f"{path}.kind")
    meta = _mapping(d.get("metadata"), f"{path}.metadata")
    _unknown(meta, _METADATA_KEYS, f"{path}.metadata")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise InstanceTypeError("is required (a string)", field=f"{path}.metadata.name")
    if len(name) > 253 or not _NAME_RE.match(name):
        raise InstanceTypeError(f"{name!r} must be a Kubernetes name: lowercase letters, digits, '-' and '.', "
                                "starting and ending with a letter or digit", field=f"{path}.metadata.name")
    spec = _mapping(d.get("spec"), f"{path}.spec")
    _unknown(spec, _SPEC_KEYS, f"{path}.spec")
    selector = _mapping(spec.get("nodeSelector") or {}, f"{path}.spec.nodeSelector")
    for k, v in selector.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InstanceTypeError(f"labels and values must be strings, got {v!r}",
                                    field=f"{path}.spec.nodeSelector.{k}")
    res = _mapping(spec.get("resources"), f"{path}.spec.resources")
    _unknown(res, {"requests", "limits"}, f"{path}.spec.resources")
    rp = f"{path}.spec.resources"
    requests = _resource_block(res.get("requests"), f"{rp}.requests", fpga_resource, accelerators=False)
    limits = _resource_block(res.get("limits"), f"{rp}.limits", fpga_resource, accelerators=True)
    for k in ("cpu", "memory"):
        if _quantity(requests[k]) > _quantity(limits[k]):
            raise InstanceTypeError(f"{requests[k]} is more than the limit {limits[k]}", field=f"{rp}.requests.{k}")
    if GPU_RESOURCE in limits and fpga_resource in limits:
        raise InstanceTypeError(f"asks for both {GPU_RESOURCE} and {fpga_resource}: a replica has one device",
                                field=f"{rp}.limits")
    accelerator = CUDA if GPU_RESOURCE in limits else FPGA if fpga_resource in limits else CPU
    return InstanceType(name=name, requests=requests, limits=limits, node_selector=dict(selector),
                        tolerations=_tolerations(spec.get("tolerations"), f"{path}.spec.tolerations"),
                        accelerator=accelerator, fpga_resource=fpga_resource)


def parse_instance_types(doc: Any, *, fpga_resource: str = DEFAULT_FPGA_RESOURCE) -> dict[str, InstanceType]:
    """A compute's instance types: a list of `InstanceType` documents, an `InstanceTypeList` (`items`), or one
    document. The result always has `defaultinstancetype` (Azure's, unless a document of that name overrides
    it). Duplicate names are refused."""
    if isinstance(doc, Mapping) and doc.get("kind") == "InstanceTypeList":
        _unknown(doc, {"apiVersion", "kind", "metadata", "items"}, "")
        items = doc.get("items")
        if not isinstance(items, list):
            raise InstanceTypeError(f"must be a list of InstanceType documents, got {_show(items)}", field="items")
        prefix = "items"
    elif isinstance(doc, Mapping):
        items, prefix = [doc], "instanceTypes"
    elif isinstance(doc, list):
        items, prefix = doc, "instanceTypes"
    else:
        raise InstanceTypeError(f"must be a list of InstanceType documents or an InstanceTypeList, got {_show(doc)}",
                                field="instanceTypes")
    out: dict[str, InstanceType] = {}
    for i, item in enumerate(items):
        it = parse_instance_type(item, f"{prefix}[{i}]", fpga_resource=fpga_resource)
        if it.name in out:
            raise InstanceTypeError(f"{it.name!r} is defined twice", field=f"{prefix}[{i}].metadata.name")
        out[it.name] = it
    out.setdefault(DEFAULT_NAME, DEFAULT_INSTANCE_TYPE)
    return out


def to_document(it: InstanceType) -> dict[str, Any]:
    """An instance type as Azure's document (what `compute show` prints and `parse_instance_type` reads)."""
    spec: dict[str, Any] = {"resources": {"requests": dict(it.requests), "limits": dict(it.limits)}}
    if it.node_selector:
        spec["nodeSelector"] = dict(it.node_selector)
    if it.tolerations:
        spec["tolerations"] = [dict(t) for t in it.tolerations]
    return {"apiVersion": AZURE_API_VERSION, "kind": "InstanceType", "metadata": {"name": it.name}, "spec": spec}


# ------------------------------------------------------------------------------------------------- resolving
def cpu_quantity(cores: float) -> str:
    """0.1 -> "100m", 2.0 -> "2"."""
    milli = round(cores * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def memory_quantity(gb: float) -> str:
    """Azure's GB are GiB (1024**3), as its pods get: 0.5 -> "512Mi", 2 -> "2Gi"."""
    n = round(gb * _GI)
    for unit, size in (("Gi", _GI), ("Mi", 1024 ** 2), ("Ki", 1024)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def resolve(spec: VersionSpec, types: Mapping[str, InstanceType] | None = None, *,
            fpga_resource: str = DEFAULT_FPGA_RESOURCE, fpgas: int = 0,
            gpu_tolerations: Sequence[Mapping[str, Any]] = DEFAULT_GPU_TOLERATIONS,
            fpga_tolerations: Sequence[Mapping[str, Any]] = DEFAULT_FPGA_TOLERATIONS) -> InstanceType:
    """The instance type a version's replicas run on.

    `instanceType` names one of `types` (unknown: refused naming the known ones). Otherwise `gpuCores` and
    `containerResourceRequirements` make an ad-hoc type (GPUs as `nvidia.com/gpu` limits, `fpgas` as the
    compute's FPGA resource, tolerating the accelerator pool's taint); a version that sets neither gets the
    compute's `defaultinstancetype`."""
    types = types if types is not None else {DEFAULT_NAME: DEFAULT_INSTANCE_TYPE}
    if spec.instance_type:
        it = types.get(spec.instance_type)
        if it is None:
            known = ", ".join(sorted(set(types) | {DEFAULT_NAME}))
            raise InstanceTypeError(f"{spec.instance_type!r} is not an instance type of this compute (known: "
                                    f"{known})", field="instanceType")
        if spec.gpus and spec.gpus != it.gpus:
            raise InstanceTypeError(f"is {spec.gpus} but instance type {it.name!r} has {it.gpus} {GPU_RESOURCE}: "
                                    "give the GPUs in the instance type only", field="gpuCores")
        return it
    if spec.gpus and fpgas:
        raise InstanceTypeError(f"gpuCores ({spec.gpus}) and an FPGA ({fpgas}) together: a replica has one device",
                                field="gpuCores")
    if spec.resources == ResourceSpec() and not spec.gpus and not fpgas:
        return types.get(DEFAULT_NAME, DEFAULT_INSTANCE_TYPE)
    r = spec.resources
    requests = {"cpu": cpu_quantity(r.cpu), "memory": memory_quantity(r.memory_gb)}
    limits: dict[str, str] = {}
    if r.cpu_limit is not None:
        limits["cpu"] = cpu_quantity(r.cpu_limit)
    if r.memory_gb_limit is not None:
        limits["memory"] = memory_quantity(r.memory_gb_limit)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    accelerator = CPU
    if spec.gpus:
        limits[GPU_RESOURCE] = str(spec.gpus)
        accelerator, tolerations = CUDA, tuple(dict(t) for t in gpu_tolerations)
    elif fpgas:
        limits[fpga_resource] = str(fpgas)
        accelerator, tolerations = FPGA, tuple(dict(t) for t in fpga_tolerations)
    name = f"adhoc-{accelerator}-{requests['cpu']}-{requests['memory']}".lower()
    return InstanceType(name=name, requests=requests, limits=limits, tolerations=tolerations,
                        accelerator=accelerator, fpga_resource=fpga_resource)


# ------------------------------------------------------------------------------------------------- fit check
def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """Kubernetes' rule: a toleration matches a taint's key (empty key + Exists: every key), value (Equal)
    and effect (empty: every effect)."""
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        op = t.get("operator", "Equal")
        if not t.get("key"):
            if op == "Exists":
                return True
            continue
        if t.get("key") != taint.get("key"):
            continue
        if op == "Exists" or (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def can_land_on(it: InstanceType, node: Mapping[str, Any]) -> bool:
    """The node's labels match the type's nodeSelector and every NoSchedule/NoExecute taint is tolerated."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in it.node_selector.items()):
        return False
    taints = (node.get("spec") or {}).get("taints") or []
    return all(tolerates(it.tolerations, t) for t in taints if t.get("effect") in ("NoSchedule", "NoExecute"))


def _alloc(node: Mapping[str, Any], key: str = "allocatable") -> dict[str, decimal.Decimal]:
    out = {}
    for k, v in ((node.get("status") or {}).get(key) or {}).items():
        try:
            q = parse_quantity(str(v))
        except (ValueError, decimal.InvalidOperation):
            continue
        if q is not None:
            out[k] = q
    return out


def _plain(q: decimal.Decimal) -> str:
    s = f"{q:f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def _fmt(resource: str, q: decimal.Decimal) -> str:
    """A quantity as a person reads it: memory in Gi/Mi/Ki, fractional CPUs below one in millicores."""
    if resource == "memory":
        for unit, size in (("Gi", _GI), ("Mi", 1024 ** 2), ("Ki", 1024)):
            if q >= size:
                return f"{_plain(round(q / size, 1))}{unit}"
        return _plain(q)
    if resource == "cpu" and 0 < q < 1:
        return f"{_plain(q * 1000)}m"
    return _plain(q)


def _describe(resources: Mapping[str, decimal.Decimal], keys: Iterable[str]) -> str:
    return ", ".join(f"{k} {_fmt(k, resources.get(k, decimal.Decimal(0)))}" for k in keys)


def check_fits(it: InstanceType, nodes: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The node the type fits best on; InstanceTypeTooLarge (Azure's Code 9) when no node it could land on
    (nodeSelector and taints considered) has the allocatable it requests, naming the largest such node, or
    InstanceTypeError when no node matches its nodeSelector and taints at all."""
    wanted = it.scheduling_requests()
    keys = [k for k in ("cpu", "memory", GPU_RESOURCE, it.fpga_resource) if k in wanted]
    candidates = [n for n in nodes if can_land_on(it, n)]
    if not candidates:
        why = []
        if it.node_selector:
            why.append("nodeSelector " + ", ".join(f"{k}={v}" for k, v in it.node_selector.items()))
        why.append("tolerations " + (", ".join(_taint_text(t) for t in it.tolerations) or "none"))
        raise InstanceTypeError(
            f"Invalid instance type. No node of the cluster matches instance type {it.name!r} ({'; '.join(why)}); "
            f"nodes: {_nodes_text(nodes)}")
    for n in candidates:
        alloc = _alloc(n)
        if all(alloc.get(k, decimal.Decimal(0)) >= q for k, q in wanted.items()):
            return n

    def size(n: Mapping[str, Any]) -> tuple[decimal.Decimal, ...]:
        a = _alloc(n)
        return tuple(a.get(k, decimal.Decimal(0)) for k in (GPU_RESOURCE, it.fpga_resource, "cpu", "memory"))

    largest = max(candidates, key=size)
    alloc, capacity = _alloc(largest), _alloc(largest, "capacity")
    short = [f"{k} {_fmt(k, wanted[k])} > {_fmt(k, alloc.get(k, decimal.Decimal(0)))}" for k in keys
             if alloc.get(k, decimal.Decimal(0)) < wanted[k]]
    raise InstanceTypeTooLarge(
        "Invalid instance type. The instance type defined resource requirement has exceeded the node size. "
        f"Instance type {it.name!r} requests {_describe(wanted, keys)}; the largest node it can be scheduled "
        f"on, {largest['metadata']['name']}, has allocatable {_describe(alloc, keys)} (capacity "
        f"{_describe(capacity, keys)}; the difference is reserved for the system and kubelet): "
        f"{', '.join(short)}.")


def _taint_text(t: Mapping[str, Any]) -> str:
    key = t.get("key") or "*"
    value = f"={t['value']}" if t.get("value") else ""
    return f"{key}{value}:{t.get('effect') or '*'}"


def _nodes_text(nodes: Sequence[Mapping[str, Any]]) -> str:
    if not nodes:
        return "none"
    parts = []
    for n in nodes[:10]:
        labels = (n.get("metadata") or {}).get("labels") or {}
        pool = labels.get("agentpool") or labels.get("openscore.io/pool")
        taints = [_taint_text(t) for t in (n.get("spec") or {}).get("taints") or []]
        desc = [f"pool {pool}"] if pool else []
        desc.append("taints " + " ".join(taints) if taints else "no taints")
        parts.append(f"{n['metadata']['name']} ({', '.join(desc)})")
    return "; ".join(parts) + (f"; and {len(nodes) - 10} more" if len(nodes) > 10 else "")
