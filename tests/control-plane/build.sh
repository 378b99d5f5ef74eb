#!/usr/bin/env bash
# Builds the real Kubernetes control plane the cluster tests run against, from Go
# modules, into a cache outside the clone keyed by the pinned versions:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes)
#   etcd                                                             (go.etcd.io/etcd/server/v3)
#   helm                                                             (helm.sh/helm/v4)
# and, from this repository's tests/control-plane/gitops-check, folio-gitops-check (the
# real kstatus, upstream and Flux's fork, and Argo CD's Lua health runner, for
# tests/gitops_health.rs and tests/gitops.rs).
# Prints the bin directory on its last line. Go is the only prerequisite; a cold build
# takes about 15 minutes on 2 cores, a warm one returns at once.
#   build.sh                everything missing or out of date
#   build.sh gitops-check   folio-gitops-check only (about a minute cold), for tests
#                           that need no control plane
set -euo pipefail

KUBERNETES_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
ETCD_VERSION=v3.6.16
HELM_VERSION=v4.3.1

need_go() {
  echo "control-plane: $1; the cluster tests build kube-apiserver and etcd with Go 1.26 or newer (https://go.dev/dl; Go 1.21+ fetches the 1.26 toolchain by itself)" >&2
  exit 1
}
command -v go >/dev/null || need_go "no go command on PATH"
go_minor="$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
[[ -n "$go_minor" && "$go_minor" -ge 21 ]] || need_go "$(go version) is too old"

CACHE="${FOLIO_CONTROL_PLANE_CACHE:-$HOME/.cache/folio-control-plane}"
KEY="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}_$(go env GOVERSION)"
OUT="$CACHE/$KEY"
BIN="$OUT/bin"
WANT=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd helm)

complete() { for b in "${WANT[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done; }
log() { echo "control-plane: $*" >&2; }

# folio-gitops-check is built from sources in this repository, so it is not keyed by
# version like the rest: the binary carries the hash of the folder it was built from
# (-X main.sourceHash) and is rebuilt when that hash differs from the folder's now, e.g.
# after an edit of main.go or go.sum, without touching the control plane. The hash is
# in the binary rather than in a stamp file beside it, so two checkouts building at
# once cannot pair one's binary with the other's stamp.
CHECK_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/gitops-check" && pwd)"
CHECK_HASH="$(cd "$CHECK_SRC" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
check_current() { [[ "$("$BIN/folio-gitops-check" source-hash 2>/dev/null)" == "$CHECK_HASH" ]]; }
build_gitops_check() {
  log "building folio-gitops-check (sources ${CHECK_HASH:0:12})"
  mkdir -p "$BIN"
  local tmp="$BIN/.folio-gitops-check.$$"
  # -mod=readonly: the committed go.sum is the whole truth; the build never rewrites it.
  (cd "$CHECK_SRC" && CGO_ENABLED=0 go build -mod=readonly -buildvcs=false -trimpath \
    -ldflags "-s -w -X main.sourceHash=$CHECK_HASH" -o "$tmp" .) || { rm -f "$tmp"; exit 1; }
  mv "$tmp" "$BIN/folio-gitops-check"
}

if [[ "${1:-}" == gitops-check ]]; then
  check_current || build_gitops_check
  echo "$BIN"
  exit 0
fi
if complete && check_current; then echo "$BIN"; exit 0; fi

mkdir -p "$BIN"
export GOFLAGS="-mod=mod"
export CGO_ENABLED=0

# Kubernetes: its go.mod points the k8s.io/* staging modules at local folders, which a
# module download does not carry; the wrapper module points them at their releases.
build_kubernetes() {
  local dir="$OUT/src/kubernetes"
  rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  go mod init folio.dev/control-plane/kubernetes >/dev/null 2>&1
  local upstream
  upstream="$(go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$upstream" ]] || { log "could not download k8s.io/kubernetes@${KUBERNETES_VERSION}"; exit 1; }
  grep -oE '^[[:space:]]*k8s\.io/[a-z0-9-]+ => \./staging/' "$upstream" | awk '{print $1}' | sort -u |
    while read -r m; do echo "replace $m => $m ${STAGING_VERSION}"; done >>go.mod
  cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  go get "k8s.io/kubernetes@${KUBERNETES_VERSION}" >&2
  go mod tidy -e >/dev/null 2>&1 || true
  local v=k8s.io/component-base/version cv=k8s.io/client-go/pkg/version
  local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  local ld="-s -w -X $v.gitVersion=${KUBERNETES_VERSION} -X $v.gitMajor=1 -X $v.gitMinor=${minor} -X $v.gitTreeState=clean"
  ld+=" -X $cv.gitVersion=${KUBERNETES_VERSION} -X $cv.gitMajor=1 -X $cv.gitMinor=${minor}"
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    log "building $c ${KUBERNETES_VERSION}"
    go build -trimpath -ldflags "$ld" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c"
    mv "$BIN/$c.tmp" "$BIN/$c"
  done
}

build_etcd() {
  local dir="$OUT/src/etcd"
  rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  go mod init folio.dev/control-plane/etcd >/dev/null 2>&1
  cat >main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >&2
  go mod tidy >&2
  log "building etcd ${ETCD_VERSION}"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" .
  mv "$BIN/etcd.tmp" "$BIN/etcd"
}

build_helm() {
  local dir="$OUT/src/helm"
  rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  go mod init folio.dev/control-plane/helm >/dev/null 2>&1
  cat >tools.go <<'GO'
//go:build tools

package tools

import _ "helm.sh/helm/v4/cmd/helm"
GO
  go get "helm.sh/helm/v4@${HELM_VERSION}" >&2
  go mod tidy -e >/dev/null 2>&1 || true
  log "building helm ${HELM_VERSION}"
  go build -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}" -o "$BIN/helm.tmp" helm.sh/helm/v4/cmd/helm
  mv "$BIN/helm.tmp" "$BIN/helm"
}

[[ -x "$BIN/etcd" ]] || build_etcd
[[ -x "$BIN/kube-apiserver" && -x "$BIN/kube-controller-manager" && -x "$BIN/kube-scheduler" && -x "$BIN/kubectl" ]] || build_kubernetes
[[ -x "$BIN/helm" ]] || build_helm
complete || { log "build finished without every binary in $BIN"; exit 1; }
rm -rf "$OUT/src"
check_current || build_gitops_check
echo "$BIN"
