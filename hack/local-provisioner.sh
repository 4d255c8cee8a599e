#!/usr/bin/env bash
# Builds the local cluster's storage provisioner (hack/tools/local-provisioner, a module of
# its own on sigs.k8s.io/sig-storage-lib-external-provisioner) into a cache outside the
# checkout, like hack/node.sh, and prints the absolute path of that directory on stdout
# (and nothing else). test/localcluster assembles it into an image and runs it as the
# cluster's default StorageClass.
#
# Environment:
#   XDG_CACHE_HOME   cache root (default ~/.cache); output goes to
#                    $XDG_CACHE_HOME/callback-operator/local-provisioner-<digest>/, the
#                    digest being that of the tools module's files (a change rebuilds)
#   GOFLAGS, GOPROXY, GOMODCACHE, GOCACHE ... are honoured as usual.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; echo "local-provisioner.sh: unexpected argument: $1" >&2; exit 2 ;;
esac

TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")/tools/local-provisioner" && pwd)"
DIGEST="$(cd "${TOOLS}" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)"
LIB_VERSION="$(sed -n 's|^[[:space:]]*sigs.k8s.io/sig-storage-lib-external-provisioner/v13 \(v[^ ]*\).*|\1|p' "${TOOLS}/go.mod")"

PART=local-provisioner
NAME="local-provisioner-${DIGEST}"
BINARIES=(local-provisioner)
MARKS=("source=${DIGEST}" "sig-storage-lib-external-provisioner=${LIB_VERSION}")
# shellcheck source=lib/build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/build.sh"
cache_init
stage_begin

# The module's files, not the checkout: a build never writes into the source tree.
cp "${TOOLS}/go.mod" "${TOOLS}/go.sum" "${TOOLS}"/*.go "${SRC}/"
step "downloading the modules of ${TOOLS}" go -C "${SRC}" mod download
timed_build local-provisioner go -C "${SRC}" build -mod=readonly \
  -trimpath -tags="netgo,osusergo${user_tags:+,${user_tags}}" -ldflags="-s -w" -o "${BIN}/local-provisioner" .
"${BIN}/local-provisioner" -h >/dev/null 2>&1 || [[ $? -eq 2 ]] || die "local-provisioner -h failed"

stage_publish
log "done in $(fmt_secs $(($(now) - T_START))) (local-provisioner $(fmt_secs "${TOOK[local-provisioner]}")): ${OUT}"
printf '%s\n' "${OUT}"
