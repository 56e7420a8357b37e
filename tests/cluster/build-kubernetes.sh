#!/usr/bin/env bash
# Build the Kubernetes v1.20 binaries the cluster tests run (kube-apiserver, kube-scheduler,
# kube-controller-manager, kubelet, kube-proxy) and the pause image's binary, from Debian bookworm's
# `kubernetes` source package (the only source of the server components here), and install the Debian
# packages the test cluster runs with (etcd, containerd, runc, CNI plugins, iptables).
#
# The binaries are cached in $OPENSCORE_KUBE_CACHE (default /var/cache/openscore/kubernetes/<source version>):
# a second run only checks that they are there. A cold build is about 7-9 minutes on 2 cores.
# Prints the cache folder on its last line.
set -euo pipefail
CACHE_ROOT="${OPENSCORE_KUBE_CACHE:-${OPENSCORE_CACHE:-/var/cache/openscore}/kubernetes}"
RUN_PKGS=(etcd-server containerd runc containernetworking-plugins iptables iproute2 conntrack)
BUILD_PKGS=(golang-go rsync jq golang-github-modern-go-reflect2-dev gcc libc6-dev dpkg-dev make)
BINARIES=(kube-apiserver kube-scheduler kube-controller-manager kubelet kube-proxy)

apt_install() {
  local need=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  [ ${#need[@]} -eq 0 ] && return 0
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# Debian source packages, for `apt-get source` (bookworm's kubernetes 1.20.2)
SRC_LIST=/etc/apt/sources.list.d/openscore-debian-src.sources
if ! apt-cache showsrc kubernetes >/dev/null 2>&1 || [ -z "$(apt-cache showsrc kubernetes 2>/dev/null)" ]; then
  if [ ! -f "$SRC_LIST" ]; then
    cat > "$SRC_LIST" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  apt-get update -qq
fi
VERSION=$(apt-cache showsrc kubernetes | awk '/^Version:/ {print $2; exit}')
[ -n "$VERSION" ] || { echo "no kubernetes source package found" >&2; exit 1; }
OUT="$CACHE_ROOT/$VERSION"
apt_install "${RUN_PKGS[@]}"

have_all() {
  for b in "${BINARIES[@]}" pause; do [ -x "$OUT/bin/$b" ] || return 1; done
}
if have_all; then echo "$OUT"; exit 0; fi

start=$SECONDS
apt_install "${BUILD_PKGS[@]}"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/openscore-kube-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
apt-get source --download-only -qq "kubernetes=$VERSION" >/dev/null
tar -xf kubernetes_*.orig.tar.* 
SRC=$(find . -maxdepth 1 -mindepth 1 -type d -name 'kubernetes*' | head -1)
SRC=$(cd "$SRC" && pwd)
mkdir -p "$WORK/gopath/src/k8s.io"
ln -s "$SRC" "$WORK/gopath/src/k8s.io/kubernetes"
# the vendored reflect2 1.0.1 makes the apiserver die with SIGSEGV under Go >= 1.18: use Debian's 1.0.2
rm -f "$SRC"/vendor/github.com/modern-go/reflect2/*.go
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$SRC/vendor/github.com/modern-go/reflect2/"
export GO111MODULE=off GOPATH="$WORK/gopath" CGO_ENABLED=0
export GOCACHE="${GOCACHE:-$CACHE_ROOT/go-build-cache}"
UP=${VERSION%%-*}; UP=${UP##*really}; KVER=v${UP%%+*}  # 1.20.5+really1.20.2-1.1 is v1.20.2
MAJOR=$(echo "${KVER#v}" | cut -d. -f1); MINOR=$(echo "${KVER#v}" | cut -d. -f2)
cd "$WORK/gopath/src/k8s.io/kubernetes"
KUBE_GIT_VERSION=$KVER make gen_openapi >/dev/null
LD="-s -w"
for pkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
  LD="$LD -X $pkg.gitVersion=$KVER -X $pkg.gitMajor=$MAJOR -X $pkg.gitMinor=$MINOR -X $pkg.gitTreeState=clean"
done
mkdir -p "$OUT/bin.partial"
for b in "${BINARIES[@]}"; do
  t=$SECONDS
  go build -ldflags "$LD" -o "$OUT/bin.partial/$b" "./cmd/$b"
  echo "built $b in $((SECONDS - t)) s" >&2
done
gcc -static -Os -o "$OUT/bin.partial/pause" build/pause/linux/pause.c -DVERSION=3.4
rm -rf "$OUT/bin" && mv "$OUT/bin.partial" "$OUT/bin"
echo "kubernetes $KVER binaries built in $((SECONDS - start)) s" >&2
echo "$OUT"
