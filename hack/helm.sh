#!/usr/bin/env bash
# Builds helm (helm.sh/helm/v4/cmd/helm, pinned by the tools module hack/tools/helm) into a
# per-version cache outside the checkout, and prints the directory on stdout (and nothing
# else); `make helm` links bin/helm to the binary in it:
#
#   "$(hack/helm.sh)/helm" lint charts/callback-operator
#
# Environment:
#   XDG_CACHE_HOME  cache root (default ~/.cache); output goes to
#                   $XDG_CACHE_HOME/callback-operator/helm-<version>/
#   GOFLAGS, GOPROXY, GOMODCACHE, GOCACHE ... are honoured as usual.
#
# The version is the one hack/tools/helm/go.mod requires. Concurrent runs serialise on a
# flock in the cache; the build happens in a temp dir renamed into place when complete
# (hack/lib/build.sh).
set -euo pipefail

case "${1:-}" in
  -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
  "") ;;
  *) echo "helm.sh: unexpected argument: $1" >&2; exit 2 ;;
esac

TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")/tools/helm" && pwd)"
HELM_VERSION="$(sed -n 's/^require helm\.sh\/helm\/v4 \(v[0-9][^ ]*\)$/\1/p' "${TOOLS}/go.mod")"
PART=helm
[[ -n "${HELM_VERSION}" ]] || { echo "[helm] ERROR: no 'require helm.sh/helm/v4 <version>' line in ${TOOLS}/go.mod" >&2; exit 1; }
NAME="helm-${HELM_VERSION}"
BINARIES=(helm)
MARKS=("helm=${HELM_VERSION}" "gosum=$(sha256sum "${TOOLS}/go.sum" | cut -c1-16)")
# shellcheck source=lib/build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/build.sh"
cache_init
stage_begin

ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}"
ldflags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
timed_build helm go -C "${TOOLS}" build -mod=readonly -trimpath \
  ${user_tags:+-tags="${user_tags}"} -ldflags="${ldflags}" -o "${BIN}/helm" helm.sh/helm/v4/cmd/helm

v="$("${BIN}/helm" version --short 2>&1)" || die "helm version failed: ${v}"
[[ "${v}" == "${HELM_VERSION}"* ]] || die "helm version says '${v}', expected ${HELM_VERSION}"
stage_publish
log "helm ${HELM_VERSION} in ${OUT} ($(fmt_secs $(($(now) - T_START))))"
printf '%s\n' "${OUT}"
