"""A real Kubernetes v1.20 cluster for tests, run as this process's children and stopped by PID: etcd,
kube-apiserver, kube-scheduler, kube-controller-manager, a fake kubelet for the GPU/FPGA pools and, with
`real_node=True`, a real node (containerd + kubelet + kube-proxy on the cni0 bridge, see realnode.py) and a local
registry. The binaries come from tests/cluster/build-kubernetes.sh.

CLI: `python -m tests.cluster.clusterkit up --dir DIR [--real-node]` runs in the foreground until SIGTERM and
writes DIR/cluster.json and DIR/READY; `down --dir DIR` sends SIGTERM to it.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.pki import ensure_pki

ROOT = Path(__file__).resolve().parents[2]
SERVICE_RANGE = "10.96.0.0/24"
POD_RANGE = "10.244.0.0/24"
BRIDGE_ADDRESS = "10.244.0.1"
FAKE_POD_RANGE = "10.244.1.0/24"  # fakekubelet.FAKE_POD_RANGE: routed to `unreachable` while the cluster runs
REAL_NODE = "node-cpu-0"
CONTROLLERS = "*,-nodeipam,-cloud-node-lifecycle,-service,-route"


def fake_node(name: str, pool: str, extra: dict[str, str], resource: str) -> dict[str, Any]:
    return {
        "name": name,
        "labels": {"openscore.io/pool": pool, "agentpool": pool, **extra},
        "taints": [{"key": "sku", "value": pool, "effect": "NoSchedule"}],
        "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110", "ephemeral-storage": "100Gi", resource: "1"},
    }


FAKE_NODES = [
    fake_node("gpu-0", "gpu", {"accelerator": "nvidia"}, "nvidia.com/gpu"),
    fake_node("gpu-1", "gpu", {"accelerator": "nvidia"}, "nvidia.com/gpu"),
    fake_node("fpga-0", "fpga", {}, "xilinx.com/fpga-u250"),
]
REAL_NODE_LABELS = {"openscore.io/pool": "cpu", "agentpool": "cpu"}


class ClusterError(RuntimeError):
    pass


def kube_bin_dir() -> Path | None:
    """The folder build-kubernetes.sh filled ($OPENSCORE_KUBE_BIN overrides), or None when it is missing."""
    if os.environ.get("OPENSCORE_KUBE_BIN"):
        return Path(os.environ["OPENSCORE_KUBE_BIN"])
    root = Path(os.environ.get("OPENSCORE_KUBE_CACHE") or
                Path(os.environ.get("OPENSCORE_CACHE", "/var/cache/openscore")) / "kubernetes")
    for folder in sorted(glob.glob(str(root / "*" / "bin")), reverse=True):
        if all((Path(folder) / b).exists() for b in ("kube-apiserver", "kube-scheduler", "kube-controller-manager")):
            return Path(folder)
    return None


def missing_tools(real_node: bool) -> list[str]:
    """What this machine lacks to start the cluster (empty when it can)."""
    missing = []
    bins = kube_bin_dir()
    needed = ["kube-apiserver", "kube-scheduler", "kube-controller-manager"]
    if real_node:
        needed += ["kubelet", "kube-proxy", "pause"]
    if bins is None:
        missing.append("kubernetes binaries (tests/cluster/build-kubernetes.sh)")
    else:
        missing += [str(bins / b) for b in needed if not (bins / b).exists()]
    tools = ["etcd", "openssl"] + (["containerd", "runc", "ctr", "iptables", "ip", "docker-registry", "skopeo"]
                                   if real_node else [])
    missing += [t for t in tools if shutil.which(t) is None]
    if real_node and not Path("/usr/lib/cni/bridge").exists():
        missing.append("/usr/lib/cni/bridge (containernetworking-plugins)")
    return missing


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Children get SIGTERM if the cluster's process dies without stopping them (PR_SET_PDEATHSIG)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def write_kubeconfig(path: Path, server: str, ca: Path, token: str, user: str) -> Path:
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "openscore-test",
        "clusters": [{"name": "openscore-test", "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode()}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "openscore-test", "context": {"cluster": "openscore-test", "user": user}}],
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


class Process:
    """One child process with its log file; stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, argv: list[str], log_dir: Path, journal: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent, cwd=ROOT, env=env, start_new_session=True)
        with open(journal, "a") as j:
            j.write(f"{time.strftime('%H:%M:%S')} started {name} pid {self.proc.pid}: {' '.join(argv)}\n")
        self.journal = journal
        self.stopped = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace: float = 10) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        with open(self.journal, "a") as j:
            j.write(f"{time.strftime('%H:%M:%S')} stopped {self.name} pid {self.proc.pid} "
                    f"(exit {self.proc.returncode})\n")


class Cluster:
    """`with Cluster(folder) as c:` a running control plane with the fake GPU/FPGA nodes (and the real node and a
    registry with real_node=True). `c.kubeconfig` is an admin kubeconfig; `c.api_server` its URL."""

    def __init__(self, folder: Path, *, real_node: bool = False, api_port: int | None = None,
                 registry_port: int | None = None):
        self.folder = Path(folder).resolve()
        self.real_node = real_node
        self.bind_address = BRIDGE_ADDRESS if real_node else "127.0.0.1"
        self.api_port = api_port or free_port()
        self.api_server = f"https://{self.bind_address}:{self.api_port}"
        self.kubeconfig = self.folder / "kubeconfig"
        self.logs = self.folder / "logs"
        self.journal = self.folder / "processes.log"
        self.processes: list[Process] = []
        self.started: list[Process] = []  # everything ever started, for leftovers()
        self.node: Any = None  # realnode.RealNode when real_node
        self.registry: Any = None  # tests.images.registrykit.LocalRegistry when real_node
        self.made_routes: list[str] = []  # `unreachable` routes this cluster added (and deletes)
        self.left_routes: list[str] = []
        self.timings: dict[str, float] = {}
        self.bins = kube_bin_dir()
        self.registry_port = registry_port

    # start -----------------------------------------------------------------------------------------------------
    def start(self, timeout: float = 120) -> Cluster:
        missing = missing_tools(self.real_node)
        if missing:
            raise ClusterError("cannot start the test cluster, missing: " + ", ".join(missing))
        t0 = time.monotonic()
        self.started_at = time.time()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        try:
            self._start(t0, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, t0: float, timeout: float) -> None:
        self.pki = ensure_pki(self.folder / "pki")
        self.tokens = self._tokens()
        self._route_fake_pods()
        if self.real_node:
            from tests.cluster.realnode import RealNode
            self.node = RealNode(self, REAL_NODE, REAL_NODE_LABELS)
            self.node.prepare_network()  # the bridge first: the API server binds its address
        self._start_etcd()
        self._start_apiserver()
        self._wait_ready(timeout)
        self.timings["api_ready_s"] = time.monotonic() - t0
        ca = self.pki / "ca.crt"
        write_kubeconfig(self.kubeconfig, self.api_server, ca, self.tokens["admin"], "admin")
        sched = write_kubeconfig(self.folder / "scheduler.kubeconfig", self.api_server, ca,
                                 self.tokens["scheduler"], "system:kube-scheduler")
        cm = write_kubeconfig(self.folder / "controller-manager.kubeconfig", self.api_server, ca,
                              self.tokens["controller-manager"], "system:kube-controller-manager")
        fk = write_kubeconfig(self.folder / "fake-kubelet.kubeconfig", self.api_server, ca,
                              self.tokens["fake-kubelet"], "openscore-fake-kubelet")
        b = self.bins
        assert b is not None
        common = ["--bind-address=127.0.0.1", "--port=0", "--secure-port=0", "--leader-elect=false", "--v=1"]
        self._spawn("kube-scheduler", [str(b / "kube-scheduler"), f"--kubeconfig={sched}", *common])
        self._spawn("kube-controller-manager", [
            str(b / "kube-controller-manager"), f"--kubeconfig={cm}", *common,
            f"--service-account-private-key-file={self.pki / 'sa.key'}", f"--root-ca-file={ca}",
            f"--controllers={CONTROLLERS}", "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={SERVICE_RANGE}"])
        nodes_json = self.folder / "fake-nodes.json"
        nodes_json.write_text(json.dumps(FAKE_NODES))
        self._spawn("fake-kubelet", [sys.executable, "-m", "tests.cluster.fakekubelet", str(fk), str(nodes_json)])
        self._wait(lambda: self._get("/api/v1/namespaces/default/serviceaccounts/default") is not None,
                   timeout, "the default ServiceAccount (controller-manager)")
        self.timings["control_plane_ready_s"] = time.monotonic() - t0
        self._wait(lambda: all(self.node_ready(n["name"]) for n in FAKE_NODES), timeout, "the fake nodes Ready")
        self.timings["fake_nodes_ready_s"] = time.monotonic() - t0
        if self.real_node:
            from tests.images.registrykit import LocalRegistry
            self.registry = LocalRegistry(self.folder / "registry")
            if self.registry_port:  # a long-running cluster keeps its registry's address across restarts
                self.registry.port = self.registry_port
                self.registry.host = f"127.0.0.1:{self.registry_port}"
            self.registry.start()
            self.node.start(self.registry.host)
            self._wait(lambda: self.node_ready(REAL_NODE), timeout, f"node {REAL_NODE} Ready")
            self.timings["real_node_ready_s"] = time.monotonic() - t0

    def _tokens(self) -> dict[str, str]:
        """The API server's token file (created once; a restart keeps everyone's kubeconfig valid)."""
        path = self.folder / "pki" / "tokens.json"
        names = ["admin", "scheduler", "controller-manager", "fake-kubelet", "kubelet", "kube-proxy"]
        tokens = json.loads(path.read_text()) if path.exists() else {}
        for n in names:
            tokens.setdefault(n, secrets.token_hex(24))
        path.write_text(json.dumps(tokens))
        path.chmod(0o600)
        users = {
            "admin": ("admin", "system:masters"),
            "scheduler": ("system:kube-scheduler", ""),
            "controller-manager": ("system:kube-controller-manager", ""),
            "fake-kubelet": ("openscore-fake-kubelet", "system:masters"),
            "kubelet": (f"system:node:{REAL_NODE}", "system:nodes"),
            "kube-proxy": ("system:kube-proxy", ""),
        }
        lines = [f'{tokens[n]},{user},{n},"{group}"' if group else f"{tokens[n]},{user},{n}"
                 for n, (user, group) in users.items()]
        csv = self.folder / "pki" / "tokens.csv"
        csv.write_text("\n".join(lines) + "\n")
        csv.chmod(0o600)
        return tokens

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        proc = Process(name, argv, self.logs, self.journal, env)
        self.processes.append(proc)
        self.started.append(proc)
        return proc

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn("etcd", [
            "etcd", "--name=openscore-test", f"--data-dir={self.folder / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=openscore-test=http://127.0.0.1:{peer}", "--log-level=warn",
        ])
        self._wait(lambda: self._etcd_healthy(), 30, "etcd")

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as r:
                return json.loads(r.read()).get("health") == "true"
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def _start_apiserver(self) -> None:
        p = self.pki
        assert self.bins is not None
        # with a real node, the API server advertises the bridge address so `default/kubernetes` (10.96.0.1:443)
        # leads pods to it; without one, nothing would reach a loopback endpoint anyway
        reconciler = "lease" if self.real_node else "none"
        self._spawn("kube-apiserver", [
            str(self.bins / "kube-apiserver"), f"--etcd-servers={self.etcd_url}",
            f"--bind-address={self.bind_address}", f"--advertise-address={self.bind_address}",
            f"--secure-port={self.api_port}", "--insecure-port=0",
            f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}", f"--token-auth-file={p / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            f"--service-cluster-ip-range={SERVICE_RANGE}", f"--endpoint-reconciler-type={reconciler}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={p / 'sa.pub'}", f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP", f"--cert-dir={self.folder / 'apiserver-certs'}",
            "--profiling=false", "--v=1",
        ])

    # API helpers -----------------------------------------------------------------------------------------------
    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.pki / "ca.crt"))

    def _get(self, path: str) -> dict[str, Any] | None:
        req = urllib.request.Request(self.api_server + path,
                                     headers={"Authorization": f"Bearer {self.tokens['admin']}"})
        try:
            with urllib.request.urlopen(req, timeout=5, context=self._ssl()) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def _wait_ready(self, timeout: float) -> None:
        def ready() -> bool:
            try:
                req = urllib.request.Request(self.api_server + "/readyz",
                                             headers={"Authorization": f"Bearer {self.tokens['admin']}"})
                with urllib.request.urlopen(req, timeout=2, context=self._ssl()) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False
        self._wait(ready, timeout, "kube-apiserver /readyz")

    def node_ready(self, name: str) -> bool:
        """Ready, by a heartbeat of this start (a restarted cluster's etcd still says Ready from before)."""
        try:
            node = self._get(f"/api/v1/nodes/{name}")
        except (urllib.error.URLError, OSError):
            return False
        conditions = (node or {}).get("status", {}).get("conditions", [])
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at - 1))
        return any(c["type"] == "Ready" and c["status"] == "True" and c.get("lastHeartbeatTime", "") >= since
                   for c in conditions)

    def _wait(self, check: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.processes:
                if not proc.alive():
                    raise ClusterError(f"{proc.name} exited ({proc.proc.returncode}) while waiting for {what}:\n"
                                       f"{proc.tail()}")
            try:
                if check():
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise ClusterError(f"timed out after {timeout} s waiting for {what}")

    def kubectl(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        """kubectl against this cluster as admin; output as text."""
        proc = subprocess.run(["kubectl", f"--kubeconfig={self.kubeconfig}", *args], capture_output=True,
                              text=True, input=input, timeout=120)
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def _route_fake_pods(self) -> None:
        """Fake pods' IPs route nowhere: a connection fails at once instead of leaving the machine. (Without a
        real node the service range does too; with one, realnode routes it to the bridge.)"""
        for dest in self._unreachable():
            proc = subprocess.run(["ip", "route", "add", "unreachable", dest], capture_output=True, text=True)
            if proc.returncode != 0 and "File exists" not in proc.stderr:
                raise ClusterError(f"ip route add unreachable {dest}: {proc.stderr.strip()}")
            if proc.returncode == 0:
                self.made_routes.append(dest)

    def _unreachable(self) -> list[str]:
        return [FAKE_POD_RANGE] if self.real_node else [FAKE_POD_RANGE, SERVICE_RANGE]

    # stop ------------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything this cluster started (by PID), newest first, and undo its host changes."""
        if self.node is not None:
            self.node.stop()  # kubelet, kube-proxy, containerd, and their mounts, chains, bridge, sysctls
        if self.registry is not None:
            self.registry.stop()
            self.registry = None
        for proc in reversed(self.processes):
            proc.stop(grace=5 if proc.name == "kube-apiserver" else 10)  # its watches keep it for its whole grace
        self.processes = []
        for dest in self.made_routes:
            subprocess.run(["ip", "route", "del", "unreachable", dest], capture_output=True)
        self.left_routes, self.made_routes = self.made_routes, []

    def leftovers(self) -> list[str]:
        """What a stopped cluster left on the host (empty when stop() undid everything)."""
        left = [f"{p.name} (pid {p.pid}) still running" for p in self.started if p.alive()]
        if self.node is not None:
            left += self.node.leftovers()
        for dest in self.left_routes:
            if "unreachable" in subprocess.run(["ip", "route", "show", dest], capture_output=True, text=True).stdout:
                left.append(f"route unreachable {dest}")
        if self.real_node and SERVICE_RANGE in subprocess.run(["ip", "route", "show", SERVICE_RANGE],
                                                              capture_output=True, text=True).stdout:
            left.append(f"route {SERVICE_RANGE}")
        return left

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        return {
            "kubeconfig": str(self.kubeconfig), "api_server": self.api_server,
            "registry": self.registry.host if self.registry is not None else None,
            "real_node": REAL_NODE if self.real_node else None,
            "fake_nodes": [n["name"] for n in FAKE_NODES],
            "pids": {p.name: p.pid for p in self.processes},
            "timings": {k: round(v, 1) for k, v in self.timings.items()},
        }


# CLI -------------------------------------------------------------------------------------------------------------
def up(folder: Path, real_node: bool, api_port: int | None, registry_port: int | None,
       extra: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "READY").unlink(missing_ok=True)
    info_path = folder / "cluster.json"
    previous = json.loads(info_path.read_text()) if info_path.exists() else {}
    if api_port is None and previous.get("api_server"):
        # the folder's etcd keeps default/kubernetes' endpoints, and the API server's lease reconciler (1.20)
        # does not correct their port: pods would dial the previous one. Keep it when it is free.
        old_port = int(previous["api_server"].rsplit(":", 1)[1])
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", old_port))
                api_port = old_port
            except OSError:
                print(f"port {old_port} of the previous run is taken: pods may not reach the API server",
                      flush=True)
    cluster = Cluster(folder, real_node=real_node, api_port=api_port, registry_port=registry_port)
    stopping = False

    def on_term(*_: object) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        cluster.start()
        up_parts = ["control-plane", "fake-nodes"] + (["real-node", "registry"] if real_node else [])
        info = {**{k: previous[k] for k in ("base_image",) if k in previous}, **extra,
                "generation": previous.get("generation", 0) + 1, "pid": os.getpid(),
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "up": up_parts,
                **cluster.describe()}
        info_path.write_text(json.dumps(info, indent=2) + "\n")
        (folder / "READY").write_text(str(info["generation"]) + "\n")
        print(json.dumps(info, indent=2), flush=True)
        while True:  # watch the children: one dying is announced (READY removed) and ends the cluster
            time.sleep(2)
            dead = [p for p in cluster.processes if not p.alive()]
            if dead:
                print(f"{dead[0].name} exited ({dead[0].proc.returncode}):\n{dead[0].tail()}", flush=True)
                break
    except KeyboardInterrupt:
        pass
    finally:
        (folder / "READY").unlink(missing_ok=True)
        cluster.stop()
        print("cluster stopped", flush=True)


def down(folder: Path, timeout: float = 120) -> None:
    info = json.loads((folder / "cluster.json").read_text())
    pid = info["pid"]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        # READY still there means stop() never ran (it removes READY first): the process was SIGKILLed
        if (folder / "READY").exists():
            clean_up_after_kill(folder, real_node="real-node" in info.get("up", []))
            (folder / "READY").unlink(missing_ok=True)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise SystemExit(f"cluster process {pid} still running after {timeout} s")


def clean_up_after_kill(folder: Path, real_node: bool) -> None:
    """A cluster process killed by SIGKILL (a session ended under it) never ran stop(): its bridge, KUBE-* chains,
    sysctls, unreachable routes, mounts and pods' cgroups stay, and the next real-node cluster refuses to start.
    host-state.json holds what to restore. Only one real-node cluster can run at a time (one bridge name), so
    what is left is this folder's."""
    state = folder / "host-state.json"
    cluster = Cluster(folder, real_node=real_node)
    for dest in cluster._unreachable():
        if "unreachable" in subprocess.run(["ip", "route", "show", dest], capture_output=True, text=True).stdout:
            cluster.made_routes.append(dest)
    if cluster.real_node and state.exists():
        from tests.cluster.realnode import RealNode, bridge_exists
        saved = json.loads(state.read_text())
        node = RealNode(cluster, REAL_NODE, REAL_NODE_LABELS)
        node.saved_sysctls = saved["sysctls"]
        node.chains_before = {tuple(key.split(" ", 1)): set(chains)
                              for key, chains in saved["chains"].items()}
        node.made_bridge = bridge_exists()
        cluster.node = node
    cluster.stop()
    left = cluster.leftovers()
    print("cleaned up after a killed cluster" + (": still left " + ", ".join(left) if left else ""), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.clusterkit")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start a cluster and keep it running until SIGTERM")
    p_up.add_argument("--dir", type=Path, required=True)
    p_up.add_argument("--real-node", action="store_true", help="also containerd+kubelet+kube-proxy and a registry")
    p_up.add_argument("--api-port", type=int)
    p_up.add_argument("--registry-port", type=int)
    p_up.add_argument("--base-image", help="recorded in cluster.json as base_image")
    p_down = sub.add_parser("down", help="stop the cluster started with `up --dir`")
    p_down.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "up":
        extra = {"base_image": args.base_image} if args.base_image else {}
        up(args.dir, args.real_node, args.api_port, args.registry_port, extra)
    else:
        down(args.dir)


if __name__ == "__main__":
    main()
