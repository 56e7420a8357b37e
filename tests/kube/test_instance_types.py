"""Instance types: Azure's documents, what a version resolves to, and the submit-time fit check (Code 9)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from openscore.kube.instance_types import (
    DEFAULT_INSTANCE_TYPE,
    DEFAULT_NAME,
    GPU_RESOURCE,
    InstanceType,
    InstanceTypeError,
    InstanceTypeTooLarge,
    check_fits,
    cpu_quantity,
    memory_quantity,
    parse_instance_type,
    parse_instance_types,
    resolve,
    to_document,
)
from openscore.router.config import ResourceSpec, VersionSpec

FPGA = "xilinx.com/fpga-u250"


def doc(name: str = "gpu-small", *, requests: dict | None = None, limits: dict | None = None,
        node_selector: dict | None = None, tolerations: list | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"resources": {"requests": requests or {"cpu": "1", "memory": "4Gi"},
                                          "limits": limits or {"cpu": "2", "memory": "4Gi"}}}
    if node_selector is not None:
        spec["nodeSelector"] = node_selector
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {"apiVersion": "amlarc.azureml.com/v1alpha1", "kind": "InstanceType", "metadata": {"name": name},
            "spec": spec}


GPU_DOC = doc(limits={"cpu": 2, "memory": "4Gi", GPU_RESOURCE: 1}, node_selector={"agentpool": "gpu"},
              tolerations=[{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}])


def node(name: str, pool: str, *, cpu: str = "8", memory: str = "32Gi", extra: dict | None = None,
         taint: str | None = None, capacity_cpu: str | None = None) -> dict[str, Any]:
    """A node as the API server returns it (the fields the check reads, plus the noise around them)."""
    alloc = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "50Gi", **(extra or {})}
    cap = {**alloc, "cpu": capacity_cpu or cpu}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"agentpool": pool, "openscore.io/pool": pool,
                                                  "kubernetes.io/hostname": name}},
            "spec": {"taints": [{"key": "sku", "value": taint, "effect": "NoSchedule"}]} if taint else {},
            "status": {"allocatable": alloc, "capacity": cap,
                       "conditions": [{"type": "Ready", "status": "True"}]}}


NODES = [
    node("node-cpu-0", "cpu", cpu="1900m", memory="7Gi", capacity_cpu="2"),
    node("gpu-0", "gpu", extra={GPU_RESOURCE: "1"}, taint="gpu"),
    node("gpu-1", "gpu", extra={GPU_RESOURCE: "1"}, taint="gpu"),
    node("fpga-0", "fpga", extra={FPGA: "1"}, taint="fpga"),
]


def version(**kw: Any) -> VersionSpec:
    return VersionSpec(name="v1", entry_script="/var/azureml-app/score.py", app_root="/var/azureml-app", **kw)


# ------------------------------------------------------------------------------------------------ documents
def test_a_gpu_instance_type_document_becomes_a_cuda_type_with_its_pool_and_toleration():
    it = parse_instance_type(GPU_DOC)
    assert it.name == "gpu-small"
    assert it.requests == {"cpu": "1", "memory": "4Gi"}
    assert it.limits == {"cpu": "2", "memory": "4Gi", GPU_RESOURCE: "1"}
    assert it.node_selector == {"agentpool": "gpu"}
    assert it.tolerations == ({"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},)
    assert (it.device, it.flavour, it.gpus) == ("cuda", "cuda", 1)
    assert it.resources() == {"requests": {"cpu": "1", "memory": "4Gi"},
                              "limits": {"cpu": "2", "memory": "4Gi", GPU_RESOURCE: "1"}}


def test_an_fpga_type_uses_the_computes_resource_name_and_the_opencl_image():
    it = parse_instance_type(doc("fpga", limits={"cpu": "2", "memory": "4Gi", FPGA: 1}), fpga_resource=FPGA)
    assert (it.device, it.flavour, it.fpgas) == ("fpga", "opencl", 1)
    assert it.limits[FPGA] == "1"


def test_a_cpu_type_runs_the_cpu_image():
    it = parse_instance_type(doc("cpu-medium"))
    assert (it.device, it.flavour, it.is_accelerator) == ("cpu", "cpu", False)


def test_the_list_and_the_instancetypelist_forms_both_parse_and_always_include_the_default():
    as_list = parse_instance_types([GPU_DOC, doc("cpu-medium")])
    as_kind = parse_instance_types({"apiVersion": "amlarc.azureml.com/v1alpha1", "kind": "InstanceTypeList",
                                    "items": [GPU_DOC, doc("cpu-medium")]})
    assert as_list == as_kind
    assert set(as_list) == {"gpu-small", "cpu-medium", DEFAULT_NAME}
    assert as_list[DEFAULT_NAME] == DEFAULT_INSTANCE_TYPE


def test_azures_defaultinstancetype_and_overriding_it_by_name():
    d = DEFAULT_INSTANCE_TYPE
    assert d.requests == {"cpu": "100m", "memory": "2Gi"} and d.limits == {"cpu": "2", "memory": "2Gi"}
    assert not d.node_selector and d.gpus == 0
    own = parse_instance_types([doc(DEFAULT_NAME, requests={"cpu": "500m", "memory": "1Gi"},
                                    limits={"cpu": "1", "memory": "1Gi"})])
    assert own[DEFAULT_NAME].requests == {"cpu": "500m", "memory": "1Gi"}


def test_round_trip_through_azures_document():
    it = parse_instance_type(GPU_DOC)
    assert parse_instance_type(to_document(it)) == it


BAD = [
    # (what is wrong, how to break a good document, the field the error names, words in the message)
    ("zero cpu request", lambda d: d["spec"]["resources"]["requests"].update(cpu="0"),
     "instanceTypes[0].spec.resources.requests.cpu", "greater than zero"),
    ("missing memory request", lambda d: d["spec"]["resources"]["requests"].pop("memory"),
     "instanceTypes[0].spec.resources.requests.memory", "required"),
    ("missing cpu limit", lambda d: d["spec"]["resources"]["limits"].pop("cpu"),
     "instanceTypes[0].spec.resources.limits.cpu", "required"),
    ("no limits at all", lambda d: d["spec"]["resources"].pop("limits"),
     "instanceTypes[0].spec.resources.limits", "must be an object"),
    ("no resources", lambda d: d["spec"].pop("resources"), "instanceTypes[0].spec.resources", "must be an object"),
    ("negative memory", lambda d: d["spec"]["resources"]["limits"].update(memory="-1Gi"),
     "instanceTypes[0].spec.resources.limits.memory", "greater than zero"),
    ("not a quantity", lambda d: d["spec"]["resources"]["requests"].update(memory="4GB"),
     "instanceTypes[0].spec.resources.requests.memory", "not a Kubernetes quantity"),
    ("a boolean cpu", lambda d: d["spec"]["resources"]["requests"].update(cpu=True),
     "instanceTypes[0].spec.resources.requests.cpu", "quantity"),
    ("half a GPU", lambda d: d["spec"]["resources"]["limits"].update({GPU_RESOURCE: 0.5}),
     f"instanceTypes[0].spec.resources.limits.{GPU_RESOURCE}", "whole number"),
    ("a GPU count as words", lambda d: d["spec"]["resources"]["limits"].update({GPU_RESOURCE: "one"}),
     f"instanceTypes[0].spec.resources.limits.{GPU_RESOURCE}", "whole number"),
    ("a GPU in requests", lambda d: d["spec"]["resources"]["requests"].update({GPU_RESOURCE: 1}),
     f"instanceTypes[0].spec.resources.requests.{GPU_RESOURCE}", "only in limits"),
    ("request above limit", lambda d: d["spec"]["resources"]["requests"].update(cpu="3"),
     "instanceTypes[0].spec.resources.requests.cpu", "more than the limit"),
    ("unknown resource", lambda d: d["spec"]["resources"]["limits"].update({"amd.com/gpu": 1}),
     "instanceTypes[0].spec.resources.limits.amd.com/gpu", "unknown resource"),
    ("unknown spec key", lambda d: d["spec"].update(nodeselector={"a": "b"}),
     "instanceTypes[0].spec.nodeselector", "unknown key"),
    ("unknown top key", lambda d: d.update(status={}), "instanceTypes[0].status", "unknown key"),
    ("unknown resources key", lambda d: d["spec"]["resources"].update(limit={}),
     "instanceTypes[0].spec.resources.limit", "unknown key"),
    ("missing name", lambda d: d["metadata"].pop("name"), "instanceTypes[0].metadata.name", "required"),
    ("upper-case name", lambda d: d["metadata"].update(name="GPU_Small"), "instanceTypes[0].metadata.name",
     "Kubernetes name"),
    ("wrong kind", lambda d: d.update(kind="Deployment"), "instanceTypes[0].kind", "InstanceType"),
    ("selector value not a string", lambda d: d["spec"].update(nodeSelector={"gpus": 2}),
     "instanceTypes[0].spec.nodeSelector.gpus", "strings"),
    ("tolerations not a list", lambda d: d["spec"].update(tolerations={"key": "sku"}),
     "instanceTypes[0].spec.tolerations", "list"),
    ("bad toleration operator", lambda d: d["spec"].update(tolerations=[{"key": "sku", "operator": "In"}]),
     "instanceTypes[0].spec.tolerations[0].operator", "Equal or Exists"),
    ("bad toleration effect", lambda d: d["spec"].update(tolerations=[{"key": "sku", "effect": "Never"}]),
     "instanceTypes[0].spec.tolerations[0].effect", "NoSchedule"),
    ("Exists with a value", lambda d: d["spec"].update(tolerations=[{"key": "sku", "operator": "Exists",
                                                                      "value": "gpu"}]),
     "instanceTypes[0].spec.tolerations[0].value", "empty"),
    ("unknown toleration key", lambda d: d["spec"].update(tolerations=[{"key": "sku", "vaule": "gpu"}]),
     "instanceTypes[0].spec.tolerations[0].vaule", "unknown key"),
]


@pytest.mark.parametrize(("what", "breaks", "field", "words"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_document_is_refused_naming_the_field(what, breaks, field, words):
    d = copy.deepcopy(GPU_DOC)
    breaks(d)
    with pytest.raises(InstanceTypeError) as e:
        parse_instance_types([d])
    assert e.value.field == field
    assert str(e.value).startswith(f"{field}: ")
    assert words in str(e.value)
    assert e.value.status == 400


def test_gpu_and_fpga_in_one_type_are_refused():
    d = doc(limits={"cpu": "2", "memory": "4Gi", GPU_RESOURCE: 1, FPGA: 1})
    with pytest.raises(InstanceTypeError, match="one device"):
        parse_instance_type(d, fpga_resource=FPGA)


def test_an_fpga_resource_other_than_the_computes_is_unknown_and_the_message_says_where_to_set_it():
    with pytest.raises(InstanceTypeError, match=r"microsoft.com/fpga_catapult.*compute") as e:
        parse_instance_type(doc(limits={"cpu": "2", "memory": "4Gi", FPGA: 1}))
    assert e.value.field and e.value.field.endswith(FPGA)


def test_duplicate_names_and_bad_containers_are_refused():
    with pytest.raises(InstanceTypeError, match="defined twice") as e:
        parse_instance_types([GPU_DOC, GPU_DOC])
    assert e.value.field == "instanceTypes[1].metadata.name"
    with pytest.raises(InstanceTypeError, match="list of InstanceType"):
        parse_instance_types("gpu-small")
    with pytest.raises(InstanceTypeError) as e:
        parse_instance_types({"kind": "InstanceTypeList", "items": {"a": 1}})
    assert e.value.field == "items"
    with pytest.raises(InstanceTypeError) as e:
        parse_instance_types({"kind": "InstanceTypeList", "items": [GPU_DOC, 7]})
    assert e.value.field == "items[1]"


def test_numbers_are_accepted_where_yaml_gives_numbers():
    it = parse_instance_type(doc(requests={"cpu": 0.5, "memory": "1Gi"}, limits={"cpu": 1, "memory": "1Gi",
                                                                               GPU_RESOURCE: "2"}))
    assert it.requests["cpu"] == "0.5" and it.limits["cpu"] == "1" and it.gpus == 2


# ------------------------------------------------------------------------------------------------ resolve
TYPES = parse_instance_types([GPU_DOC, doc("cpu-medium")])


def test_a_named_instance_type_is_the_one_used():
    assert resolve(version(instance_type="gpu-small"), TYPES) is TYPES["gpu-small"]


def test_an_unknown_instance_type_is_refused_naming_the_known_ones():
    with pytest.raises(InstanceTypeError) as e:
        resolve(version(instance_type="gpu-large"), TYPES)
    assert e.value.field == "instanceType"
    assert "'gpu-large'" in str(e.value)
    assert "known: cpu-medium, defaultinstancetype, gpu-small" in str(e.value)


def test_gpu_cores_that_contradict_the_named_type_are_refused():
    with pytest.raises(InstanceTypeError, match=r"has 0 nvidia\.com/gpu") as e:
        resolve(version(instance_type="cpu-medium", gpu_cores=1), TYPES)
    assert e.value.field == "gpuCores"
    assert resolve(version(instance_type="gpu-small", gpu_cores=1), TYPES).gpus == 1


def test_nothing_given_is_the_computes_default_type():
    assert resolve(version(), TYPES) == DEFAULT_INSTANCE_TYPE
    own = parse_instance_types([doc(DEFAULT_NAME)])
    assert resolve(version(), own) == own[DEFAULT_NAME]


def test_gpu_cores_make_an_adhoc_cuda_type_with_a_gpu_limit_tolerating_the_gpu_pool():
    it = resolve(version(gpu_cores=2, resources=ResourceSpec(cpu=1, memory_gb=4)), TYPES)
    assert it.limits[GPU_RESOURCE] == "2" and GPU_RESOURCE not in it.requests
    assert it.requests == {"cpu": "1", "memory": "4Gi"}
    assert (it.device, it.flavour) == ("cuda", "cuda")
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in it.tolerations
    own = resolve(version(gpu_cores=1), TYPES, gpu_tolerations=[{"key": "pool", "operator": "Exists"}])
    assert own.tolerations == ({"key": "pool", "operator": "Exists"},)


def test_container_resource_requirements_make_an_adhoc_cpu_type():
    it = resolve(version(resources=ResourceSpec(cpu=0.5, memory_gb=1.5, cpu_limit=1, memory_gb_limit=2)), TYPES)
    assert it.requests == {"cpu": "500m", "memory": "1536Mi"}
    assert it.limits == {"cpu": "1", "memory": "2Gi"}
    assert (it.device, it.tolerations, dict(it.node_selector)) == ("cpu", (), {})


def test_an_adhoc_fpga_type_asks_for_the_computes_fpga_resource():
    it = resolve(version(resources=ResourceSpec(cpu=1, memory_gb=2)), TYPES, fpga_resource=FPGA, fpgas=1)
    assert it.limits[FPGA] == "1" and (it.device, it.flavour) == ("fpga", "opencl")
    assert {"key": "sku", "operator": "Equal", "value": "fpga", "effect": "NoSchedule"} in it.tolerations
    with pytest.raises(InstanceTypeError, match="one device"):
        resolve(version(gpu_cores=1), TYPES, fpga_resource=FPGA, fpgas=1)


def test_quantities_from_azure_numbers():
    assert [cpu_quantity(c) for c in (0.1, 0.25, 1, 2.5)] == ["100m", "250m", "1", "2500m"]
    assert [memory_quantity(g) for g in (0.5, 1, 1.5, 0.001)] == ["512Mi", "1Gi", "1536Mi", "1073742"]


# ------------------------------------------------------------------------------------------------ fit check
def test_a_type_that_fits_gets_the_node_it_fits_on():
    assert check_fits(TYPES["gpu-small"], NODES)["metadata"]["name"] == "gpu-0"
    assert check_fits(DEFAULT_INSTANCE_TYPE, NODES)["metadata"]["name"] == "node-cpu-0"


def test_too_large_a_type_is_azures_code_9_naming_the_largest_node_it_could_land_on():
    big = parse_instance_type(doc("gpu-huge", requests={"cpu": "12", "memory": "48Gi"},
                                  limits={"cpu": "12", "memory": "48Gi", GPU_RESOURCE: 2},
                                  node_selector={"agentpool": "gpu"},
                                  tolerations=[{"key": "sku", "operator": "Exists"}]))
    with pytest.raises(InstanceTypeTooLarge) as e:
        check_fits(big, NODES)
    azure = e.value.to_azure()
    assert azure["Code"] == 9
    msg = azure["Msg"]
    assert msg.startswith("Invalid instance type. The instance type defined resource requirement has exceeded "
                          "the node size.")
    assert "gpu-0" in msg and "fpga-0" not in msg and "node-cpu-0" not in msg  # only nodes it could land on
    assert "allocatable cpu 8, memory 32Gi, nvidia.com/gpu 1" in msg
    assert "cpu 12 > 8" in msg and "memory 48Gi > 32Gi" in msg and "nvidia.com/gpu 2 > 1" in msg
    assert e.value.status == 400


def test_allocatable_not_capacity_decides():
    # the node has 2 CPUs but allocates 1900m (the rest is the system's): a 2-CPU request does not fit
    two = parse_instance_type(doc("two", requests={"cpu": "2", "memory": "1Gi"}, limits={"cpu": "2", "memory": "1Gi"}))
    with pytest.raises(InstanceTypeTooLarge) as e:
        check_fits(two, NODES)
    assert "node-cpu-0, has allocatable cpu 1.9" in str(e.value) and "capacity cpu 2" in str(e.value)
    assert "cpu 2 > 1.9" in str(e.value)


def test_taints_keep_a_type_off_nodes_it_does_not_tolerate():
    # 8 CPUs exist only on the tainted GPU/FPGA nodes: a CPU type without tolerations cannot use them
    wide = parse_instance_type(doc("wide", requests={"cpu": "4", "memory": "4Gi"},
                                   limits={"cpu": "4", "memory": "4Gi"}))
    with pytest.raises(InstanceTypeTooLarge, match="node-cpu-0") as e:
        check_fits(wide, NODES)
    assert "gpu-0" not in str(e.value)
    tolerating = InstanceType(name="wide", requests=wide.requests, limits=wide.limits,
                              tolerations=({"key": "sku", "operator": "Exists", "effect": "NoSchedule"},))
    assert check_fits(tolerating, NODES)["metadata"]["name"] in ("gpu-0", "gpu-1", "fpga-0")


def test_a_gpu_type_without_the_toleration_fits_nowhere_and_says_why():
    untolerated = parse_instance_type(doc("gpu-plain", limits={"cpu": "2", "memory": "4Gi", GPU_RESOURCE: 1}))
    with pytest.raises(InstanceTypeTooLarge, match=r"node-cpu-0.*nvidia.com/gpu 1 > 0"):
        check_fits(untolerated, NODES)


def test_a_node_selector_that_matches_no_node_is_refused_listing_the_nodes():
    lost = parse_instance_type(doc("lost", node_selector={"agentpool": "tpu"}))
    with pytest.raises(InstanceTypeError) as e:
        check_fits(lost, NODES)
    assert not isinstance(e.value, InstanceTypeTooLarge)
    msg = str(e.value)
    assert "nodeSelector agentpool=tpu" in msg
    assert "gpu-0 (pool gpu, taints sku=gpu:NoSchedule)" in msg and "node-cpu-0 (pool cpu, no taints)" in msg
    with pytest.raises(InstanceTypeError, match="nodes: none"):
        check_fits(DEFAULT_INSTANCE_TYPE, [])


def test_prefer_no_schedule_taints_do_not_exclude_a_node():
    soft = node("soft-0", "cpu", cpu="16", memory="64Gi")
    soft["spec"] = {"taints": [{"key": "spot", "value": "true", "effect": "PreferNoSchedule"}]}
    wide = parse_instance_type(doc("wide", requests={"cpu": "12", "memory": "4Gi"},
                                   limits={"cpu": "12", "memory": "4Gi"}))
    assert check_fits(wide, [*NODES, soft])["metadata"]["name"] == "soft-0"
