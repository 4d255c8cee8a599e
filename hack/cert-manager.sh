#!/usr/bin/env bash
# Builds cert-manager's controller for the local cluster from the tools module
# hack/tools/cert-manager (a main of this project's own over cert-manager's public
# pkg/controller packages: its cmd/* modules are not on the module proxy), into a cache
# outside the checkout, and prints the absolute path of that directory on stdout (and
# nothing else): <dir>/cert-manager-controller, and <dir>/crds/*.yaml, the module's
# deploy/crds, which the local cluster applies server-side (they are not in this repository).
#
# The version is the one hack/tools/cert-manager/go.mod requires; the cache directory is
# named after it and its marker holds the hash of the tools module (go.mod, go.sum,
# main.go), so a change builds again. Like hack/node.sh: a flock, a temp dir renamed into
# place, the marker written last.
#
# Environment:
#   XDG_CACHE_HOME  cache root (default ~/.cache); output goes to
#                   $XDG_CACHE_HOME/callback-operator/cert-manager-<version>/
#   GOFLAGS, GOPROXY, GOMODCACHE, GOCACHE ... are honoured as usual.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; echo "cert-manager.sh: unexpected argument: $1" >&2; exit 2 ;;
esac

TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")/tools/cert-manager" && pwd)"
MOD=github.com/cert-manager/cert-manager
VERSION="$(awk -v m="${MOD}" '$1 == m { print $2; exit }' "${TOOLS}/go.mod")"
[[ -n "${VERSION}" ]] || { echo "[cert-manager] ERROR: ${TOOLS}/go.mod does not require ${MOD}" >&2; exit 1; }

PART=cert-manager
NAME="cert-manager-${VERSION}"
BINARIES=(cert-manager-controller)
CRDS=(cert-manager.io_certificaterequests cert-manager.io_certificates cert-manager.io_clusterissuers
  cert-manager.io_issuers acme.cert-manager.io_challenges acme.cert-manager.io_orders)
for c in "${CRDS[@]}"; do BINARIES+=("crds/${c}.yaml"); done
MARKS=("cert-manager=${VERSION}" "tools=$(cat "${TOOLS}/go.mod" "${TOOLS}/go.sum" "${TOOLS}"/*.go | sha256sum | cut -d' ' -f1)")
# shellcheck source=lib/build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/build.sh"
# is_complete wants executables; the CRDs are data: check them as files.
is_complete() {
  local dir="$1" b m
  [[ -f "${dir}/${MARKER}" && -x "${dir}/cert-manager-controller" ]] || return 1
  for b in "${BINARIES[@]}"; do [[ -f "${dir}/${b}" ]] || return 1; done
  for m in "${MARKS[@]}"; do grep -qxF "${m}" "${dir}/${MARKER}" || return 1; done
}
cache_init
stage_begin

download "${MOD}@${VERSION}"
dir="$(field "${DL_JSON}" Dir)"
[[ -d "${dir}/deploy/crds" ]] || die "${MOD}@${VERSION} has no deploy/crds"
mkdir -p "${BIN}/crds"
for c in "${CRDS[@]}"; do
  f="${dir}/deploy/crds/${c}.yaml"
  [[ -f "${f}" ]] || die "${MOD}@${VERSION} has no deploy/crds/${c}.yaml"
  cp "${f}" "${BIN}/crds/" || die "copying ${f}"
  chmod 0644 "${BIN}/crds/${c}.yaml"
done
step "downloading the modules of hack/tools/cert-manager" go -C "${TOOLS}" mod download
timed_build cert-manager-controller go -C "${TOOLS}" build -trimpath -tags="${user_tags}" \
  -ldflags="-s -w -X ${MOD}/pkg/util.AppVersion=${VERSION}" -o "${BIN}/cert-manager-controller" .
v="$("${BIN}/cert-manager-controller" --help 2>&1)" || true
[[ "${v}" == *cluster-resource-namespace* ]] || die "cert-manager-controller --help says '${v}'"

stage_publish
log "done in $(fmt_secs $(($(now) - T_START))): ${OUT}"
printf '%s\n' "${OUT}"
