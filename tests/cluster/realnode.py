"""The test cluster's real node `node-cpu-0`: containerd + kubelet + kube-proxy on this host, pods in network
namespaces on the cni0 bridge (10.244.0.0/24, gateway 10.244.0.1), so pods really run, answer on their IPs, fill
Endpoints and reach the API server through `default/kubernetes` (10.96.0.1:443).

Everything lives under the cluster's folder (containerd's root, state and socket, the kubelet's root, CNI config
and IPAM state, netns mounts), and stop() undoes what starting changed on the host: the containers (killed by
PID through containerd), the mounts under the folder, the KUBE-* iptables chains kube-proxy made, the bridge, and
the sysctls the kubelet, the bridge plugin and kube-proxy set (saved before they start).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from tests.cluster.clusterkit import Cluster

BRIDGE = "cni0"
# who made the bridge: {"folder", "pid"}. A cluster whose process was SIGKILLed (a session ended under it) leaves the
# bridge and this record; the next cluster reads it and undoes the dead one's leftovers instead of refusing to start.
# /run is a tmpfs, cleared at boot like the bridge itself.
BRIDGE_OWNER = Path("/run/openscore-test-bridge.json")
PAUSE_IMAGE = "localhost/pause:3.4"
SYSCTLS = [
    "vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet", "net/bridge/bridge-nf-call-iptables",
    "net/ipv4/conf/all/forwarding", "net/ipv4/conf/default/forwarding",
]
IPTABLES = ["iptables", "ip6tables"]
TABLES = ["nat", "filter", "mangle"]


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def read_sysctls() -> dict[str, str]:
    values = {}
    for name in SYSCTLS:
        path = Path("/proc/sys") / name
        if path.exists():
            values[name] = path.read_text().strip()
    return values


def kube_chains() -> dict[tuple[str, str], set[str]]:
    """{(binary, table): the KUBE-* chains there now}."""
    chains: dict[tuple[str, str], set[str]] = {}
    for binary in IPTABLES:
        if shutil.which(binary) is None:
            continue
        for table in TABLES:
            proc = run(binary, "-t", table, "-S", check=False)
            chains[(binary, table)] = {line.split()[1] for line in proc.stdout.splitlines()
                                       if line.startswith("-N KUBE-")}
    return chains


def bridge_exists() -> bool:
    """In this network namespace (sysfs may show another's)."""
    return run("ip", "link", "show", BRIDGE, check=False).returncode == 0


def clean_up_dead_owner() -> bool:
    """Undo what the bridge's recorded owner left when its process is gone; False when it lives or is unknown."""
    try:
        owner = json.loads(BRIDGE_OWNER.read_text())
        folder, pid = Path(owner["folder"]), int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    try:
        os.kill(pid, 0)
        return False  # alive: a cluster really is running
    except ProcessLookupError:
        pass
    except PermissionError:
        return False
    if not (folder / "host-state.json").exists():
        return False
    from tests.cluster.clusterkit import clean_up_after_kill
    clean_up_after_kill(folder, real_node=True)
    BRIDGE_OWNER.unlink(missing_ok=True)
    return True


def cgroup_mounts() -> list[Path]:
    """The cgroup hierarchies' mount points (v1: one per controller, and runc also uses the v2 `unified` one)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] in (["cgroup"], ["cgroup2"]):
            points.append(Path(left.split()[4]))
    return points


def pause_archive(pause_binary: Path, dest: Path) -> Path:
    """A docker-archive tarball of the pause image (the static binary built with the cluster binaries)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        info = tarfile.TarInfo("pause")
        data = pause_binary.read_bytes()
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [PAUSE_IMAGE], "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(dest, "w") as tar:
        for name, blob in (("layer.tar", layer_bytes), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return dest


class RealNode:
    def __init__(self, cluster: Cluster, name: str, labels: dict[str, str]):
        self.cluster = cluster
        self.name = name
        self.labels = labels
        self.dir = cluster.folder / "node"
        self.socket = self.dir / "containerd" / "containerd.sock"
        self.saved_sysctls: dict[str, str] = {}
        self.chains_before: dict[tuple[str, str], set[str]] | None = None
        self.made_bridge = False
        self.started = False
        # the kubelet's own cgroup root, so that stop() kills this node's pods only, never another cluster's
        self.cgroup_root = "openscore-" + hashlib.sha256(str(self.dir).encode()).hexdigest()[:10]

    # network ---------------------------------------------------------------------------------------------------
    def prepare_network(self) -> None:
        from tests.cluster.clusterkit import BRIDGE_ADDRESS, SERVICE_RANGE, ClusterError
        self.saved_sysctls = read_sysctls()
        self.chains_before = kube_chains()
        if bridge_exists() and clean_up_dead_owner():
            self.saved_sysctls = read_sysctls()  # what the dead cluster's clean-up restored
            self.chains_before = kube_chains()
        if bridge_exists():
            raise ClusterError(f"bridge {BRIDGE} already exists: is another test cluster with a real node running?")
        (self.cluster.folder / "host-state.json").write_text(json.dumps(
            {"sysctls": self.saved_sysctls,
             "chains": {f"{b} {t}": sorted(c) for (b, t), c in self.chains_before.items()}}, indent=1))
        BRIDGE_OWNER.write_text(json.dumps({"folder": str(self.cluster.folder), "pid": os.getpid()}))
        run("ip", "link", "add", BRIDGE, "type", "bridge")
        self.made_bridge = True
        run("ip", "addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        # the host reaches ClusterIPs through the bridge too (kube-proxy's OUTPUT rules DNAT them); without this
        # route they would follow the default route, and a ClusterIP nobody serves would leave the machine
        run("ip", "route", "add", SERVICE_RANGE, "dev", BRIDGE, "src", BRIDGE_ADDRESS)
        # ClusterIP traffic between two pods on the bridge must pass iptables (kube-proxy's DNAT and its undo)
        nf = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
        if nf.exists():
            nf.write_text("1")
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1")

    # start -----------------------------------------------------------------------------------------------------
    def start(self, registry_host: str) -> None:
        from tests.cluster.clusterkit import (
            BRIDGE_ADDRESS,
            FAKE_POD_RANGE,
            POD_RANGE,
            SERVICE_RANGE,
            free_port,
            write_kubeconfig,
        )
        c = self.cluster
        assert c.bins is not None
        self.started = True
        cdir = self.dir / "containerd"
        for sub in ("root", "state", "certs.d", "opt"):
            (cdir / sub).mkdir(parents=True, exist_ok=True)
        cni_conf, ipam = self.dir / "cni" / "net.d", self.dir / "cni" / "ipam"
        cni_conf.mkdir(parents=True, exist_ok=True)
        ipam.mkdir(parents=True, exist_ok=True)
        hosts = cdir / "certs.d" / registry_host
        hosts.mkdir(parents=True, exist_ok=True)
        (hosts / "hosts.toml").write_text(
            f'server = "http://{registry_host}"\n\n[host."http://{registry_host}"]\n'
            f'  capabilities = ["pull", "resolve"]\n  skip_verify = true\n')
        (cni_conf / "10-openscore.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": "openscore", "plugins": [{
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_RANGE, "gateway": BRIDGE_ADDRESS}]],
                         # no default route: pods reach the services, the fake pods' (unreachable) range and
                         # each other, never beyond this machine
                         "routes": [{"dst": SERVICE_RANGE}, {"dst": FAKE_POD_RANGE}], "dataDir": str(ipam)}}],
        }, indent=1))
        (cdir / "config.toml").write_text(f"""\
version = 2
root = "{cdir / 'root'}"
state = "{cdir / 'state'}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{cdir / 'opt'}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_cdi = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{cdir / 'certs.d'}"
""")
        c._spawn("containerd", ["containerd", "--config", str(cdir / "config.toml"), "--log-level", "warn"])
        c._wait(lambda: self.ctr("version", check=False).returncode == 0, 30, "containerd")
        archive = pause_archive(c.bins / "pause", self.dir / "pause.tar")
        self.ctr("images", "import", str(archive))

        kdir = self.dir / "kubelet"
        kdir.mkdir(parents=True, exist_ok=True)
        self._make_cgroup_root()
        kubeconfig = write_kubeconfig(self.dir / "kubelet.kubeconfig", c.api_server, c.pki / "ca.crt",
                                      c.tokens["kubelet"], f"system:node:{self.name}")
        (self.dir / "kubelet-config.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": BRIDGE_ADDRESS, "port": 10250, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": 0,
            "cgroupDriver": "cgroupfs", "cgroupRoot": "/" + self.cgroup_root,
            "failSwapOn": False, "makeIPTablesUtilChains": False,
            "nodeStatusUpdateFrequency": "2s", "serializeImagePulls": False,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(c.pki / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "clusterDomain": "cluster.local", "resolvConf": "/etc/resolv.conf",
            # a busy shared disk must not make the node evict the tests' pods
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        }))
        labels = ",".join(f"{k}={v}" for k, v in self.labels.items())
        c._spawn("kubelet", [
            str(c.bins / "kubelet"), f"--kubeconfig={kubeconfig}", f"--config={self.dir / 'kubelet-config.yaml'}",
            "--container-runtime=remote", f"--container-runtime-endpoint=unix://{self.socket}",
            f"--root-dir={kdir}", f"--cert-dir={kdir / 'pki'}", f"--node-ip={BRIDGE_ADDRESS}",
            f"--hostname-override={self.name}", f"--node-labels={labels}", "--v=1",
        ])
        proxy_kubeconfig = write_kubeconfig(self.dir / "kube-proxy.kubeconfig", c.api_server, c.pki / "ca.crt",
                                            c.tokens["kube-proxy"], "system:kube-proxy")
        c._spawn("kube-proxy", [
            str(c.bins / "kube-proxy"), f"--kubeconfig={proxy_kubeconfig}", "--proxy-mode=iptables",
            f"--cluster-cidr={POD_RANGE}", f"--nodeport-addresses={BRIDGE_ADDRESS}/32",
            f"--hostname-override={self.name}", f"--bind-address={BRIDGE_ADDRESS}",
            f"--healthz-bind-address=127.0.0.1:{free_port()}", f"--metrics-bind-address=127.0.0.1:{free_port()}",
            "--conntrack-max-per-core=0", "--conntrack-min=0", "--conntrack-tcp-timeout-established=0s",
            "--conntrack-tcp-timeout-close-wait=0s", "--v=1",
        ])

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run("ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args, check=check)

    # stop ------------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Undo everything start() and prepare_network() did; each step runs even when an earlier one fails."""
        procs = {p.name: p for p in self.cluster.processes}
        errors: list[str] = []

        def step(what: str, fn: Any) -> None:
            try:
                fn()
            except Exception as exc:
                errors.append(f"{what}: {exc}")

        for name in ("kube-proxy", "kubelet"):
            if name in procs:
                step(f"stop {name}", procs[name].stop)
        if "containerd" in procs and procs["containerd"].alive():
            step("kill the containers", self._kill_containers)
        step("kill what is left in the pods' cgroups", self._kill_pod_processes)
        step("kill our shims", self._kill_shims)
        if "containerd" in procs:
            step("stop containerd", procs["containerd"].stop)
        step("unmount", self._unmount)
        step("remove the pods' cgroups", self._remove_cgroups)
        step("delete KUBE-* chains", self._delete_chains)
        if self.made_bridge:
            step(f"delete {BRIDGE}", lambda: run("ip", "link", "del", BRIDGE))
            self.made_bridge = False
            step("forget the bridge's owner", self._forget_owner)
        step("restore sysctls", self._restore_sysctls)
        if errors:
            with open(self.cluster.journal, "a") as j:
                j.write("real node stop problems: " + "; ".join(errors) + "\n")

    def _kill_containers(self) -> None:
        """SIGKILL every container through containerd (what is left is killed through the cgroups next)."""
        for task in self.ctr("tasks", "ls", "-q", check=False).stdout.split():
            self.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", task, check=False)

    def _make_cgroup_root(self) -> None:
        for mount in cgroup_mounts():
            root = mount / self.cgroup_root
            root.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):  # a new cpuset takes no process until these are set
                if (mount / name).exists() and not (root / name).read_text().strip():
                    (root / name).write_text((mount / name).read_text())

    def _pod_cgroups(self) -> list[Path]:
        """This node's cgroup trees (its root in every v1 hierarchy, kubepods under it), deepest first."""
        found: list[Path] = []
        for mount in cgroup_mounts():
            top = mount / self.cgroup_root
            if top.is_dir():
                found += [Path(d) for d, _, _ in os.walk(top)]
        return sorted(found, key=lambda p: len(p.parts), reverse=True)

    def _kill_pod_processes(self) -> None:
        """Containers whose shim or containerd died first (a signal to the whole group): killed by PID."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pids = set()
            for cg in self._pod_cgroups():
                try:
                    pids |= {int(x) for x in (cg / "cgroup.procs").read_text().split()}
                except OSError:
                    pass
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"processes still in the pods' cgroups: {sorted(pids)}")

    def _kill_shims(self) -> None:
        """Shims outlive containerd by design; ours are the ones started with our containerd's socket."""
        marker = str(self.socket).encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-runc-v2") and marker in argv:
                try:
                    os.kill(int(proc.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _remove_cgroups(self) -> None:
        """rmdir deepest first; a cgroup the kernel is still releasing answers EBUSY for a moment: retry."""
        deadline = time.monotonic() + 10
        while True:
            failed = []
            for cg in self._pod_cgroups():
                try:
                    cg.rmdir()
                except OSError as exc:
                    failed.append(f"{cg}: {exc.strerror}")
            if not failed:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("cannot remove " + "; ".join(failed[:3]))
            time.sleep(0.2)

    def _unmount(self) -> None:
        root = str(self.dir)
        points = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == root or point.startswith(root + "/"):
                points.append(point)
        for point in sorted(points, key=len, reverse=True):
            if run("umount", point, check=False).returncode != 0:
                run("umount", "-l", point, check=False)

    def _delete_chains(self) -> None:
        before = self.chains_before or {}
        for (binary, table), chains in kube_chains().items():
            new = chains - before.get((binary, table), set())
            if not new:
                continue
            rules = run(binary, "-t", table, "-S").stdout.splitlines()
            for rule in rules:  # the jumps into our chains from the built-in ones
                parts = shlex.split(rule)
                if parts[:1] == ["-A"] and parts[1] not in new and "-j" in parts \
                        and parts[parts.index("-j") + 1] in new:
                    run(binary, "-t", table, "-D", *parts[1:], check=False)
            for chain in new:
                run(binary, "-t", table, "-F", chain, check=False)
            for chain in new:
                run(binary, "-t", table, "-X", chain, check=False)

    def leftovers(self) -> list[str]:
        """What stop() should have undone and did not."""
        left = []
        if self.made_bridge or bridge_exists():
            left.append(f"bridge {BRIDGE}")
        now = read_sysctls()
        left += [f"sysctl {k}={now.get(k)} (was {v})" for k, v in self.saved_sysctls.items() if now.get(k) != v]
        before = self.chains_before or {}
        for key, chains in kube_chains().items():
            left += [f"{key[0]} -t {key[1]} chain {c}" for c in sorted(chains - before.get(key, set()))]
        root = str(self.dir)
        left += [f"mount {line.split()[4]}" for line in Path("/proc/self/mountinfo").read_text().splitlines()
                 if line.split()[4].startswith(root + "/")]
        left += [f"cgroup {cg}" for cg in self._pod_cgroups()]
        marker = str(self.socket).encode()
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes().split(b"\0"):
                    left.append(f"process {proc.name} using {self.socket}")
            except OSError:
                pass
        return left

    def _forget_owner(self) -> None:
        try:
            if json.loads(BRIDGE_OWNER.read_text()).get("folder") == str(self.cluster.folder):
                BRIDGE_OWNER.unlink()
        except (OSError, ValueError):
            pass

    def _restore_sysctls(self) -> None:
        for name, value in self.saved_sysctls.items():
            path = Path("/proc/sys") / name
            if path.exists() and path.read_text().strip() != value:
                path.write_text(value)
