"""A fake kubelet for the test cluster's GPU/FPGA pools: this machine has neither, but the real scheduler must see
nodes with `nvidia.com/gpu` / FPGA capacity and their taints, and a deploy must see its pods Running and Ready.

It registers its Nodes (labels, taints, capacity), keeps them Ready (a Lease renewed every 10 s, status every 30 s),
marks each pod bound to one of them Running+Ready with a fake IP in FAKE_POD_RANGE (the cluster routes that range
to `unreachable`, so nothing ever answers there and nothing leaves the machine), and finishes graceful deletes as
a kubelet does. Run as a child process: `python -m tests.cluster.fakekubelet KUBECONFIG NODES_JSON`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import signal
import sys
import threading
import time
from typing import Any

from lightkube import ALL_NS, ApiError, Client, KubeConfig
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node, Pod
from lightkube.types import PatchType

FAKE_POD_RANGE = ipaddress.ip_network("10.244.1.0/24")
KUBELET_VERSION = "v1.20.2"
MANAGER = "openscore-fake-kubelet"
log = logging.getLogger("fakekubelet")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeKubelet:
    """`nodes`: [{"name", "labels", "taints", "capacity"}] (as clusterkit.FAKE_NODES)."""

    def __init__(self, client: Client, nodes: list[dict[str, Any]]):
        self.client = client
        self.nodes = {n["name"]: n for n in nodes}
        hosts = list(FAKE_POD_RANGE.hosts())
        # the first addresses are the nodes' own InternalIPs, the rest are handed to pods
        self.node_ip = {name: str(hosts[i]) for i, name in enumerate(self.nodes)}
        self.free_ips = [str(ip) for ip in hosts[len(self.nodes) + 8:]]
        self.ip_of: dict[str, str] = {}  # pod uid -> ip
        self.stopping = threading.Event()

    # nodes -----------------------------------------------------------------------------------------------------
    def register(self) -> None:
        for name, spec in self.nodes.items():
            self.client.patch(Node, name, {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": {
                    **spec["labels"], "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64", "openscore.io/fake-node": "true"}},
                "spec": {"taints": spec["taints"]},
            }, patch_type=PatchType.APPLY, field_manager=MANAGER, force=True)
            self.report_status(name)
            self.renew_lease(name)

    def report_status(self, name: str) -> None:
        spec = self.nodes[name]
        t = now()
        conditions = [
            {"type": kind, "status": "False", "reason": reason, "message": "fake kubelet",
             "lastHeartbeatTime": t, "lastTransitionTime": t}
            for kind, reason in (("MemoryPressure", "KubeletHasSufficientMemory"),
                                 ("DiskPressure", "KubeletHasNoDiskPressure"),
                                 ("PIDPressure", "KubeletHasSufficientPID"))
        ] + [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "fake kubelet ready",
              "lastHeartbeatTime": t, "lastTransitionTime": t}]
        self.client.patch(Node.Status, name, {"status": {
            "capacity": spec["capacity"], "allocatable": spec["capacity"], "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": self.node_ip[name]}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                         "operatingSystem": "linux", "architecture": "amd64", "containerRuntimeVersion": "fake://1",
                         "osImage": "openscore fake node", "kernelVersion": "", "machineID": name,
                         "systemUUID": name, "bootID": name},
        }}, patch_type=PatchType.STRATEGIC)

    def renew_lease(self, name: str) -> None:
        self.client.patch(Lease, name, {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": "kube-node-lease"},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now_micro()},
        }, namespace="kube-node-lease", patch_type=PatchType.APPLY, field_manager=MANAGER, force=True)

    def heartbeat(self) -> None:
        beats = 0
        while not self.stopping.wait(10):
            beats += 1
            for name in self.nodes:
                try:
                    self.renew_lease(name)
                    if beats % 3 == 0:
                        self.report_status(name)
                except Exception as exc:  # the API server restarting: try again on the next beat
                    log.warning("heartbeat for %s failed: %s", name, exc)

    # pods ------------------------------------------------------------------------------------------------------
    def on_pod(self, event: str, pod: Pod) -> None:
        meta, spec, status = pod.metadata, pod.spec, pod.status
        if spec is None or spec.nodeName not in self.nodes or meta is None:
            return
        uid = meta.uid or ""
        if event == "DELETED":
            self.release(uid)
            return
        if meta.deletionTimestamp is not None:
            try:  # the kubelet's final delete once the containers are gone (here: at once)
                self.client.delete(Pod, meta.name or "", namespace=meta.namespace, grace_period=0)
            except ApiError as exc:
                if exc.status.code != 404:
                    raise
            self.release(uid)
            return
        if status is not None and status.podIP:
            self.ip_of.setdefault(uid, status.podIP)
            if status.podIP in self.free_ips:
                self.free_ips.remove(status.podIP)
            if status.phase == "Running":
                return
        self.mark_running(pod)

    def release(self, uid: str) -> None:
        ip = self.ip_of.pop(uid, None)
        if ip is not None:
            self.free_ips.append(ip)

    def mark_running(self, pod: Pod) -> None:
        meta, spec = pod.metadata, pod.spec
        assert meta is not None and spec is not None
        uid = meta.uid or ""
        ip = self.ip_of.get(uid) or self.free_ips.pop(0)
        self.ip_of[uid] = ip
        t = now()
        containers = [{
            "name": c.name, "ready": True, "started": True, "restartCount": 0, "image": c.image or "",
            "imageID": f"fake://{c.image}", "containerID": f"fake://{uid}/{c.name}",
            "state": {"running": {"startedAt": t}},
        } for c in spec.containers]
        inits = [{
            "name": c.name, "ready": True, "restartCount": 0, "image": c.image or "", "imageID": f"fake://{c.image}",
            "containerID": f"fake://{uid}/{c.name}",
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": t, "finishedAt": t}},
        } for c in spec.initContainers or []]
        conditions = [{"type": kind, "status": "True", "lastProbeTime": None, "lastTransitionTime": t}
                      for kind in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]
        body = {"status": {
            "phase": "Running", "conditions": conditions, "hostIP": self.node_ip[spec.nodeName or ""],
            "podIP": ip, "podIPs": [{"ip": ip}], "startTime": t, "containerStatuses": containers,
            "initContainerStatuses": inits,  # qosClass: the API server set it at creation
        }}
        try:
            self.client.patch(Pod.Status, meta.name or "", body, namespace=meta.namespace,
                              patch_type=PatchType.MERGE)
        except ApiError as exc:
            if exc.status.code != 404:
                raise

    def run(self) -> None:
        threading.Thread(target=self.heartbeat, name="heartbeat", daemon=True).start()
        while not self.stopping.is_set():
            try:  # a watch without a resourceVersion first replays every existing pod as ADDED
                for event, pod in self.client.watch(Pod, namespace=ALL_NS):
                    self.on_pod(event, pod)
            except Exception as exc:  # the API server restarting, or a 410: watch again
                log.warning("pod watch ended: %s", exc)
                self.stopping.wait(1)


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    kubeconfig, nodes_json = argv
    client = Client(KubeConfig.from_file(kubeconfig), field_manager=MANAGER)
    kubelet = FakeKubelet(client, json.loads(open(nodes_json).read()))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    for _ in range(60):
        try:
            kubelet.register()
            break
        except Exception as exc:
            log.warning("registering nodes failed, retrying: %s", exc)
            time.sleep(1)
    else:
        raise SystemExit("could not register the fake nodes")
    log.info("fake nodes registered: %s", ", ".join(kubelet.nodes))
    kubelet.run()


if __name__ == "__main__":
    main(sys.argv[1:])
