"""What an environment image is made of, and the name its content gives it.

Like Azure's environment cache, the hash covers the base image, the docker steps and the pip package list, not
an environment's name or version: two environments that ask for the same things share one image, and changing
any of them (a pin included) names a new one. Unpinned packages freeze at the first build; `rebuild=True`
(ensure_environment_image) builds again under the same tag.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

FLAVOURS = ("cpu", "cuda", "opencl")
ENV_REPOSITORY = "openscore-env"
LOCAL_REGISTRY = "localhost"  # containers-storage's name for images that were never pushed
HASH_VERSION = 1  # bump when what the hash covers changes, so old tags are not mistaken for new ones

# Dockerfile instructions a docker step may use: no FROM (the base is base_image), no COPY/ADD (an environment
# has no build context: files belong in the deployment layer), nothing that changes how the image starts.
STEP_INSTRUCTIONS = frozenset({"RUN", "ENV", "ARG", "LABEL", "WORKDIR", "SHELL"})
_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_REQUIREMENT = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(\[[A-Za-z0-9._,-]+\])?"
                          r"((===|==|!=|<=|>=|~=|<|>)[A-Za-z0-9.*+!_-]+(,(===|==|!=|<=|>=|~=|<|>)[A-Za-z0-9.*+!_-]+)*)?"
                          r"(;.+)?$")
# onnxruntime and onnxruntime-gpu must never share an environment (pip allows it and both break)
_FORBIDDEN = {"cpu": {"onnxruntime-gpu"}, "cuda": {"onnxruntime"}, "opencl": {"onnxruntime-gpu"}}


class RecipeError(ValueError):
    """A recipe field is not something an image can be built from."""


def canonical_name(requirement: str) -> str:
    """PEP 503 name of a requirement specifier (`Scikit_Learn>=1` -> `scikit-learn`)."""
    m = _NAME.match(requirement)
    return re.sub(r"[-_.]+", "-", m.group(0)).lower() if m else ""


def normalize_requirement(spec: str) -> str:
    """The specifier without whitespace and with its canonical name; RecipeError when it is not one."""
    if not isinstance(spec, str):
        raise RecipeError(f"pip package {spec!r} is not a string")
    text = re.sub(r"\s+", "", spec.split(";", 1)[0]) + (";" + spec.split(";", 1)[1].strip() if ";" in spec else "")
    if not text or text.startswith("-"):
        raise RecipeError(f"pip package {spec!r} is not a requirement specifier (options such as --index-url "
                          f"belong in pip's configuration, not in the package list)")
    if not _REQUIREMENT.match(text):
        raise RecipeError(f"pip package {spec!r} is not a requirement specifier such as 'name', 'name==1.2' "
                          f"or 'name[extra]>=1,<2'")
    name = canonical_name(text)
    return name + text[len(_NAME.match(text).group(0)):]  # type: ignore[union-attr]


@dataclass(frozen=True)
class EnvironmentRecipe:
    """An environment image: `base_image` (a runtime image of `flavour`, best pinned by digest), Dockerfile
    `docker_steps` run as root in order, then `pip_packages` installed from wheels made on the host."""

    base_image: str
    docker_steps: tuple[str, ...] = ()
    pip_packages: tuple[str, ...] = ()
    flavour: str = "cpu"

    def __post_init__(self) -> None:
        if not isinstance(self.base_image, str) or not self.base_image.strip() or any(
                c.isspace() for c in self.base_image):
            raise RecipeError(f"base_image {self.base_image!r} is not an image reference")
        if self.flavour not in FLAVOURS:
            raise RecipeError(f"flavour {self.flavour!r} is not one of {', '.join(FLAVOURS)}")
        object.__setattr__(self, "docker_steps", tuple(self.docker_steps))
        object.__setattr__(self, "pip_packages", tuple(self.pip_packages))
        for step in self.docker_steps:
            word = step.strip().split(None, 1)[0].upper() if isinstance(step, str) and step.strip() else ""
            if word not in STEP_INSTRUCTIONS:
                raise RecipeError(f"docker step {step!r}: a step starts with one of "
                                  f"{', '.join(sorted(STEP_INSTRUCTIONS))} (FROM is the base image; files go in "
                                  f"the deployment layer, not COPY/ADD)")
        forbidden = _FORBIDDEN[self.flavour]
        for spec in self.normalized_packages():
            if canonical_name(spec) in forbidden:
                raise RecipeError(f"pip package {spec!r} does not belong in a {self.flavour} environment "
                                  f"(onnxruntime and onnxruntime-gpu must never share one)")

    def normalized_packages(self) -> tuple[str, ...]:
        """The package list as the hash sees it: normalized, sorted, duplicates dropped (pip installs a set)."""
        return tuple(sorted({normalize_requirement(p) for p in self.pip_packages}))

    def canonical(self) -> str:
        """The JSON text the hash is taken over."""
        return json.dumps({"version": HASH_VERSION, "base_image": self.base_image.strip(),
                           "docker_steps": [s.strip() for s in self.docker_steps],
                           "pip_packages": list(self.normalized_packages()), "flavour": self.flavour},
                          sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()

    @property
    def tag(self) -> str:
        """The image tag: the first 20 hex digits of the hash (80 bits: no collision among real environments)."""
        return self.hash[:20]

    def repository(self, registry: str | None = None) -> str:
        return f"{registry_host(registry)}/{ENV_REPOSITORY}"

    def reference(self, registry: str | None = None) -> str:
        """`<registry>/openscore-env:<tag>`; `localhost/...` (local storage) when no registry is named."""
        return f"{self.repository(registry)}:{self.tag}"


def registry_host(registry: str | None) -> str:
    """`127.0.0.1:5000` from `http://127.0.0.1:5000/`; `localhost` for None (local storage only)."""
    if registry is None:
        return LOCAL_REGISTRY
    host = re.sub(r"^https?://", "", registry.strip()).rstrip("/")
    if not host or "/" in host or any(c.isspace() for c in host):
        raise RecipeError(f"registry {registry!r} is not a registry host such as 127.0.0.1:5000 or "
                          f"myregistry.azurecr.io")
    return host


@dataclass(frozen=True)
class ImageRef:
    """An image by repository (`host/name`), tag and manifest digest; `cached` when nothing had to be built."""

    name: str
    tag: str
    digest: str
    cached: bool = False

    @property
    def by_tag(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def by_digest(self) -> str:
        return f"{self.name}@{self.digest}"

    @property
    def registry(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def repository(self) -> str:
        """The name within its registry (`openscore-env`)."""
        return self.name.split("/", 1)[1]
