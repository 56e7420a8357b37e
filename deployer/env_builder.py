"""Builds an environment on the local target: a virtual environment per environment hash under `<ws>/envs/`,
made once with pip and reused by every service whose environment hashes the same.

The venv is made without pip of its own; this interpreter's pip installs into it (`pip --python`), which
saves the seconds ensurepip takes. openscore itself is not installed there: a .pth file adds this
interpreter's site-packages *after* the venv's own, so the scoring server is importable while the
user's pinned versions win. A marker file written last says the build finished; a folder without it is
a build that failed or was killed, and is built again. Builders of one hash take a file lock in turn.

Each build gets a folder of its own, `envs/<hash>-<build id>/`, and `envs/<hash>.current` (replaced by a
rename, so atomically) names the one new services use. `--rebuild` therefore never touches the folder that
running services' interpreters live in: they keep it, the next deploy gets the new one, and an old build is
removed at a later build of its hash once no service record and no live process uses it. (Workspaces from
before kept the build at `envs/<hash>/`; it is read as the current one while no pointer exists.)
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import uuid
import venv
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from openscore.deployer.environments import EnvironmentDefinition
from openscore.deployer.errors import DeployError
from openscore.deployer.store import Store

MARKER = "openscore-env.json"
POINTER = ".current"         # envs/<hash>.current: the name of the build folder new services use
PTH = "openscore-base.pth"
PIP_TAIL_LINES = 25


class LocalEnvironmentBuilder:
    def __init__(self, ws: Store) -> None:
        self.ws = ws

    def current(self, defn: EnvironmentDefinition) -> Path | None:
        """The finished build new services of `defn` use, or None."""
        return self._current(defn.hash)

    def is_built(self, defn: EnvironmentDefinition) -> bool:
        return self.current(defn) is not None

    def ensure(self, defn: EnvironmentDefinition, *, rebuild: bool = False,
               log: Callable[[str], None] = print) -> str:
        """The python interpreter that runs `defn`'s services, building its venv first if needed."""
        skipped = defn.skipped()
        if skipped:
            log(f"not installed (openscore provides them, or they do not apply here): {', '.join(skipped)}")
        if defn.user_managed_dependencies:
            python = defn.interpreter_path or sys.executable
            if not Path(python).is_absolute():
                python = shutil.which(python) or python
            if not Path(python).is_file() or not os.access(python, os.X_OK):
                raise DeployError(f"environment {defn.name}: interpreterPath {defn.interpreter_path} is not an "
                                  "executable file (userManagedDependencies uses it as it is)")
            log(f"environment {defn.name}: user-managed, using {python}")
            return python
        packages = defn.resolved_packages()
        if not packages:
            return sys.executable
        current = self.current(defn)
        if not rebuild and current is not None:
            log(f"environment {defn.name}: reusing the built environment {defn.hash[:12]}")
            return str(current / "bin" / "python")
        with self._lock(defn.hash):
            current = self.current(defn)
            if not rebuild and current is not None:  # another builder finished it while we waited
                log(f"environment {defn.name}: reusing the built environment {defn.hash[:12]}")
                return str(current / "bin" / "python")
            built = self._build(defn, packages, log)
            self._switch(defn.hash, built)
            self._prune(defn.hash, keep=built)
        return str(built / "bin" / "python")

    # ------------------------------------------------------------------------------------------ internals
    def _current(self, digest: str) -> Path | None:
        try:
            name = (self.ws.envs_dir / f"{digest}{POINTER}").read_text().strip()
        except FileNotFoundError:
            name = ""
        except OSError as e:
            raise DeployError(f"cannot read {self.ws.envs_dir / (digest + POINTER)}: {e.strerror or e}") from None
        folder = self.ws.envs_dir / (name or digest)
        if name and (os.sep in name or not name.startswith(digest)):
            return None  # not a pointer this builder wrote: build again
        return folder if self._ready(folder) else None

    def _builds(self, digest: str) -> list[Path]:
        """Every folder of this hash's builds (finished or not), the pre-pointer `envs/<hash>/` included."""
        if not self.ws.envs_dir.is_dir():
            return []
        return [p for p in self.ws.envs_dir.iterdir()
                if p.is_dir() and not p.is_symlink() and (p.name == digest or p.name.startswith(f"{digest}-"))]

    def _switch(self, digest: str, built: Path) -> None:
        """Point new services at `built`: a rename, so a reader sees the old build or the new, never neither."""
        pointer = self.ws.envs_dir / f"{digest}{POINTER}"
        tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(built.name + "\n")
            os.replace(tmp, pointer)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            shutil.rmtree(built, ignore_errors=True)
            raise DeployError(f"cannot switch environment {digest[:12]} to its new build: {e.strerror or e}") \
                from None

    def _prune(self, digest: str, keep: Path) -> None:
        """Remove this hash's other builds that nothing runs from any more (half-built ones included)."""
        used = self._in_use()
        for folder in self._builds(digest):
            if folder != keep and folder.name not in used:
                shutil.rmtree(folder, ignore_errors=True)

    def _in_use(self) -> set[str]:
        """Names of build folders a service record points at or a live process runs from."""
        names: set[str] = set()
        envs = str(self.ws.envs_dir) + os.sep
        pythons: list[str] = []
        for (record,) in self.ws.db().execute("SELECT record FROM services"):
            try:
                versions = json.loads(record).get("versions", {})
            except ValueError:
                continue
            pythons += [str(v.get("package", {}).get("pythonInterpreter") or "") for v in versions.values()
                        if isinstance(v, dict)]
        proc = Path("/proc")
        if proc.is_dir():
            for entry in proc.iterdir():
                if entry.name.isdigit():
                    try:
                        pythons.append((entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace"))
                    except OSError:
                        continue  # gone meanwhile, or not ours to read
        for python in pythons:
            if python.startswith(envs):
                names.add(python[len(envs):].split(os.sep, 1)[0])
        return names

    @staticmethod
    def _ready(env: Path) -> bool:
        marker = env / MARKER
        if not marker.is_file():
            return False
        try:
            built_for = json.loads(marker.read_text()).get("base_python")
        except (OSError, ValueError):
            return False
        # built from another interpreter (the SDK's, say) is still good while that one exists
        return bool(built_for and Path(built_for).exists() and (env / "bin" / "python").exists())

    @contextmanager
    def _lock(self, digest: str) -> Iterator[None]:
        locks = self.ws.envs_dir / ".locks"
        try:
            locks.mkdir(parents=True, exist_ok=True)
            fd = os.open(locks / f"{digest}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise DeployError(f"cannot create environments in {self.ws.envs_dir}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _build(self, defn: EnvironmentDefinition, packages: list[str], log: Callable[[str], None]) -> Path:
        """A new build folder, finished (marker written) or removed again; the current one is not touched."""
        env = self.ws.envs_dir / f"{defn.hash}-{uuid.uuid4().hex[:8]}"
        start = time.monotonic()
        log(f"environment {defn.name}: building {defn.hash[:12]} with pip: {' '.join(packages)}")
        try:
            own_pip = importlib.util.find_spec("pip") is not None
            venv.EnvBuilder(with_pip=not own_pip, symlinks=True, clear=True).create(env)
            requirements = env / "requirements.txt"
            requirements.write_text("\n".join(packages) + "\n")
            python = env / "bin" / "python"
            pip = [sys.executable, "-m", "pip", "--python", str(python)] if own_pip else [str(python), "-m", "pip"]
            cmd = [*pip, "install", "--disable-pip-version-check", "--no-input", "-r", str(requirements)]
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, "PIP_NO_INPUT": "1"}, check=False)
            if proc.returncode != 0:
                tail = "\n".join(proc.stdout.strip().splitlines()[-PIP_TAIL_LINES:])
                raise DeployError(f"environment {defn.name}: pip install failed (exit {proc.returncode}) for "
                                  f"{' '.join(packages)}:\n{tail}")
            self._link_base(python)
            (env / MARKER).write_text(json.dumps({
                "name": defn.name, "version": defn.version, "hash": defn.hash, "packages": packages,
                "base_python": sys.executable, "built": time.time(),
                "build_s": round(time.monotonic() - start, 3)}, indent=1))
        except BaseException as e:
            shutil.rmtree(env, ignore_errors=True)
            if isinstance(e, OSError):
                raise DeployError(f"environment {defn.name}: cannot build in {env}: {e}") from None
            raise
        log(f"environment {defn.name}: built in {time.monotonic() - start:.1f} s")
        return env

    @staticmethod
    def _link_base(python: Path) -> None:
        """Put this interpreter's site-packages (and the .pth files there, such as an editable install's)
        after the venv's own on its sys.path."""
        out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
        paths = sysconfig.get_paths()
        bases = list(dict.fromkeys([paths["purelib"], paths["platlib"]]))
        lines = [f"import site; site.addsitedir({b!r})" for b in bases]
        (Path(out) / PTH).write_text("\n".join(lines) + "\n")
