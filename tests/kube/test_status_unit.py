"""Every state rule of kube/status.py on objects shaped as the v1.20 API server really returned them (captured
from the dev cluster, trimmed to the fields that matter; the kubelet's and scheduler's texts are verbatim)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from openscore.kube.logs import no_log_reason
from openscore.kube.status import (
    FAILED,
    HEALTHY,
    TRANSITIONING,
    UNHEALTHY,
    UNSCHEDULABLE,
    hms,
    parse_time,
    service_status,
    status_document,
    unschedulable_text,
    wanted_versions,
)

T0: float = parse_time("2026-12-02T19:58:37Z") or 0.0
SCHEDULER_TEXT = ("0/4 nodes are available: 1 node(s) had taint {sku: fpga}, that the pod didn't tolerate, "
                  "3 Insufficient nvidia.com/gpu.")
PULL_TEXT = ('rpc error: code = NotFound desc = failed to pull and unpack image '
             '"127.0.0.1:5000/openscore-test-runtime:no-such-tag": failed to resolve reference '
             '"127.0.0.1:5000/openscore-test-runtime:no-such-tag": 127.0.0.1:5000/openscore-test-runtime:no-such-tag: '
             'not found')
INIT_LOG = """2026-12-02 19:58:41,893 I [10] openscore.print - loading the model
2026-12-02 19:58:41,896 E [10] openscore.worker - The entry script /var/azureml-app/score.py failed to initialize:
Traceback (most recent call last):
  File "/opt/openscore/venv/lib/python3.11/site-packages/openscore/runtime/worker.py", line 193, in _load_and_init
    script.init()
  File "/var/azureml-app/score.py", line 4, in init
    raise ValueError("no model file at /var/azureml-app/azureml-models/m/1")
ValueError: no model file at /var/azureml-app/azureml-models/m/1

2026-12-02 19:58:42,108 E [1] openscore.supervisor - Worker 10 failed to boot (the entry script or its init() failed, see above); stopping with exit code 3
2026-12-02 19:58:42,108 I [1] openscore.supervisor - Server stopped
"""  # noqa: E501 (the runtime's line, verbatim)
HASH = "7e2934afbda5b4eb"


def stamp(offset_s: float = 0) -> str:
    from datetime import UTC, datetime
    return datetime.fromtimestamp(T0 + offset_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cr(name: str = "echo", generation: int = 1, status: dict[str, Any] | None = None,
       config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"apiVersion": "openscore.io/v1", "kind": "ScoringService",
            "metadata": {"name": name, "namespace": "ns", "generation": generation, "uid": "u-1"},
            "spec": {"config": config or {"name": name, "computeType": "aks"}}, "status": status or {}}


def deployment(version: str = "echo", *, service: str = "echo", replicas: int = 1, ready: int = 1,
               updated: int | None = None, total: int | None = None, generation: int = 1,
               observed: int | None = None, rollout: str = "maxSurge=25%,maxUnavailable=0",
               conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Shaped like the dev cluster's echo-echo Deployment once available."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"{service}-{version}", "namespace": "ns", "generation": generation,
                     "labels": {"app.kubernetes.io/component": "replica", "app.kubernetes.io/managed-by": "openscore",
                                "openscore.io/service": service, "openscore.io/version": version},
                     "annotations": {"deployment.kubernetes.io/revision": "1",
                                     "openscore.io/instance-type": "defaultinstancetype",
                                     "openscore.io/rollout": rollout}},
        "spec": {"replicas": replicas, "template": {"metadata": {"annotations": {"openscore.io/template-hash": HASH}}}},
        "status": {"observedGeneration": generation if observed is None else observed,
                   "replicas": replicas if total is None else total,
                   "updatedReplicas": replicas if updated is None else updated,
                   "readyReplicas": ready, "availableReplicas": ready,
                   "conditions": conditions or [
                       {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                        "message": "Deployment has minimum availability."},
                       {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                        "message": f'ReplicaSet "{service}-{version}-7c64f9b6cb" has successfully progressed.'}]}}


def pod(name: str = "echo-echo-7c64f9b6cb-grnjz", *, version: str = "echo", ready: bool = True,
        state: dict[str, Any] | None = None, last: dict[str, Any] | None = None, restarts: int = 0,
        template_hash: str = HASH, deleting: bool = False) -> dict[str, Any]:
    """Shaped like the dev cluster's pods on node-cpu-0."""
    meta: dict[str, Any] = {
        "name": name, "namespace": "ns", "creationTimestamp": stamp(),
        "labels": {"app.kubernetes.io/component": "replica", "openscore.io/service": "echo",
                   "openscore.io/version": version, "pod-template-hash": "7c64f9b6cb"},
        "annotations": {"openscore.io/template-hash": template_hash}}
    if deleting:
        meta["deletionTimestamp"] = stamp(30)
    r = "True" if ready else "False"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"nodeName": "node-cpu-0"},
            "status": {"phase": "Running", "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": stamp()},
                {"type": "Ready", "status": r, "lastTransitionTime": stamp(7)},
                {"type": "ContainersReady", "status": r, "lastTransitionTime": stamp(7)},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp()}],
                "containerStatuses": [{
                    "name": "replica", "ready": ready, "started": ready, "restartCount": restarts,
                    "image": "127.0.0.1:5000/openscore-app@sha256:0c1e", "state": state or {
                        "running": {"startedAt": stamp(3)}}, "lastState": last or {}}]}}


def pending_pod(message: str = SCHEDULER_TEXT, since_s: float = 0) -> dict[str, Any]:
    """The dev cluster's 3-GPU pod: never scheduled (no nodeName, no containerStatuses)."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "big-big-5478c9bcc7-k8t4p", "namespace": "ns", "creationTimestamp": stamp(since_s),
                         "labels": {"app.kubernetes.io/component": "replica", "openscore.io/service": "big",
                                    "openscore.io/version": "big"},
                         "annotations": {"openscore.io/template-hash": HASH}},
            "spec": {"tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]},
            "status": {"phase": "Pending", "qosClass": "Burstable", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                 "lastProbeTime": None, "lastTransitionTime": stamp(since_s)}]}}


def big() -> tuple[dict[str, Any], dict[str, Any]]:
    return cr("big"), deployment("big", service="big", ready=0, rollout="maxSurge=0,maxUnavailable=1", conditions=[
        {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
         "message": "Deployment does not have minimum availability."}])


def status(c: dict[str, Any], deps: list[dict[str, Any]], pods: list[dict[str, Any]], *, now_s: float = 60,
           **kw: Any) -> Any:
    return service_status(c, deps, pods, kw.pop("events", []), now=T0 + now_s, **kw)


def detail(st: Any, i: int = 0) -> dict[str, Any]:
    assert st.error is not None, st
    return st.error["details"][i]


# ------------------------------------------------------------------------------------------------ healthy
def test_every_wanted_replica_ready_and_observed_is_healthy() -> None:
    st = status(cr(), [deployment()], [pod()])
    assert st.state == HEALTHY and st.error is None
    assert st.versions["echo"].ready == 1 and st.versions["echo"].desired == 1
    assert st.versions["echo"].rollout == "complete" and st.observed_generation == 1


def test_an_endpoint_is_healthy_only_when_every_version_is() -> None:
    c = cr("ep", config={"name": "ep", "computeType": "aksendpoint", "versions": {"blue": {}, "green": {}}})
    blue = deployment("blue", service="ep")
    green = deployment("green", service="ep", replicas=2, ready=1)
    pods = [pod("ep-blue-1", version="blue"), pod("ep-green-1", version="green"),
            pod("ep-green-2", version="green", ready=False)]
    st = status(c, [blue, green], pods)
    assert st.state == TRANSITIONING
    assert st.versions["green"].ready == 1 and st.versions["green"].rollout == "1 of 2 replicas ready"
    green["status"]["readyReplicas"] = 2
    assert status(c, [blue, green], pods[:2]).state == HEALTHY


# ------------------------------------------------------------------------------------------------ observedGeneration
def test_a_deployment_the_controller_has_not_observed_is_transitioning_even_when_its_old_replicas_are_ready() -> None:
    st = status(cr(), [deployment(generation=2, observed=1)], [pod()])
    assert st.state == TRANSITIONING
    assert st.versions["echo"].rollout == "waiting for the Deployment controller to observe the new spec"


def test_a_rollout_with_an_old_replica_left_is_transitioning() -> None:
    st = status(cr(), [deployment(updated=1, total=2, ready=2)], [pod(), pod("old", template_hash="0ld")])
    assert st.state == TRANSITIONING and st.versions["echo"].rollout.startswith("rolling out: 1 of 1")


def test_an_accelerator_rollout_says_max_surge_0() -> None:
    dep = deployment(updated=0, ready=1, rollout="maxSurge=0,maxUnavailable=1")
    st = status(cr(), [dep], [pod()])
    assert st.state == TRANSITIONING
    assert st.versions["echo"].rollout == ("rolling out with maxSurge 0 (accelerator pool): 0 of 1 replicas "
                                           "updated, 1 ready")


def test_a_cr_generation_newer_than_the_deployments_is_not_healthy() -> None:
    dep = deployment()
    dep["metadata"]["annotations"]["openscore.io/service-generation"] = "1"
    st = status(cr(generation=2), [dep], [pod()])
    assert st.state == TRANSITIONING and st.observed_generation == 2
    dep["metadata"]["annotations"]["openscore.io/service-generation"] = "2"
    assert status(cr(generation=2), [dep], [pod()]).state == HEALTHY


def test_a_version_whose_deployment_does_not_exist_yet_is_transitioning_and_keeps_the_old_observed_generation() -> None:
    c = cr("ep", generation=3, status={"state": HEALTHY, "observedGeneration": 2},
           config={"name": "ep", "computeType": "aksendpoint", "versions": {"blue": {}, "green": {}}})
    st = status(c, [deployment("blue", service="ep")], [pod("ep-blue-1", version="blue")])
    assert st.state == TRANSITIONING and st.observed_generation == 2
    assert st.versions["green"].rollout == "its Deployment is not created yet"


def test_a_removed_versions_deployment_still_there_keeps_it_transitioning() -> None:
    st = status(cr(), [deployment(), deployment("old")], [pod()])
    assert st.state == TRANSITIONING


# ------------------------------------------------------------------------------------------------ scheduling
def test_an_unschedulable_pod_gives_the_schedulers_message_verbatim() -> None:
    c, dep = big()
    st = status(c, [dep], [pending_pod()], now_s=10)
    assert st.state == UNSCHEDULABLE
    assert st.error == {"code": "PodUnschedulable", "message": SCHEDULER_TEXT, "details": [
        {"code": "PodUnschedulable", "message": SCHEDULER_TEXT, "pod": "big-big-5478c9bcc7-k8t4p"}]}
    assert st.versions["big"].ready == 0 and st.versions["big"].rollout == "0 of 1 replicas ready"


def test_past_the_deadline_unschedulable_is_failed_with_azures_text() -> None:
    c, dep = big()
    assert status(c, [dep], [pending_pod()], now_s=299).state == UNSCHEDULABLE
    st = status(c, [dep], [pending_pod()], now_s=300)
    assert st.state == FAILED and st.error is not None
    assert st.error["code"] == "KubernetesDeploymentFailed"
    assert detail(st) == {"code": "PodUnschedulable", "message": (
        "Couldn't schedule because the kubernetes cluster didn't have available resources after trying for "
        "00:05:00. You can address this error by either adding more nodes, changing the SKU of your nodes or "
        "changing the resource requirements of your service.")}
    assert detail(st, 1)["message"] == SCHEDULER_TEXT  # and why, still verbatim


def test_the_deadline_is_configurable_and_written_as_hh_mm_ss() -> None:
    c, dep = big()
    st = status(c, [dep], [pending_pod()], now_s=5, unschedulable_deadline_s=5)
    assert st.state == FAILED and "after trying for 00:00:05." in detail(st)["message"]
    assert hms(3725) == "01:02:05" and "00:10:00" in unschedulable_text(600)


def test_the_deadline_counts_from_the_oldest_unschedulable_pod() -> None:
    c, dep = big()
    dep["spec"]["replicas"] = 2
    young = pending_pod(since_s=200)
    young["metadata"]["name"] = "big-big-5478c9bcc7-young"
    assert status(c, [dep], [young], now_s=300).state == UNSCHEDULABLE
    assert status(c, [dep], [young, pending_pod()], now_s=300).state == FAILED


def test_the_failed_scheduling_event_is_used_when_the_condition_has_no_message() -> None:
    c, dep = big()
    p = pending_pod(message="")
    ev = {"kind": "Event", "reason": "FailedScheduling", "message": SCHEDULER_TEXT, "type": "Warning",
          "involvedObject": {"kind": "Pod", "name": p["metadata"]["name"], "namespace": "ns"}}
    assert status(c, [dep], [p], now_s=1, events=[ev]).error["message"] == SCHEDULER_TEXT


# ------------------------------------------------------------------------------------------------ failures
def test_init_failing_with_exit_code_3_is_failed_at_its_first_exit_with_the_traceback() -> None:
    term = {"terminated": {"exitCode": 3, "reason": "Error", "message": INIT_LOG,
                           "startedAt": stamp(1), "finishedAt": stamp(5)}}
    st = status(cr(), [deployment(ready=0)], [pod(ready=False, state=term)])
    assert st.state == FAILED
    d = detail(st)
    assert d["code"] == "UserScriptInitFailed" and d["exitCode"] == 3
    assert d["message"].startswith("The entry script's init() failed in pod echo-echo-7c64f9b6cb-grnjz (exit code 3): "
                                   "ValueError: no model file at /var/azureml-app/azureml-models/m/1. The replica's")
    assert "loading the model" in d["message"] and "Worker 10 failed to boot" in d["message"]


def test_init_failing_in_crash_loop_back_off_is_still_user_script_init_failed() -> None:
    waiting = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting failed container="
                           "replica pod=broken-broken-85b999b46c-bwtn6_status-cap2(28dd616e)"}}
    last = {"terminated": {"exitCode": 3, "reason": "Error", "message": INIT_LOG}}
    st = status(cr(), [deployment(ready=0)], [pod(ready=False, state=waiting, last=last, restarts=2)])
    assert detail(st)["code"] == "UserScriptInitFailed" and st.error["code"] == "KubernetesDeploymentFailed"


def test_another_crash_fails_only_once_the_kubelet_backs_off_and_shows_the_log_given() -> None:
    once = {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": stamp(1), "finishedAt": stamp(2)}}
    assert status(cr(), [deployment(ready=0)], [pod(ready=False, state=once)]).state == TRANSITIONING
    loop = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}}
    p = pod(ready=False, state=loop, last={"terminated": {"exitCode": 1, "reason": "Error"}}, restarts=3)
    st = status(cr(), [deployment(ready=0)], [p],
                logs={p["metadata"]["name"]: "booting\nRuntimeError: the GPU driver is missing\n"})
    d = detail(st)
    assert st.state == FAILED and d["code"] == "DeploymentCrashLoopBackOff" and d["exitCode"] == 1
    assert "3 restarts" in d["message"] and "RuntimeError: the GPU driver is missing" in d["message"]


def test_an_image_that_cannot_be_pulled_is_failed_with_the_kubelets_message() -> None:
    for reason in ("ErrImagePull", "ImagePullBackOff"):
        p = pod(ready=False, state={"waiting": {"reason": reason, "message": PULL_TEXT}})
        p["status"]["phase"] = "Pending"
        st = status(cr(), [deployment(ready=0)], [p])
        assert st.state == FAILED and detail(st)["code"] == "ImagePullLoopBackOff"
        assert detail(st)["message"].endswith(f"({reason}): {PULL_TEXT}")


def test_a_transient_pull_error_waits_for_the_kubelets_back_off() -> None:
    refused = ('rpc error: code = Unknown desc = failed to pull and unpack image "127.0.0.1:5000/app:1": failed to '
               'do request: Head "http://127.0.0.1:5000/v2/app/manifests/1": dial tcp 127.0.0.1:5000: connect: '
               'connection refused')
    p = pod(ready=False, state={"waiting": {"reason": "ErrImagePull", "message": refused}})
    assert status(cr(), [deployment(ready=0)], [p]).state == TRANSITIONING
    p = pod(ready=False, state={"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image '
                                            '"127.0.0.1:5000/app:1"'}})
    assert status(cr(), [deployment(ready=0)], [p]).state == FAILED


def test_oom_killed_is_pod_out_of_memory() -> None:
    oom = {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": stamp(1), "finishedAt": stamp(2)}}
    st = status(cr(), [deployment(ready=0)], [pod(ready=False, state=oom)])
    assert st.state == FAILED and detail(st)["code"] == "PodOutOfMemory" and detail(st)["exitCode"] == 137
    loop = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}}
    st = status(cr(), [deployment(ready=0)], [pod(ready=False, state=loop, last=oom, restarts=3)])
    assert detail(st)["code"] == "PodOutOfMemory"


def test_oom_killed_wins_over_the_exit_code_of_a_supervisor_whose_worker_was_killed() -> None:
    # captured: PID 1 exited 3 after its child was OOM-killed; the kubelet still says OOMKilled
    last = {"terminated": {"exitCode": 3, "reason": "OOMKilled", "message": "child -9\n"}}
    loop = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
    st = status(cr(), [deployment(ready=0)], [pod(ready=False, state=loop, last=last, restarts=1)])
    assert detail(st)["code"] == "PodOutOfMemory" and detail(st)["exitCode"] == 3
    assert detail(st)["message"].endswith("The replica's last log lines:\nchild -9")


def test_a_progress_deadline_exceeded_is_failed() -> None:
    dep = deployment(ready=0, conditions=[{"type": "Progressing", "status": "False",
                                           "reason": "ProgressDeadlineExceeded",
                                           "message": 'ReplicaSet "echo-echo-7c" has timed out progressing.'}])
    st = status(cr(), [dep], [pod(ready=False)])
    assert st.state == FAILED and detail(st)["code"] == "DeploymentTimedOut"


def test_a_replaced_or_stopping_pods_crash_is_not_this_rollouts() -> None:
    oom = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    old = pod("old", ready=False, state=oom, template_hash="0ld")
    stopping = pod("stopping", ready=False, state=oom, deleting=True)
    st = status(cr(), [deployment(updated=1, total=1)], [pod(), old, stopping])
    assert st.state == HEALTHY


# ------------------------------------------------------------------------------------------------ unhealthy
def test_a_service_that_was_healthy_and_lost_its_ready_replicas_is_unhealthy() -> None:
    was = cr(status={"state": HEALTHY, "observedGeneration": 1})
    st = status(was, [deployment(ready=0)], [pod(ready=False)])
    assert st.state == UNHEALTHY and st.error == {"code": "ReplicasNotReady",
                                                   "message": "version echo: 0 of 1 replicas ready"}
    # the same objects on a first deployment: still coming up
    assert status(cr(), [deployment(ready=0)], [pod(ready=False)]).state == TRANSITIONING
    # and during a new rollout (a newer generation): transitioning too
    assert status(cr(generation=2, status={"state": HEALTHY, "observedGeneration": 1}),
                  [deployment(ready=0)], [pod(ready=False)]).state == TRANSITIONING


def test_a_ready_pod_the_router_cannot_reach_is_unhealthy() -> None:
    p = pod()
    st = status(cr(), [deployment()], [p], unreachable={p["metadata"]["name"]: "connect: no route to host"})
    assert st.state == UNHEALTHY and "no route to host" in st.error["message"]
    assert st.versions["echo"].ready == 0


# ------------------------------------------------------------------------------------------------ documents
def test_status_document_is_the_crs_status_shape() -> None:
    c = cr(status={"scoringUri": "http://10.96.0.10/api/v1/service/echo/score"})
    doc = status_document(status(c, [deployment()], [pod()]))
    assert doc == {"state": HEALTHY, "reason": None, "error": None, "observedGeneration": 1,
                   "versions": {"echo": {"readyReplicas": 1, "desiredReplicas": 1, "rollout": "complete"}},
                   "scoringUri": "http://10.96.0.10/api/v1/service/echo/score"}
    c2, dep = big()
    doc = status_document(status(c2, [dep], [pending_pod()], now_s=1))
    assert doc["state"] == UNSCHEDULABLE and doc["reason"] == "PodUnschedulable"
    doc = status_document(status(c2, [dep], [pending_pod()], now_s=400))
    assert doc["state"] == FAILED and doc["reason"] == "PodUnschedulable"


def test_wanted_versions_follow_the_config() -> None:
    assert wanted_versions(cr("svc")) == ["svc"]
    assert wanted_versions(cr("svc", config={"name": "svc", "computeType": "AKS", "versionName": "v2"})) == ["v2"]
    ep = cr("ep", config={"computeType": "aksendpoint", "versions": {"a": {}, "b": {}}})
    assert wanted_versions(ep) == ["a", "b"]


def test_the_inputs_are_not_changed() -> None:
    objs = (cr(), [deployment()], [pod()])
    before = copy.deepcopy(objs)
    status(*objs)
    assert objs == before


# ------------------------------------------------------------------------------------------------ logs
@pytest.mark.parametrize(("p", "init", "says"), [
    (pending_pod(), False, f"no logs yet: the pod is Pending, not scheduled: {SCHEDULER_TEXT}"),
    (pod(ready=False, state={"waiting": {"reason": "ContainerCreating"}}), False,
     "no logs yet: the container is waiting: ContainerCreating"),
    (pod(), True, "no previous run: the container has not restarted (init() has not failed in this pod)"),
    (pod(), False, None),
    (pod(ready=False, state={"terminated": {"exitCode": 3}}), True, None),
    (pod(ready=False, state={"waiting": {"reason": "CrashLoopBackOff"}}, last={"terminated": {"exitCode": 3}}),
     True, None),
])
def test_a_pod_without_a_log_says_why(p: dict[str, Any], init: bool, says: str | None) -> None:
    assert no_log_reason(p, init=init) == says
