#!/usr/bin/env bash
# Builds nats-server (the JetStream cluster of the local cluster and of the receiver's
# process-level tests) from its Go module, pinned in hack/tools/nats/go.mod, into a cache
# outside the checkout, like hack/node.sh, and prints the absolute path of that directory on
# stdout (and nothing else).
#
# Environment:
#   XDG_CACHE_HOME   cache root (default ~/.cache); output goes to
#                    $XDG_CACHE_HOME/callback-operator/nats-<version>/
#   GOFLAGS, GOPROXY, GOMODCACHE, GOCACHE ... are honoured as usual.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; echo "nats.sh: unexpected argument: $1" >&2; exit 2 ;;
esac

TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")/tools/nats" && pwd)"
NATS_VERSION="$(sed -n 's|^[[:space:]]*github.com/nats-io/nats-server/v2 \(v[^ ]*\).*|\1|p' "${TOOLS}/go.mod")"
[[ -n "${NATS_VERSION}" ]] || { echo "nats.sh: no nats-server version in ${TOOLS}/go.mod" >&2; exit 1; }
SUM="$(cat "${TOOLS}/go.mod" "${TOOLS}/go.sum" | sha256sum | cut -c1-12)"

PART=nats
NAME="nats-${NATS_VERSION}"
BINARIES=(nats-server)
MARKS=("nats-server=${NATS_VERSION}" "tools=${SUM}")
# shellcheck source=lib/build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/build.sh"
cache_init
stage_begin

# The tools module's files, not the checkout: a build never writes into the source tree.
cp "${TOOLS}/go.mod" "${TOOLS}/go.sum" "${SRC}/"
step "downloading the modules of ${TOOLS}" go -C "${SRC}" mod download
timed_build nats-server go -C "${SRC}" build -mod=readonly -trimpath \
  -tags="netgo,osusergo${user_tags:+,${user_tags}}" -ldflags="-s -w" \
  -o "${BIN}/nats-server" github.com/nats-io/nats-server/v2
v="$("${BIN}/nats-server" --version 2>&1)" || die "nats-server --version failed: ${v}"
[[ "${v}" == *"${NATS_VERSION#v}"* ]] || die "nats-server --version says '${v}', expected ${NATS_VERSION}"

stage_publish
log "done in $(fmt_secs $(($(now) - T_START))) (nats-server $(fmt_secs "${TOOK[nats-server]}")): ${OUT}"
printf '%s\n' "${OUT}"
