"""Environment images: looked up by their recipe's tag, built with buildah only when absent, pushed with skopeo.

Where an image is looked for: with a registry named, the registry first (HEAD of the tag's manifest), then local
storage (an image built here whose push did not happen yet: pushed, not built again); without one, local storage
only, and nothing is pushed anywhere.

The build: wheels for the pip packages are made on the host (`pip wheel`: the build needs no package index, and
the Python that makes them must have the image's minor version; downloaded wheels are kept for the next build),
then `buildah bud` runs the recipe's steps as root and installs the wheels, from a bind mount so that no wheel
stays in the image. Every buildah step goes to `progress`; a failing step raises BuildError with that step's
own output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import ImageError
from .recipe import ENV_REPOSITORY, LOCAL_REGISTRY, EnvironmentRecipe, ImageRef, registry_host
from .registry import Registry

Progress = Callable[[str], None]
IMAGE_USER = "10001:10001"  # the runtime image's user, restored after the steps that run as root
BUILD_TIMEOUT_S = 3600
STEP_LINE = re.compile(r"^(\[\d+/\d+\] )?STEP \d+/\d+: ")  # buildah's `STEP 2/5: RUN ...`, `[1/3] STEP ...` in stages


class BuildError(ImageError):
    """A build step failed: `step` is buildah's `STEP n/m: ...` line, `output` what that step printed."""

    def __init__(self, message: str, step: str = "", output: str = ""):
        super().__init__(message)
        self.step = step
        self.output = output


def _quiet(_: str) -> None:
    pass


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ImageError(f"{name} is not installed (Debian: apt-get install buildah podman runc skopeo)")
    return path


def dockerfile(recipe: EnvironmentRecipe, with_wheels: bool) -> str:
    """The Dockerfile an environment is built from (its text is what the recipe's hash stands for)."""
    lines = [f"FROM {recipe.base_image}", "USER 0:0", *(s.strip() for s in recipe.docker_steps)]
    if with_wheels:
        packages = " ".join(_shell_quote(p) for p in recipe.normalized_packages())
        lines.append("RUN --mount=type=bind,source=wheels,target=/tmp/wheels "
                     f"pip install --no-cache-dir --no-index --find-links /tmp/wheels {packages}")
    lines.append(f"USER {IMAGE_USER}")
    return "\n".join(lines) + "\n"


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def local_digest(reference: str) -> str | None:
    """The manifest digest of an image in local containers-storage, None when there is none by that name."""
    out = subprocess.run([tool("buildah"), "inspect", "--type", "image", reference],
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout).get("FromImageDigest") or None


def ensure_environment_image(recipe: EnvironmentRecipe, *, registry: str | None = None, rebuild: bool = False,
                             progress: Progress = _quiet, python: str = sys.executable) -> ImageRef:
    """The recipe's image, built only when neither the registry nor local storage has it (or `rebuild`)."""
    name, tag = recipe.repository(registry), recipe.tag
    local_ref = f"{LOCAL_REGISTRY}/{ENV_REPOSITORY}:{tag}"
    remote = Registry(registry) if registry is not None else None
    if not rebuild:
        if remote is not None:
            digest = remote.manifest_digest(ENV_REPOSITORY, tag)
            if digest:
                progress(f"cache hit: {name}:{tag} is in the registry ({digest})")
                return ImageRef(name, tag, digest, cached=True)
        digest = local_digest(local_ref)
        if digest:
            progress(f"cache hit: {local_ref} is in local storage ({digest})")
            if remote is None:
                return ImageRef(name, tag, digest, cached=True)
            return push(local_ref, remote, ENV_REPOSITORY, tag, progress, cached=True)
    progress(f"building {local_ref} (recipe {recipe.hash[:12]}, base {recipe.base_image})")
    build(recipe, local_ref, progress, python)
    if remote is None:
        digest = local_digest(local_ref)
        if not digest:
            raise ImageError(f"buildah reported success but {local_ref} is not in local storage")
        return ImageRef(name, tag, digest, cached=False)
    return push(local_ref, remote, ENV_REPOSITORY, tag, progress, cached=False)


def build(recipe: EnvironmentRecipe, reference: str, progress: Progress, python: str) -> None:
    with tempfile.TemporaryDirectory(prefix="openscore-env-") as tmp:
        context = Path(tmp)
        packages = recipe.normalized_packages()
        (context / "wheels").mkdir()
        if packages:
            progress(f"making wheels for {len(packages)} package(s) with {python}")
            kept = wheel_cache()
            run_step("pip wheel", [python, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                                   "--find-links", str(kept), "-w", str(context / "wheels"), *packages], progress)
            for wheel in (context / "wheels").glob("*.whl"):
                if not (kept / wheel.name).exists():
                    shutil.copyfile(wheel, kept / wheel.name)
        (context / "Dockerfile").write_text(dockerfile(recipe, with_wheels=bool(packages)))
        run_step("buildah bud", [tool("buildah"), "bud", "--isolation=chroot", "--format", "docker",
                                 "--pull=false", "--layers=false", "-f", str(context / "Dockerfile"),
                                 "-t", reference, str(context)], progress)


def wheel_cache() -> Path:
    """Where downloaded wheels are kept between builds ($OPENSCORE_CACHE/wheels, as images/build.sh keeps them).
    Offered to pip as links: pip still picks the best version from the index, and only skips its download."""
    root = os.environ.get("OPENSCORE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "openscore")
    path = Path(root) / "wheels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_step(what: str, argv: list[str], progress: Progress) -> None:
    """Run a build command, each `STEP` line of its output to `progress`; BuildError with the failing step's
    own output when it fails."""
    step, output, tail = what, list[str](), list[str]()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail = [*tail[-199:], line]
            if STEP_LINE.match(line):
                step, output = line, []
                progress(line)
            else:
                output.append(line)
                output = output[-200:]
        code = proc.wait(timeout=BUILD_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if code != 0:
        shown = "\n".join(output or tail)
        progress(f"failed: {step}")
        raise BuildError(f"{what} failed (exit {code}) at {step}:\n{shown}", step, shown)


def push(local_ref: str, remote: Registry, repository: str, tag: str, progress: Progress,
         cached: bool) -> ImageRef:
    """skopeo copy from local storage to the registry; the ImageRef carries the registry's digest."""
    destination = f"docker://{remote.host}/{repository}:{tag}"
    progress(f"pushing {local_ref} to {destination}")
    with tempfile.TemporaryDirectory(prefix="openscore-push-") as tmp:
        digest_file = Path(tmp) / "digest"
        argv = [tool("skopeo"), "copy", "--quiet", "--digestfile", str(digest_file)]
        if remote.plain_http:
            argv.append("--dest-tls-verify=false")
        run_step("skopeo copy", [*argv, f"containers-storage:{local_ref}", destination], progress)
        digest = digest_file.read_text().strip()
    return ImageRef(f"{remote.host}/{repository}", tag, digest, cached=cached)


def list_images(registry: str | None = None) -> list[ImageRef]:
    """Every image (by tag) in the registry, or in local storage when none is named."""
    if registry is not None:
        remote = Registry(registry)
        found = []
        for repository in remote.repositories():
            for tag in remote.tags(repository):
                digest = remote.manifest_digest(repository, tag)
                if digest:
                    found.append(ImageRef(f"{remote.host}/{repository}", tag, digest, cached=True))
        return found
    out = subprocess.run([tool("buildah"), "images", "--json"], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise ImageError(f"buildah images failed: {out.stderr.strip()}")
    found = []
    for image in json.loads(out.stdout or "[]"):
        for full in image.get("names") or []:
            repo, _, tag = full.rpartition(":")
            if repo and "/" not in tag:
                found.append(ImageRef(repo, tag, image.get("digest", ""), cached=True))
    return sorted(found, key=lambda r: (r.name, r.tag))


__all__ = ["BuildError", "ensure_environment_image", "list_images", "registry_host"]
