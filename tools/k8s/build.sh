#!/usr/bin/env bash
# Builds the Kubernetes test control plane used by internal/k8stest:
#   etcd 3.7.0, kube-apiserver / kube-controller-manager / kube-scheduler v1.37.2
#   (from this tools module) and kwok v0.8.0 (go install, its own module).
#
# The binaries go to a cache outside the clone:
#   ${ALOFT_CACHE:-$HOME/.cache/aloft}/k8s/<key>/bin
# where <key> is a short sha256 of this module's go.mod and go.sum, `go env
# GOVERSION GOOS GOARCH`, the kwok version and the ldflags below. If all five
# binaries are there the script returns at once; otherwise it builds into a
# temporary directory and renames it into place, so an interrupted build never
# leaves a half-filled cache. A cold build takes about 15 minutes on 2 cores.
#
# The last line on stdout is the bin directory; progress goes to stderr.
#   tools/k8s/build.sh              build if needed, print the bin dir
#   tools/k8s/build.sh --print-dir  print the bin dir if it is complete, else exit 1
set -euo pipefail

K8S_VERSION=v1.37.2
KWOK_VERSION=v0.8.0
# Version ldflags so the servers report v1.37.2 (without them they say
# v0.0.0-master+$Format:%H$ and kubectl cannot parse it). They are ignored for
# etcd, which does not link k8s.io/component-base.
LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/component-base/version.gitTreeState=clean"
KWOK_LDFLAGS="-s -w"
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export GOWORK=off

print_only=0
case "${1:-}" in
  --print-dir) print_only=1 ;;
  "") ;;
  *) echo "usage: $0 [--print-dir]" >&2; exit 2 ;;
esac

go=${GO:-go}
key=$({
  cat "$here/go.mod" "$here/go.sum"
  "$go" env GOVERSION GOOS GOARCH
  echo "kwok=$KWOK_VERSION"
  echo "ldflags=$LDFLAGS"
  echo "kwok-ldflags=$KWOK_LDFLAGS"
} | sha256sum | cut -c1-16)

root="${ALOFT_CACHE:-$HOME/.cache/aloft}/k8s"
dir="$root/$key"
bin="$dir/bin"

complete() {
  local b
  for b in "${BINARIES[@]}"; do
    [ -x "$bin/$b" ] || return 1
  done
}

if complete; then
  echo "$bin"
  exit 0
fi
if [ "$print_only" = 1 ]; then
  echo "k8s test binaries not built for key $key (run tools/k8s/build.sh or make k8s-tools)" >&2
  exit 1
fi

mkdir -p "$root"
# One build at a time per key: a second caller waits and then finds the result.
exec 9>"$root/$key.lock"
if command -v flock >/dev/null; then
  flock 9
fi
if complete; then
  echo "$bin"
  exit 0
fi

tmp=$(mktemp -d "$root/.build-$key.XXXXXX")
chmod 755 "$tmp"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building k8s test binaries ($K8S_VERSION, kwok $KWOK_VERSION) into $dir; a cold build takes ~15 min" >&2
start=$(date +%s)

mkdir -p "$tmp/bin"
# kwok in parallel: it has its own dependency graph, and the links of the big
# binaries are mostly single-threaded, so the two overlap well.
(
  cd "$tmp"
  GOBIN="$tmp/bin" GOFLAGS="${GOFLAGS:-}" "$go" install -ldflags "$KWOK_LDFLAGS" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
) >&2 &
kwok_pid=$!

(
  cd "$here"
  "$go" build -ldflags "$LDFLAGS" -o "$tmp/bin/" \
    go.etcd.io/etcd/server/v3 \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler
) >&2 || { kill "$kwok_pid" 2>/dev/null; wait "$kwok_pid" 2>/dev/null; exit 1; }
wait "$kwok_pid"

# `go build -o dir/` names the etcd binary after go.etcd.io/etcd/server/v3.
if [ ! -e "$tmp/bin/etcd" ] && [ -e "$tmp/bin/server" ]; then
  mv "$tmp/bin/server" "$tmp/bin/etcd"
fi
for b in "${BINARIES[@]}"; do
  [ -x "$tmp/bin/$b" ] || { echo "build.sh: $b missing after build" >&2; exit 1; }
done
{
  echo "key=$key"
  echo "k8s=$K8S_VERSION kwok=$KWOK_VERSION $("$go" env GOVERSION)"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ) seconds=$(( $(date +%s) - start ))"
} >"$tmp/BUILD-INFO"

# Atomic publish: rename(2) of the finished directory. An older incomplete
# directory for this key (never produced by this script) is replaced.
if [ -e "$dir" ]; then
  rm -rf "$dir"
fi
mv -T "$tmp" "$dir"
trap - EXIT
echo "built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
