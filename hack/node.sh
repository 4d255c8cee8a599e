#!/usr/bin/env bash
# Builds the parts of the local cluster's node that come from Go modules, into a
# per-version cache outside the checkout (like hack/control-plane.sh, which
# builds the API server, controller manager, kubectl and etcd), and prints the
# absolute path of that directory on stdout (and nothing else):
#   kubelet, kube-proxy, kube-scheduler   k8s.io/kubernetes
#   containerd, ctr, containerd-shim-runc-v2   github.com/containerd/containerd/v2
#   coredns   github.com/coredns/coredns with a small plugin set: errors, log,
#             health, ready, loadbalance, cache, kubernetes (no forward: a
#             name outside the cluster is never looked up elsewhere)
# runc, the CNI plugins and nft come from Debian's packages (make node-packages).
#
# Environment:
#   K8S_VERSION         k8s.io/kubernetes version                 (default v1.37.2)
#   CONTAINERD_VERSION  github.com/containerd/containerd/v2 version (default v2.4.2)
#   COREDNS_VERSION     github.com/coredns/coredns version        (default v1.15.0)
#   XDG_CACHE_HOME      cache root (default ~/.cache); output goes to
#                       $XDG_CACHE_HOME/callback-operator/node-k8s-<K8S_VERSION>/
#   GOFLAGS, GOPROXY, GOMODCACHE, GOCACHE ... are honoured as usual.
#
# A complete directory (all binaries present and executable, marker file with
# these versions written last) is reused without building. Concurrent runs
# serialise on a flock in the cache; a failed or interrupted build never leaves
# a half-filled output directory.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; echo "node.sh: unexpected argument: $1" >&2; exit 2 ;;
esac

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"

PART=node
NAME="node-k8s-${K8S_VERSION}"
BINARIES=(kubelet kube-proxy kube-scheduler containerd ctr containerd-shim-runc-v2 coredns)
MARKS=("k8s=${K8S_VERSION}" "containerd=${CONTAINERD_VERSION}" "coredns=${COREDNS_VERSION}")
# shellcheck source=lib/build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/build.sh"
cache_init
stage_begin

# ---------------------------------------------------------------- kubernetes
k8s_module "${SRC}/k8s" "${K8S_VERSION}"
K8S_PKGS=(k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kube-scheduler)
step "resolving dependencies of k8s.io/kubernetes@${K8S_VERSION}" \
  go -C "${SRC}/k8s" get "${K8S_PKGS[@]/%/@${K8S_VERSION}}"
for pkg in "${K8S_PKGS[@]}"; do
  b="${pkg##*/}"
  timed_build "${b}" go -C "${SRC}/k8s" build \
    -trimpath -tags="${K8S_TAGS}" -ldflags="${K8S_LDFLAGS}" -o "${BIN}/${b}" "${pkg}"
done

# ---------------------------------------------------------------- containerd
CTRD_MOD=github.com/containerd/containerd/v2
download "${CTRD_MOD}@${CONTAINERD_VERSION}"
CTRD_GOMOD="$(field "${DL_JSON}" GoMod)"
[[ -f "${CTRD_GOMOD}" ]] || die "go mod download did not report the go.mod of ${CTRD_MOD}@${CONTAINERD_VERSION}"
mkdir -p "${SRC}/containerd"
write_gomod "${SRC}/containerd" "${CTRD_GOMOD}" "${CTRD_MOD}" "${CONTAINERD_VERSION}"
CTRD_PKGS=("${CTRD_MOD}/cmd/containerd" "${CTRD_MOD}/cmd/ctr" "${CTRD_MOD}/cmd/containerd-shim-runc-v2")
step "resolving dependencies of ${CTRD_MOD}@${CONTAINERD_VERSION}" \
  go -C "${SRC}/containerd" get "${CTRD_PKGS[@]/%/@${CONTAINERD_VERSION}}"
# As containerd's Makefile builds its static release: no cgo, no btrfs/devmapper/zfs
# snapshotters, and the shim without gRPC (it speaks ttrpc).
ctrd_tags="urfave_cli_no_docs,no_btrfs,no_devmapper,no_zfs,osusergo,netgo${user_tags:+,${user_tags}}"
ctrd_ldflags="-s -w -X ${CTRD_MOD}/version.Version=${CONTAINERD_VERSION}"
ctrd_ldflags+=" -X ${CTRD_MOD}/version.Package=${CTRD_MOD}"
for pkg in "${CTRD_PKGS[@]}"; do
  b="${pkg##*/}"
  tags="${ctrd_tags}"
  [[ "${b}" != containerd-shim-runc-v2 ]] || tags+=",no_grpc"
  timed_build "${b}" go -C "${SRC}/containerd" build \
    -trimpath -tags="${tags}" -ldflags="${ctrd_ldflags}" -o "${BIN}/${b}" "${pkg}"
done

# ------------------------------------------------------------------- coredns
DNS_MOD=github.com/coredns/coredns
download "${DNS_MOD}@${COREDNS_VERSION}"
DNS_GOMOD="$(field "${DL_JSON}" GoMod)"
[[ -f "${DNS_GOMOD}" ]] || die "go mod download did not report the go.mod of ${DNS_MOD}@${COREDNS_VERSION}"
mkdir -p "${SRC}/coredns"
write_gomod "${SRC}/coredns" "${DNS_GOMOD}" "${DNS_MOD}" "${COREDNS_VERSION}"
# Upstream's main imports every plugin (core/plugin); this one only what the cluster's DNS
# needs, in upstream's order (core/dnsserver/zdirectives.go): no forward, no hosts file.
cat >"${SRC}/coredns/main.go" <<'GO'
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	dnsserver.Directives = []string{"ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes"}
}

func main() { coremain.Run() }
GO
step "resolving dependencies of ${DNS_MOD}@${COREDNS_VERSION}" \
  go -C "${SRC}/coredns" mod tidy
timed_build coredns go -C "${SRC}/coredns" build \
  -trimpath -tags="netgo,osusergo${user_tags:+,${user_tags}}" -ldflags="-s -w" -o "${BIN}/coredns" .

# ------------------------------------------------------------ check, publish
for b in kubelet kube-proxy kube-scheduler; do
  check_k8s_version "${BIN}/${b}" "${K8S_VERSION}"
done
v="$("${BIN}/containerd" --version 2>&1)" || die "containerd --version failed: ${v}"
[[ "${v}" == *" ${CONTAINERD_VERSION} "* || "${v}" == *" ${CONTAINERD_VERSION}" ]] || die "containerd --version says '${v}'"
v="$("${BIN}/coredns" -version 2>&1)" || die "coredns -version failed: ${v}"
[[ "${v}" == *"CoreDNS-${COREDNS_VERSION#v}"* ]] || die "coredns -version says '${v}'"
v="$("${BIN}/coredns" -plugins 2>&1)" || die "coredns -plugins failed: ${v}"
[[ "${v}" != *forward* ]] || die "coredns has the forward plugin: ${v}"

stage_publish
summary=""
for b in kubelet kube-proxy kube-scheduler containerd ctr containerd-shim-runc-v2 coredns; do
  summary+="${summary:+, }${b} $(fmt_secs "${TOOK[${b}]}")"
done
log "done in $(fmt_secs $(($(now) - T_START))) (${summary}): ${OUT}"
printf '%s\n' "${OUT}"
