"""The runtime image (images/Dockerfile, built by images/build.sh) run with podman, as Azure runs its containers;
an environment image and a deployment layer on it, pushed to and pulled from a real registry.

The cpu image is built from this checkout under a tag keyed on the hash of the source it is made of
(localhost/openscore-test:cpu-<hash>), so an image from an earlier checkout is never reused; one from the same
source is (a cached build). The first build of a machine takes a few minutes (a Debian base with mmdebstrap,
cached as a tarball by its recipe's hash in ~/.cache/openscore, then wheels and `buildah bud`). Skips, saying
why, where podman/buildah are not installed or no base image can be made: .ci/run installs them. Containers
publish port 5001 on 127.0.0.1 only and are removed at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import requests

from openscore.images import EnvironmentRecipe, build_deployment_layer, ensure_environment_image, list_images

ROOT = Path(__file__).resolve().parents[2]


def image_sources() -> tuple[str, ...]:
    """What the image is made of: every folder pyproject maps a package to (the wheel holds them all), the
    build files (images/) and the metadata pip reads."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        folders = tomllib.load(f)["tool"]["setuptools"]["package-dir"].values()
    return tuple(sorted({*folders, "images", "pyproject.toml", "README.md"}))


# every container a test starts carries this run's label, so that .ci/run can remove any a killed run left behind
TEST_RUN_LABEL = f"ai.openscore.test-run={os.environ.get('OPENSCORE_TEST_RUN', 'local')}"
# what works without a systemd/cgroup-delegating host (see README, Images); harmless elsewhere
RUN_FLAGS = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000",
             "--label", TEST_RUN_LABEL]
ROW = [0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.020, -0.018]
JSON = {"Content-Type": "application/json"}
# the sample's model.pkl is made by this Python: the environment gets the same scikit-learn and joblib
SKLEARN_PINS = tuple(f"{name}=={metadata.version(name)}" for name in ("scikit-learn", "joblib"))

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _podman(*args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=check)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def source_hash() -> str:
    """sha256 over the path and content of every file the image is built from (tracked or not, not ignored)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "--", *image_sources()], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    h = hashlib.sha256()
    for name in sorted(set(files)):
        path = ROOT / name
        if path.is_file():
            h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def build_runtime_image(flavour: str, tag: str, extra_packages: str = "") -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENSCORE_LOCK"}  # a caller's flock must not deadlock us
    env.update(TAG=tag, FLAVOUR=flavour, EXTRA_PACKAGES=extra_packages, PYTHON=sys.executable)
    build = subprocess.run(["bash", str(ROOT / "images" / "build.sh")], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=1700)
    if build.returncode == 4:
        pytest.skip(f"no base image can be made here: {build.stderr.strip()[-800:]}")
    assert build.returncode == 0, (f"images/build.sh --flavour {flavour} failed ({build.returncode}):\n"
                                   f"{build.stdout[-3000:]}\n{build.stderr[-3000:]}")


def require_podman() -> None:
    for tool in ("podman", "buildah", "skopeo"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian: apt-get install podman buildah runc skopeo mmdebstrap)")
    info = _podman("info", timeout=60)
    if info.returncode != 0:
        pytest.skip(f"podman cannot run here: {info.stderr.strip()[-500:]}")


@pytest.fixture(scope="module")
def image() -> str:
    """localhost/openscore-test:cpu-<source hash>, built unless this very source was built before."""
    require_podman()
    tag = f"localhost/openscore-test:cpu-{source_hash()[:16]}"
    if _podman("image", "exists", tag).returncode != 0:
        build_runtime_image("cpu", tag)
        for old in _podman("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/openscore-test").stdout.split():
            if old.startswith("localhost/openscore-test:cpu-") and old != tag:  # earlier sources' images
                _podman("rmi", old)
    return tag


@pytest.fixture(scope="module")
def environment(image, registry) -> Iterator[dict]:
    """An environment on the cpu image (a docker step and the sample's packages), pushed to the test registry;
    then the same recipe asked for again."""
    recipe = EnvironmentRecipe(base_image=image, docker_steps=("RUN echo openscore-test > /etc/openscore-env",),
                               pip_packages=SKLEARN_PINS, flavour="cpu")
    first_steps: list[str] = []
    first = ensure_environment_image(recipe, registry=registry.host, rebuild=True, progress=first_steps.append)
    second_steps: list[str] = []
    second = ensure_environment_image(recipe, registry=registry.host, progress=second_steps.append)
    yield {"recipe": recipe, "first": first, "first_steps": first_steps, "second": second,
           "second_steps": second_steps}
    removed = _podman("rmi", recipe.reference(None))  # the local copy: rebuilt by every run (rebuild=True)
    assert removed.returncode == 0, f"could not remove {recipe.reference(None)}: {removed.stderr}"


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

    def __init__(self, image: str, app: Path | None, env: dict[str, str], mounts: tuple[str, ...] = ()):
        """`app` is mounted at /var/azureml-app, as Azure does; None: the image has it (a deployment layer)."""
        self.name = f"openscore-test-{os.getpid()}-{time.monotonic_ns()}"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = ["run", "-d", "--name", self.name, *RUN_FLAGS, "-p", f"127.0.0.1:{self.port}:5001"]
        if app is not None:
            args += ["-v", f"{app}:/var/azureml-app:ro"]
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


SKLEARN_ENV = {"AZUREML_ENTRY_SCRIPT": "score.py", "AZUREML_MODEL_DIR": "azureml-models/sklearn_json/1"}


def score_sklearn(c: Container, app: Path) -> None:
    r = requests.post(c.url + "/score", data=json.dumps({"data": [ROW, ROW]}), headers=JSON, timeout=30)
    assert r.status_code == 200, r.text
    import joblib
    model = joblib.load(app / "azureml-models" / "sklearn_json" / "1" / "model.pkl")
    assert r.json() == pytest.approx(model.predict([ROW, ROW]).tolist())


def test_image_serves_the_sklearn_sample_configured_by_azure_variables(environment, sklearn_app, containers):
    # the environment's local copy: the cpu runtime image plus scikit-learn and joblib
    image = f"localhost/openscore-env:{environment['recipe'].tag}"
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


def test_an_environment_image_is_built_once_then_found_in_the_registry(environment, registry, image):
    first, second = environment["first"], environment["second"]
    assert first.name == f"{registry.host}/openscore-env" and first.tag == environment["recipe"].tag
    assert first.cached is False and any(s.startswith("building ") for s in environment["first_steps"])
    assert any("STEP" in s and "RUN echo openscore-test" in s for s in environment["first_steps"])  # each step shown
    assert any(s.startswith("pushing ") for s in environment["first_steps"])
    assert second == type(first)(first.name, first.tag, first.digest, cached=True)  # a cache hit, same digest
    assert environment["second_steps"] == [f"cache hit: {first.name}:{first.tag} is in the registry ({first.digest})"]
    assert (first.name, first.tag, first.digest) in {(r.name, r.tag, r.digest) for r in list_images(registry.host)}
    local = ensure_environment_image(environment["recipe"], registry=None)  # no registry: local storage only
    assert local.cached is True and local.name == "localhost/openscore-env"
    assert any(r.by_tag == local.by_tag for r in list_images(None))
    # the base image changed (new source): a new tag, not the cached one
    assert EnvironmentRecipe(image + "x", environment["recipe"].docker_steps, SKLEARN_PINS).tag != first.tag


def test_a_deployment_layer_is_pushed_pulled_back_by_digest_and_serves(environment, sklearn_app, registry,
                                                                       containers, tmp_path):
    env_image = environment["first"]
    deployed = build_deployment_layer(env_image, sklearn_app, registry=registry.host, work_dir=tmp_path)
    again = build_deployment_layer(env_image, sklearn_app, registry=registry.host, work_dir=tmp_path)
    assert (again.digest, again.cached, deployed.cached) == (deployed.digest, True, False)
    pulled = _podman("pull", "--tls-verify=false", deployed.by_digest, timeout=300)
    assert pulled.returncode == 0, pulled.stderr
    try:
        c = Container(deployed.by_digest, None, {**SKLEARN_ENV, "WORKER_COUNT": "1"})  # nothing mounted
        containers.append(c)
        c.wait_ready()
        score_sklearn(c, sklearn_app)
        health = _podman("healthcheck", "run", c.name)  # the base's HEALTHCHECK survives the layer
        assert health.returncode == 0, health.stdout + health.stderr
        assert c.exec_python("print(open('/etc/openscore-env').read())").strip() == "openscore-test"
        assert c.stop() == 0
    finally:
        for c in containers:
            c.remove()
        containers.clear()
        _podman("rmi", deployed.by_digest)


def test_a_failing_build_step_shows_its_own_output(image):
    from openscore.images import BuildError
    recipe = EnvironmentRecipe(image, ("RUN echo preparing", "RUN echo the-step-output && exit 3"), (), "cpu")
    steps: list[str] = []
    with pytest.raises(BuildError) as e:
        ensure_environment_image(recipe, registry=None, progress=steps.append)
    assert "RUN echo the-step-output && exit 3" in e.value.step
    assert "the-step-output" in e.value.output and "preparing" not in e.value.output
    assert "the-step-output" in str(e.value)
    assert steps[-1] == f"failed: {e.value.step}"
    assert _podman("image", "exists", recipe.reference(None)).returncode != 0  # nothing was tagged


# ---------------------------------------------------------------------- `openscore image build|list` (the CLI)
def openscore(*args: str, workspace: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENSCORE_WORKSPACE": str(workspace)}
    return subprocess.run([sys.executable, "-m", "openscore", *args, "-w", str(workspace)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=workspace.parent)


def register_environment(workspace: Path, name: str, dockerfile: str) -> None:
    """An Azure Environment with a baseDockerfile and no packages to install (user-managed)."""
    doc = workspace.parent / f"{name}.json"
    doc.write_text(json.dumps({"name": name, "python": {"userManagedDependencies": True},
                               "docker": {"baseDockerfile": dockerfile}}))
    out = openscore("environment", "register", "-f", str(doc), workspace=workspace, timeout=120)
    assert out.returncode == 0, out.stderr


def test_cli_image_build_shows_each_step_and_the_second_build_is_a_cache_hit(image, registry, tmp_path,
                                                                             request):
    ws = tmp_path / "ws"
    marker = f"cli-{time.monotonic_ns()}"  # a recipe no earlier run has built
    register_environment(ws, "cli-env", f"FROM {image}\n# a comment\nRUN echo {marker} \\\n  > /etc/cli-step\n")
    first = openscore("image", "build", "-n", "cli-env", "--registry", registry.host, workspace=ws)
    assert first.returncode == 0, first.stderr
    built = json.loads(first.stdout)
    request.addfinalizer(lambda: _podman("rmi", f"localhost/openscore-env:{built['tag']}"))  # a one-off recipe
    assert built["cached"] is False and built["name"] == f"{registry.host}/openscore-env"
    assert built["reference"] == f"{built['name']}@{built['digest']}"
    steps = first.stderr.splitlines()
    assert any("STEP" in s and f"RUN echo {marker}" in s for s in steps), first.stderr  # the progress display
    assert any(s.strip().startswith("pushing ") for s in steps)
    again = openscore("image", "build", "-n", "cli-env", "--registry", registry.host, workspace=ws)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {**built, "cached": True}
    assert "cache hit" in again.stderr and "STEP" not in again.stderr

    listed = openscore("image", "list", "--registry", registry.host, "-n", "openscore-env", workspace=ws)
    assert listed.returncode == 0, listed.stderr
    assert {"name": built["name"], "tag": built["tag"], "digest": built["digest"]} in [
        {k: r[k] for k in ("name", "tag", "digest")} for r in json.loads(listed.stdout)]
    table = openscore("image", "list", "--registry", registry.host, "-o", "table", workspace=ws)
    assert table.stdout.splitlines()[0].split() == ["name", "tag", "digest", "cached"]
    assert built["tag"] in table.stdout


def test_cli_image_build_failure_shows_the_failing_steps_output(image, tmp_path):
    ws = tmp_path / "ws"
    register_environment(ws, "broken", f"FROM {image}\nRUN echo fine\nRUN echo boom-{os.getpid()} && exit 7\n")
    out = openscore("image", "build", "-n", "broken", workspace=ws)
    assert out.returncode == 1
    assert f"RUN echo boom-{os.getpid()} && exit 7" in out.stderr and "its output:" in out.stderr
    assert f"boom-{os.getpid()}" in out.stderr.split("its output:", 1)[1]
    assert out.stdout == ""


def test_cli_image_bad_input_is_one_clear_error(tmp_path):
    ws = tmp_path / "ws"
    missing = openscore("image", "build", "-n", "nope", workspace=ws, timeout=120)
    assert missing.returncode == 1 and "nope" in missing.stderr and "Traceback" not in missing.stderr
    register_environment(ws, "two-stages", "FROM a AS one\nRUN true\n")
    stage = openscore("image", "build", "-n", "two-stages", workspace=ws, timeout=120)
    assert stage.returncode == 1 and "FROM line must name one image" in stage.stderr
    register_environment(ws, "copying", "FROM localhost/openscore:cpu\nCOPY . /app\n")
    copying = openscore("image", "build", "-n", "copying", workspace=ws, timeout=120)
    assert copying.returncode == 1 and "COPY . /app" in copying.stderr and "Traceback" not in copying.stderr
    host = f"127.0.0.1:{_free_port()}"
    down = openscore("image", "list", "--registry", host, workspace=ws, timeout=120)
    assert down.returncode == 1 and f"cannot reach the registry at http://{host}" in down.stderr


def test_sdk_environment_build_makes_the_image_in_local_storage(image, tmp_path, monkeypatch, request):
    monkeypatch.setenv("OPENSCORE_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.chdir(tmp_path)
    from openscore.sdk import Environment, Workspace
    from openscore.sdk.exceptions import UserErrorException
    ws = Workspace.get("images-sdk")
    try:
        env = Environment("sdk-env")
        env.python.user_managed_dependencies = True  # nothing to install: the image is the base plus a label
        env.docker.base_image = image
        env.docker.base_dockerfile = f"FROM {image}\nLABEL ai.openscore.test=sdk-{time.monotonic_ns()}\n"
        built = env.build(ws)
        request.addfinalizer(lambda: _podman("rmi", built.by_tag))  # a one-off recipe
        assert built.cached is False and built.name == "localhost/openscore-env"
        assert _podman("image", "exists", built.by_tag).returncode == 0
        again = env.build(ws)
        assert (again.digest, again.cached) == (built.digest, True)
        with pytest.raises(UserErrorException, match="image_build_compute"):
            env.build(ws, image_build_compute="cpu-cluster")
    finally:
        ws.store.close()
