#!/usr/bin/env bash
# Build an openscore runtime image (flavour cpu, cuda or opencl) from a clone, on a machine with buildah (or
# docker) and no registry access needed: wheels are made on the host, the base image is pulled only when named.
#
#   images/build.sh                                   # localhost/openscore:cpu on a local Debian bookworm base
#   images/build.sh --flavour cuda                    # localhost/openscore:cuda (onnxruntime-gpu, CUDA 13, cuDNN 9)
#   images/build.sh --flavour opencl -t openscore:opencl-1
#   images/build.sh --base python:3.11-slim --extra-packages 'scikit-learn==1.9.1 joblib'   # what score.py imports
#
# Options (each also an environment variable):
#   --flavour NAME            FLAVOUR          cpu (default), cuda or opencl: the Dockerfile target
#   -t, --tag TAG             TAG              image name             (localhost/openscore:FLAVOUR)
#   --base IMAGE              BASE_IMAGE       base image; when empty, a Debian bookworm + python3 base is made with
#                                              mmdebstrap, named by its recipe's hash (localhost/debian-py:bookworm-H)
#   --extra-packages 'PKGS'   EXTRA_PACKAGES   more requirement specifiers installed in the image
#   --mirror URL              DEBIAN_MIRROR    Debian mirror for mmdebstrap (http://deb.debian.org/debian)
#   --builder NAME            BUILDER          buildah (default when installed) or docker
#   --base-only                                make (or find) the base image, print its name and stop
#                             PYTHON           Python that makes the wheels: same minor version as the image's
#                                              (3.11 for bookworm); default .venv/bin/python, else python3
#                             OPENSCORE_CACHE  where the base tarball is kept by its hash, and downloaded wheels
#                                              (~/.cache/openscore)
#                             OPENSCORE_LOCK   a lock file: the CPU-heavy steps run under `flock` on it
# Every log line says the seconds since the start ([12s]), so a slow step shows where the time went.
# Exit codes: 0 built, 1 error, 2 bad arguments, 4 no base image could be made (no --base, no mmdebstrap or mirror).
# Made files (git-ignored): images/.cache/ (the build context with its wheels, a wheel-building venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

FLAVOUR="${FLAVOUR:-cpu}"
TAG="${TAG:-}"
BASE_IMAGE="${BASE_IMAGE:-}"
EXTRA_PACKAGES="${EXTRA_PACKAGES:-}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BUILDER="${BUILDER:-}"
OPENSCORE_CACHE="${OPENSCORE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/openscore}"

usage() { awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --flavour|--flavor) FLAVOUR="$2"; shift 2 ;;
    -t|--tag) TAG="$2"; shift 2 ;;
    --base) BASE_IMAGE="$2"; shift 2 ;;
    --extra-packages) EXTRA_PACKAGES="$2"; shift 2 ;;
    --mirror) DEBIAN_MIRROR="$2"; shift 2 ;;
    --builder) BUILDER="$2"; shift 2 ;;
    --base-only) BASE_ONLY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done

log() { echo "build.sh [${SECONDS}s]: $*" >&2; }
die() { log "error: $*"; exit 1; }
heavy() {  # a CPU-heavy step, under the shared lock when one is given
  if [ -n "${OPENSCORE_LOCK:-}" ] && command -v flock >/dev/null; then flock "$OPENSCORE_LOCK" "$@"; else "$@"; fi
}

# what each flavour installs: openscore's extras, plus the packages the flavour needs beside them
case "$FLAVOUR" in
  # the cpu image also runs the router in a cluster (`openscore router --kubernetes`)
  cpu) EXTRAS=cpu,router,kubernetes; FLAVOUR_PACKAGES="" ;;
  # onnxruntime-gpu's own extras bring CUDA 13 runtime, nvrtc, cuFFT, cuRAND and cuDNN 9; cuBLAS is named here
  cuda) EXTRAS=cuda; FLAVOUR_PACKAGES="onnxruntime-gpu[cuda,cudnn] nvidia-cublas" ;;
  # the OpenCL backend reads models with onnx; onnxruntime serves the models left on the CPU
  opencl) EXTRAS=cpu,opencl; FLAVOUR_PACKAGES="onnx" ;;
  *) echo "build.sh: --flavour must be cpu, cuda or opencl, not '$FLAVOUR'" >&2; exit 2 ;;
esac
TAG="${TAG:-localhost/openscore:$FLAVOUR}"

if [ -z "$BUILDER" ]; then
  if command -v buildah >/dev/null; then BUILDER=buildah
  elif command -v docker >/dev/null; then BUILDER=docker
  else die "neither buildah nor docker is installed (Debian: apt-get install buildah podman runc mmdebstrap)"; fi
fi
command -v "$BUILDER" >/dev/null || die "$BUILDER is not installed"

CACHE="$ROOT/images/.cache"
mkdir -p "$CACHE" "$OPENSCORE_CACHE"

# --- 1. the base image (first, so that no wheels are made when there is none) --------------------------------
image_exists() {
  if [ "$BUILDER" = docker ]; then docker image inspect "$1" >/dev/null 2>&1
  else buildah inspect --type image "$1" >/dev/null 2>&1; fi
}
import_base() {  # import_base TARBALL NAME
  if [ "$BUILDER" = docker ]; then
    docker import --change 'CMD ["python3"]' "$1" "$2" >/dev/null
  else
    command -v podman >/dev/null || die "importing the base needs podman (apt-get install podman)"
    podman import --change 'CMD ["python3"]' "$1" "$2" >/dev/null
  fi
}
if [ -z "$BASE_IMAGE" ]; then
  # the base's recipe: its hash names the image and the cached tarball, so a changed recipe makes a new base
  MMDEBSTRAP_ARGS=(--quiet --format=tar --variant=minbase --include=python3,python3-venv,ca-certificates,passwd
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/locale/*' --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*'
    bookworm)
  base_hash="$(printf '%s\n' "${MMDEBSTRAP_ARGS[@]}" "$DEBIAN_MIRROR" | sha256sum | cut -c1-16)"
  BASE_IMAGE="localhost/debian-py:bookworm-$base_hash"
  tarball="$OPENSCORE_CACHE/debian-py-bookworm-$base_hash.tar"
  if image_exists "$BASE_IMAGE"; then
    log "reusing base image $BASE_IMAGE"
  elif [ -s "$tarball" ]; then
    log "importing base image $BASE_IMAGE from the cached $tarball"
    import_base "$tarball" "$BASE_IMAGE"
  else
    # exit code 4: no base image could be made (tests skip on it)
    command -v mmdebstrap >/dev/null || { log "error: no base image given and mmdebstrap is not installed (apt-get install mmdebstrap), or pass --base IMAGE"; exit 4; }
    log "making $BASE_IMAGE with mmdebstrap from $DEBIAN_MIRROR"
    heavy mmdebstrap "${MMDEBSTRAP_ARGS[@]}" "$tarball.tmp" "$DEBIAN_MIRROR" \
      || { rm -f "$tarball.tmp"; log "error: mmdebstrap could not make the base from $DEBIAN_MIRROR"; exit 4; }
    mv "$tarball.tmp" "$tarball"
    import_base "$tarball" "$BASE_IMAGE"
  fi
  LOCAL_BASE=1
fi
if [ -n "${BASE_ONLY:-}" ]; then
  log "base image $BASE_IMAGE"
  echo "$BASE_IMAGE"
  exit 0
fi

# --- 2. wheels for openscore[EXTRAS], the flavour's and EXTRA_PACKAGES, made on the host -----------------------
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  log "no pip in $PYTHON; making a venv for building wheels in images/.cache/venv"
  [ -x "$CACHE/venv/bin/python" ] || "$PYTHON" -m venv "$CACHE/venv"
  PYTHON="$CACHE/venv/bin/python"
fi
PY_MINOR="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ -n "${LOCAL_BASE:-}" ] && [ "$PY_MINOR" != "3.11" ]; then
  die "$PYTHON is Python $PY_MINOR but the local bookworm base has Python 3.11: set PYTHON to a 3.11 interpreter"
fi
# one context folder per flavour, so that two flavours can build side by side
CONTEXT="$CACHE/context-$FLAVOUR"
rm -rf "$CONTEXT"
mkdir -p "$CONTEXT/wheels"
cp images/check-flavour.sh "$CONTEXT/"
log "making wheels for openscore[$EXTRAS] $FLAVOUR_PACKAGES $EXTRA_PACKAGES with $PYTHON (Python $PY_MINOR)"
# wheels downloaded before are kept in $OPENSCORE_CACHE/wheels and offered as links: pip still asks the index for
# the best version, and copies a kept wheel only when it is that version (so the cache never pins anything)
WHEEL_CACHE="$OPENSCORE_CACHE/wheels"
mkdir -p "$WHEEL_CACHE"
# shellcheck disable=SC2086  # the package lists are lists of requirement specifiers
heavy "$PYTHON" -m pip wheel -q --disable-pip-version-check --find-links "$WHEEL_CACHE" -w "$CONTEXT/wheels" \
  ".[$EXTRAS]" $FLAVOUR_PACKAGES $EXTRA_PACKAGES
# openscore's own wheel is made from this clone each time: only the others are kept
find "$CONTEXT/wheels" -name '*.whl' ! -name 'openscore-*' -exec cp -n {} "$WHEEL_CACHE/" \;
log "wheels ready: $(find "$CONTEXT/wheels" -name '*.whl' | wc -l) files, $(du -sm "$CONTEXT/wheels" | cut -f1) MB"

# --- 3. the image ---------------------------------------------------------------------------------------------
build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "EXTRAS=$EXTRAS"
  --build-arg "EXTRA_PACKAGES=$FLAVOUR_PACKAGES $EXTRA_PACKAGES" --build-arg "FLAVOUR=$FLAVOUR" --target "$FLAVOUR")
log "building $TAG ($FLAVOUR) from $BASE_IMAGE with $BUILDER"
old_id=""
if [ "$BUILDER" = buildah ]; then old_id="$(buildah inspect --type image --format '{{.FromImageID}}' "$TAG" 2>/dev/null || true)"; fi
if [ "$BUILDER" = docker ]; then
  heavy docker build "${build_args[@]}" -f images/Dockerfile -t "$TAG" "$CONTEXT"
else
  # --format docker keeps HEALTHCHECK (the OCI format has no field for it); --pull=false: pull the base only when it is absent
  heavy buildah bud --isolation=chroot --format docker --pull=false --layers=false "${build_args[@]}" \
    -f images/Dockerfile -t "$TAG" "$CONTEXT"
fi
rm -rf "$CONTEXT"
# the image this tag named before, now untagged, is removed (kept when a container or another tag uses it)
if [ -n "$old_id" ] && [ "$old_id" != "$(buildah inspect --type image --format '{{.FromImageID}}' "$TAG")" ]; then
  buildah rmi "$old_id" >/dev/null 2>&1 || true
fi
log "built $TAG"
