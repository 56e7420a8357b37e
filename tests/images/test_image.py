"""The runtime image (images/Dockerfile, built by images/build.sh) run with podman, as Azure runs its containers.

Reuses the image OPENSCORE_TEST_IMAGE (default localhost/openscore:test) when it exists, else builds it (a few
minutes: a Debian base with mmdebstrap, the first time, then wheels and `buildah bud`); OPENSCORE_TEST_REBUILD=1
rebuilds it from this checkout. Skips, saying why, where podman/buildah are not installed or no base image can
be made. Containers publish port 5001 on 127.0.0.1 only and are removed at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from importlib import metadata
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("OPENSCORE_TEST_IMAGE", "localhost/openscore:test")
# what works without a systemd/cgroup-delegating host (see images/build.sh); harmless elsewhere
RUN_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]
ROW = [0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.020, -0.018]
JSON = {"Content-Type": "application/json"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _podman(*args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=check)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (Debian: apt-get install podman buildah runc mmdebstrap)")
    info = _podman("info", timeout=60)
    if info.returncode != 0:
        pytest.skip(f"podman cannot run here: {info.stderr.strip()[-500:]}")
    if _podman("image", "exists", IMAGE).returncode == 0 and os.environ.get("OPENSCORE_TEST_REBUILD") != "1":
        return IMAGE
    if shutil.which("buildah") is None:
        pytest.skip(f"no image {IMAGE} and buildah is not installed to build it (apt-get install buildah)")
    # the sample's model.pkl is made by this Python: the image gets the same scikit-learn and joblib
    pins = " ".join(f"{name}=={metadata.version(name)}" for name in ("scikit-learn", "joblib"))
    env = {k: v for k, v in os.environ.items() if k != "OPENSCORE_LOCK"}  # a caller's flock must not deadlock us
    env.update(TAG=IMAGE, EXTRA_PACKAGES=pins, PYTHON=sys.executable)
    build = subprocess.run(["bash", str(ROOT / "images" / "build.sh")], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=1500)
    if build.returncode == 4:
        pytest.skip(f"no base image can be made here: {build.stderr.strip()[-800:]}")
    assert build.returncode == 0, (f"images/build.sh failed ({build.returncode}):\n"
                                   f"{build.stdout[-3000:]}\n{build.stderr[-3000:]}")
    return IMAGE


@pytest.fixture(scope="module")
def sklearn_app(tmp_path_factory) -> Path:
    """The sklearn_json sample as Azure mounts it: score.py + azureml-models/, readable by the image's user."""
    out = tmp_path_factory.mktemp("image-samples")
    subprocess.run([sys.executable, str(ROOT / "entry_scripts" / "make_models.py"), "sklearn_json", "--out", str(out)],
                   check=True, capture_output=True, timeout=120)
    app = out / "sklearn_json"
    shutil.copy(ROOT / "entry_scripts" / "sklearn_json" / "score.py", app / "score.py")
    _world_readable(app)
    return app


def _world_readable(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


class Container:
    """One detached `podman run` of the image, port 5001 published on 127.0.0.1."""

    def __init__(self, image: str, app: Path, env: dict[str, str], mounts: tuple[str, ...] = ()):
        self.name = f"openscore-test-{os.getpid()}-{time.monotonic_ns()}"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["run", "-d", "--name", self.name, *RUN_FLAGS, "-p", f"127.0.0.1:{self.port}:5001",
                "-v", f"{app}:/var/azureml-app:ro"]
        for m in mounts:
            args += ["-v", m]
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        started = _podman(*args, image)
        assert started.returncode == 0, f"podman run failed: {started.stderr}"

    def running(self) -> bool:
        return _podman("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip() == "true"

    def logs(self) -> str:
        out = _podman("logs", self.name)
        return out.stdout + out.stderr

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if not self.running():
                raise AssertionError(f"container exited before it was ready:\n{self.logs()}")
            time.sleep(0.3)
        raise AssertionError(f"not ready after {timeout}s:\n{self.logs()}")

    def exec_python(self, code: str) -> str:
        out = _podman("exec", self.name, "python3", "-c", code)
        assert out.returncode == 0, out.stderr
        return out.stdout

    def stop(self, grace_s: int = 60) -> int:
        """`podman stop`: SIGTERM (the image's STOPSIGNAL) to PID 1, SIGKILL after grace_s. Returns the exit code."""
        _podman("stop", "-t", str(grace_s), self.name, timeout=grace_s + 60, check=True)
        return int(_podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip())

    def remove(self) -> None:
        _podman("rm", "-f", self.name)


@pytest.fixture
def containers():
    started: list[Container] = []
    yield started
    for c in started:
        c.remove()


def test_image_serves_the_sklearn_sample_configured_by_azure_variables(image, sklearn_app, containers):
    c = Container(image, sklearn_app, {"AZUREML_ENTRY_SCRIPT": "score.py",
                                       "AZUREML_MODEL_DIR": "azureml-models/sklearn_json/1",
                                       "WORKER_COUNT": "2", "SCORING_TIMEOUT_MS": "60000"})
    containers.append(c)
    c.wait_ready()

    assert requests.get(c.url + "/", timeout=10).text == "Healthy"
    r = requests.post(c.url + "/score", data=json.dumps({"data": [ROW, ROW]}), headers=JSON, timeout=30)
    assert r.status_code == 200, r.text
    got = r.json()
    import joblib
    model = joblib.load(sklearn_app / "azureml-models" / "sklearn_json" / "1" / "model.pkl")
    assert got == pytest.approx(model.predict([ROW, ROW]).tolist())
    assert r.headers["x-ms-run-function-failed"] == "False"
    assert r.headers["x-openscore-slots-total"] == "2"  # two workers, one slot each
    # a bad request is the script's own error string, as in Azure
    assert requests.post(c.url + "/score", data="not json", headers=JSON, timeout=30).status_code == 200

    # the image's HEALTHCHECK probes /readyz
    health = _podman("healthcheck", "run", c.name)
    assert health.returncode == 0, health.stdout + health.stderr
    # not root; PID 1 is the supervisor itself
    who = json.loads(c.exec_python(
        "import json, os; print(json.dumps([os.getuid(), open('/proc/1/cmdline').read().split(chr(0))]))"))
    assert who[0] == 10001
    assert "openscore" in who[1][1] and "serve" in who[1]

    assert c.stop() == 0
    log = c.logs()
    assert "Server stopped" in log and "model loaded from azureml-models/sklearn_json/1/model.pkl" in log


PID1_SCRIPT = """\
import subprocess
import time


def init():
    pass


def run(raw_data):
    if "orphan" in raw_data:
        # sh exits at once; its background sleep is re-parented to PID 1, which must reap it when it ends
        subprocess.run(["sh", "-c", "sleep 1 & exit 0"], check=True)
        return "spawned"
    if "slow" in raw_data:
        time.sleep(3)
        return "slow done"
    return "ok"
"""

PROCS = textwrap.dedent("""\
    import json, os
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
        except OSError:
            continue
        procs.append({k: status[k].strip() for k in ("Name", "State", "PPid")})
    print(json.dumps(procs))
""")


def test_pid1_reaps_orphans_and_drains_in_flight_requests_on_sigterm(image, tmp_path, containers):
    app = tmp_path / "app"
    app.mkdir()
    (app / "score.py").write_text(PID1_SCRIPT)
    _world_readable(app)
    c = Container(image, app, {"AZUREML_ENTRY_SCRIPT": "score.py", "WORKER_COUNT": "2"})
    containers.append(c)
    c.wait_ready()

    for _ in range(4):
        r = requests.post(c.url + "/score", data='"orphan"', headers=JSON, timeout=30)
        assert r.json() == "spawned"
    procs = json.loads(c.exec_python(PROCS))
    orphans = [p for p in procs if p["Name"] == "sleep"]
    assert orphans and all(p["PPid"] == "1" for p in orphans), procs  # re-parented to the supervisor

    deadline = time.monotonic() + 60
    while True:  # each sleep ends after 1 s; its zombie must then disappear
        procs = json.loads(c.exec_python(PROCS))
        leftover = [p for p in procs if p["Name"] == "sleep" or p["State"].startswith("Z")]
        if not leftover:
            break
        assert time.monotonic() < deadline, f"not reaped: {leftover}"
        time.sleep(0.5)

    # SIGTERM while a request is in flight: it is answered, then the container exits 0
    result: dict = {}
    slow = threading.Thread(target=lambda: result.update(r=requests.post(
        c.url + "/score", data='"slow"', headers=JSON, timeout=60)))
    slow.start()
    deadline = time.monotonic() + 30
    while requests.get(c.url + "/slots", timeout=5).json().get("busy", 0) < 1:
        assert time.monotonic() < deadline, "the slow request never took a slot"
        time.sleep(0.05)
    assert c.stop() == 0
    slow.join(60)
    assert result["r"].status_code == 200 and result["r"].json() == "slow done"
    assert "draining: 1 request(s) in flight" in c.logs()
