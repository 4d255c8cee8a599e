#!/usr/bin/env bash
# Builds the control-plane binaries used by envtest and the local cluster
# (kube-apiserver, kube-controller-manager, kubectl, etcd) from their upstream
# Go modules, into a per-version cache outside the checkout, and prints the
# absolute path of that directory on stdout (and nothing else):
#
#   KUBEBUILDER_ASSETS="$(hack/control-plane.sh)" go test ./...
#
# Environment:
#   K8S_VERSION     k8s.io/kubernetes version           (default v1.37.2)
#   ETCD_VERSION    go.etcd.io/etcd/server/v3 version   (default v3.7.3)
#   XDG_CACHE_HOME  cache root (default ~/.cache); output goes to
#                   $XDG_CACHE_HOME/callback-operator/k8s-<K8S_VERSION>/
#   K8S_GIT_COMMIT  optional: git commit of the Kubernetes tag, for /version
#                   (the module proxy does not tell us; empty by default)
#   ETCD_GIT_SHA    optional: git sha of the etcd tag, for `etcd --version`
#   GOFLAGS, GOPROXY, GOMODCACHE, GOCACHE ... are honoured as usual.
#
# Needs only Go (>= the go line of k8s.io/kubernetes' go.mod) and the Go module
# proxy. A complete directory (all binaries present and executable, marker file
# written last) is reused without building. Concurrent runs serialise on a
# flock in the cache; builds happen in a temp dir in the cache that is renamed
# into place only when complete, so a failed or interrupted build never leaves
# a half-filled output directory.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; echo "control-plane.sh: unexpected argument: $1" >&2; exit 2 ;;
esac

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.3}"
[[ "${ETCD_VERSION}" =~ ^v3\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
  { echo "[control-plane] ERROR: ETCD_VERSION must look like v3.<minor>.<patch>, got '${ETCD_VERSION}'" >&2; exit 1; }

PART=control-plane
NAME="k8s-${K8S_VERSION}"
BINARIES=(kube-apiserver kube-controller-manager kubectl etcd)
MARKS=("k8s=${K8S_VERSION}" "etcd=${ETCD_VERSION}")
# shellcheck source=lib/build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/build.sh"
cache_init
stage_begin

# ---------------------------------------------------------------- kubernetes
k8s_module "${SRC}/k8s" "${K8S_VERSION}"
K8S_PKGS=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
log "resolving dependencies of ${K8S_PKGS[*]}"
t0="$(now)"
step "resolving dependencies of k8s.io/kubernetes@${K8S_VERSION}" \
  go -C "${SRC}/k8s" get "${K8S_PKGS[@]/%/@${K8S_VERSION}}"
log "resolved in $(fmt_secs $(($(now) - t0)))"
for pkg in "${K8S_PKGS[@]}"; do
  b="${pkg##*/}"
  timed_build "${b}" go -C "${SRC}/k8s" build \
    -trimpath -tags="${K8S_TAGS}" -ldflags="${K8S_LDFLAGS}" -o "${BIN}/${b}" "${pkg}"
done

# ---------------------------------------------------------------------- etcd
ETCD_MOD=go.etcd.io/etcd/server/v3
download "${ETCD_MOD}@${ETCD_VERSION}"
ETCD_GOMOD="$(field "${DL_JSON}" GoMod)"
[[ -f "${ETCD_GOMOD}" ]] || die "go mod download did not report the go.mod of ${ETCD_MOD}@${ETCD_VERSION}"
# etcd's own go.mod replaces its sibling modules with ../api etc.; those are
# ignored for a dependency, and its require lines pin the same release.
mkdir -p "${SRC}/etcd"
write_gomod "${SRC}/etcd" "${ETCD_GOMOD}" "${ETCD_MOD}" "${ETCD_VERSION}"
step "resolving dependencies of ${ETCD_MOD}@${ETCD_VERSION}" \
  go -C "${SRC}/etcd" get "${ETCD_MOD}@${ETCD_VERSION}"
etcd_ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.Version=${ETCD_VERSION#v}"
etcd_ldflags+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_GIT_SHA:-unknown}"
timed_build etcd go -C "${SRC}/etcd" build \
  -trimpath ${user_tags:+-tags="${user_tags}"} -ldflags="${etcd_ldflags}" -o "${BIN}/etcd" "${ETCD_MOD}"

# ------------------------------------------------------------ check, publish
for b in kube-apiserver kube-controller-manager; do
  check_k8s_version "${BIN}/${b}" "${K8S_VERSION}"
done
v="$("${BIN}/kubectl" version --client 2>&1)" || die "kubectl version --client failed: ${v}"
[[ "${v}" == *"Client Version: ${K8S_VERSION}"* ]] || die "kubectl version --client says '${v}'"
v="$("${BIN}/etcd" --version 2>&1)" || die "etcd --version failed: ${v}"
[[ "${v}" == *"etcd Version: ${ETCD_VERSION#v}"* ]] || die "etcd --version says '${v}'"

stage_publish
log "done in $(fmt_secs $(($(now) - T_START))) (kube-apiserver $(fmt_secs "${TOOK[kube-apiserver]}"), kube-controller-manager $(fmt_secs "${TOOK[kube-controller-manager]}"), kubectl $(fmt_secs "${TOOK[kubectl]}"), etcd $(fmt_secs "${TOOK[etcd]}")): ${OUT}"
printf '%s\n' "${OUT}"
