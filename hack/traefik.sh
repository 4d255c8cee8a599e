#!/usr/bin/env bash
# Builds Traefik, the local cluster's ingress controller and Gateway API implementation,
# from the tools module hack/tools/traefik (its own go.mod, never the operator's), into a
# cache outside the checkout, and prints the absolute path of that directory on stdout
# (and nothing else): <dir>/traefik.
#
# The version is the one hack/tools/traefik/go.mod requires; the cache directory is
# named after it and its marker holds the go.sum's hash, so a changed tools module builds
# again. Like hack/node.sh: a flock, a temp dir renamed into place, the marker written last.
#
# Environment:
#   XDG_CACHE_HOME  cache root (default ~/.cache); output goes to
#                   $XDG_CACHE_HOME/callback-operator/traefik-<version>/
#   GOFLAGS, GOPROXY, GOMODCACHE, GOCACHE ... are honoured as usual.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; echo "traefik.sh: unexpected argument: $1" >&2; exit 2 ;;
esac

TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")/tools/traefik" && pwd)"
MOD=github.com/traefik/traefik/v3
VERSION="$(awk -v m="${MOD}" '$1 == m { print $2; exit }' "${TOOLS}/go.mod")"
[[ -n "${VERSION}" ]] || { echo "[traefik] ERROR: ${TOOLS}/go.mod does not require ${MOD}" >&2; exit 1; }

PART=traefik
NAME="traefik-${VERSION}"
BINARIES=(traefik)
MARKS=("traefik=${VERSION}" "gosum=$(sha256sum "${TOOLS}/go.sum" | cut -d' ' -f1)")
# shellcheck source=lib/build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/build.sh"
cache_init
stage_begin

# As Traefik's Makefile builds a release binary (the version in pkg/version; the web UI is
# embedded from the module as published).
ldflags="-s -w -X ${MOD}/pkg/version.Version=${VERSION} -X ${MOD}/pkg/version.Codename=callback-operator"
step "downloading the modules of hack/tools/traefik" go -C "${TOOLS}" mod download
timed_build traefik go -C "${TOOLS}" build -trimpath -tags="${user_tags}" -ldflags="${ldflags}" \
  -o "${BIN}/traefik" "${MOD}/cmd/traefik"

v="$("${BIN}/traefik" version 2>&1)" || die "traefik version failed: ${v}"
[[ "${v}" == *"${VERSION}"* ]] || die "traefik version says '${v}', expected ${VERSION}"

stage_publish
log "done in $(fmt_secs $(($(now) - T_START))): ${OUT}"
printf '%s\n' "${OUT}"
