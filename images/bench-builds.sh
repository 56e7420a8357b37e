#!/usr/bin/env bash
# Time images/build.sh per flavour and print each image's size: the figures behind README's Images section, and
# the place the cuda flavour is built (about 1.5 GB of CUDA wheels: too slow for CI's image tests, which build it
# only with OPENSCORE_TEST_FLAVOURS=all).
#
#   images/bench-builds.sh                    # cpu, opencl, cuda on the cached base
#   images/bench-builds.sh --cold cpu         # the base made from scratch first (mmdebstrap), then cpu
#
# --cold: the base image's tag is removed and a fresh, empty OPENSCORE_CACHE is used, so the base is made again
# with mmdebstrap (then tagged as before). Images are tagged localhost/openscore-bench:FLAVOUR (replaced each run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cold=""
if [ "${1:-}" = "--cold" ]; then cold=1; shift; fi
flavours=("$@")
[ ${#flavours[@]} -gt 0 ] || flavours=(cpu opencl cuda)

if [ -n "$cold" ]; then
  base="$(bash "$ROOT/images/build.sh" --base-only 2>/dev/null)"
  podman untag "$base" 2>/dev/null || true
  OPENSCORE_CACHE="$(mktemp -d)"
  export OPENSCORE_CACHE
  trap 'rm -rf "$OPENSCORE_CACHE"' EXIT
  start=$SECONDS
  bash "$ROOT/images/build.sh" --base-only >/dev/null
  echo "base (mmdebstrap + import): $((SECONDS - start)) s, $(podman image inspect --format '{{.Size}}' "$base") bytes"
fi

for flavour in "${flavours[@]}"; do
  start=$SECONDS
  bash "$ROOT/images/build.sh" --flavour "$flavour" -t "localhost/openscore-bench:$flavour"
  seconds=$((SECONDS - start))
  size="$(podman image inspect --format '{{.Size}}' "localhost/openscore-bench:$flavour")"
  echo "$flavour: built in $seconds s, $size bytes ($((size / 1000000)) MB)"
done
