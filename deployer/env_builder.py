"""Builds an environment on the local target: a virtual environment per environment hash under
`<ws>/envs/<hash>/`, made once with pip and reused by every service whose environment hashes the same.

The venv is made without pip of its own; this interpreter's pip installs into it (`pip --python`), which
saves the seconds ensurepip takes. openscore itself is not installed there: a .pth file adds this
interpreter's site-packages *after* the venv's own, so the scoring server is importable while the
user's pinned versions win. A marker file written last says the build finished; a folder without it is
a build that failed or was killed, and is built again. Builders of one hash take a file lock in turn.
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
import venv
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from openscore.deployer.environments import EnvironmentDefinition
from openscore.deployer.errors import DeployError
from openscore.deployer.store import Store

MARKER = "openscore-env.json"
PTH = "openscore-base.pth"
PIP_TAIL_LINES = 25


class LocalEnvironmentBuilder:
    def __init__(self, ws: Store) -> None:
        self.ws = ws

    def env_dir(self, defn: EnvironmentDefinition) -> Path:
        return self.ws.envs_dir / defn.hash

    def is_built(self, defn: EnvironmentDefinition) -> bool:
        return self._ready(self.env_dir(defn))

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
        env = self.env_dir(defn)
        built = str(env / "bin" / "python")
        if not rebuild and self._ready(env):
            log(f"environment {defn.name}: reusing the built environment {defn.hash[:12]}")
            return built
        with self._lock(defn.hash):
            if not rebuild and self._ready(env):  # another builder finished it while we waited
                log(f"environment {defn.name}: reusing the built environment {defn.hash[:12]}")
                return built
            self._build(defn, env, packages, log)
        return built

    # ------------------------------------------------------------------------------------------ internals
    def _ready(self, env: Path) -> bool:
        marker = env / MARKER
        if not marker.is_file():
            return False
        try:
            built_for = json.loads(marker.read_text()).get("base_python")
        except (OSError, ValueError):
            return False
        # built from another interpreter (the SDK's, say) is still good while that one exists: rebuilding it
        # under a running service would pull its files away
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

    def _build(self, defn: EnvironmentDefinition, env: Path, packages: list[str],
               log: Callable[[str], None]) -> None:
        shutil.rmtree(env, ignore_errors=True)  # a stale or half-built one, or --rebuild
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
