#!/usr/bin/env bash
# Builds promtool and prometheus (github.com/prometheus/prometheus, pinned by the tools
# module hack/tools/prometheus) into a per-version cache outside the checkout, and prints
# the directory on stdout (and nothing else); `make promtool` links bin/promtool to it:
#
#   "$(hack/prometheus.sh)/promtool" test rules config/prometheus/*_test.yaml
#
# prometheus is built without the web UI's assets (no builtinassets tag: the HTTP API works,
# the UI pages do not) and with only the file, HTTP and Kubernetes service discoveries
# (remove_all_sd,enable_kubernetes_sd).
#
# Environment:
#   XDG_CACHE_HOME  cache root (default ~/.cache); output goes to
#                   $XDG_CACHE_HOME/callback-operator/prometheus-<version>/
#   GOFLAGS, GOPROXY, GOMODCACHE, GOCACHE ... are honoured as usual.
set -euo pipefail

case "${1:-}" in
  -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
  "") ;;
  *) echo "prometheus.sh: unexpected argument: $1" >&2; exit 2 ;;
esac

TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")/tools/prometheus" && pwd)"
MODULE=github.com/prometheus/prometheus
PROM_MODULE_VERSION="$(sed -n 's/^require github\.com\/prometheus\/prometheus \(v[0-9][^ ]*\)$/\1/p' "${TOOLS}/go.mod")"
[[ -n "${PROM_MODULE_VERSION}" ]] ||
  PROM_MODULE_VERSION="$(sed -n 's/^[[:space:]]*github\.com\/prometheus\/prometheus \(v[0-9][^ ]*\)$/\1/p' "${TOOLS}/go.mod" | head -n1)"
PART=prometheus
[[ -n "${PROM_MODULE_VERSION}" ]] || { echo "[prometheus] ERROR: ${TOOLS}/go.mod does not require ${MODULE}" >&2; exit 1; }
# Module v0.316.0 is Prometheus 3.16.0.
[[ "${PROM_MODULE_VERSION}" =~ ^v0\.([0-9]+)([0-9]{2})\.([0-9]+)$ ]] ||
  { echo "[prometheus] ERROR: cannot map module version ${PROM_MODULE_VERSION} to a Prometheus release" >&2; exit 1; }
PROM_VERSION="${BASH_REMATCH[1]}.$((10#${BASH_REMATCH[2]})).${BASH_REMATCH[3]}"
NAME="prometheus-${PROM_VERSION}"
BINARIES=(promtool prometheus)
MARKS=("prometheus=${PROM_MODULE_VERSION}" "gosum=$(sha256sum "${TOOLS}/go.sum" | cut -c1-16)")
# shellcheck source=lib/build.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/build.sh"
cache_init
stage_begin

ldflags="-s -w -X github.com/prometheus/common/version.Version=${PROM_VERSION}"
ldflags+=" -X github.com/prometheus/common/version.Branch=HEAD"
ldflags+=" -X github.com/prometheus/common/version.BuildUser=callback-operator"
tags="netgo,remove_all_sd,enable_kubernetes_sd${user_tags:+,${user_tags}}"
for b in promtool prometheus; do
  timed_build "${b}" go -C "${TOOLS}" build -mod=readonly -trimpath -tags="${tags}" \
    -ldflags="${ldflags}" -o "${BIN}/${b}" "${MODULE}/cmd/${b}"
  v="$("${BIN}/${b}" --version 2>&1 | head -n1)" || die "${b} --version failed: ${v}"
  [[ "${v}" == *"version ${PROM_VERSION} "* ]] || die "${b} --version says '${v}', expected version ${PROM_VERSION}"
done
stage_publish
log "promtool and prometheus ${PROM_VERSION} in ${OUT} ($(fmt_secs $(($(now) - T_START))))"
printf '%s\n' "${OUT}"
