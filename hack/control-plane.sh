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
BINARIES=(kube-apiserver kube-controller-manager kubectl etcd)
MARKER=".complete"

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { printf '[control-plane] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "${K8S_VERSION}" =~ ^v1\.([0-9]+)\.([0-9]+)(-[0-9A-Za-z.-]+)?$ ]] ||
  die "K8S_VERSION must look like v1.<minor>.<patch>[-pre], got '${K8S_VERSION}'"
K8S_MINOR="${BASH_REMATCH[1]}"
# Staging modules (k8s.io/api, client-go, ...) are published as v0.<minor>.<patch>.
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
[[ "${ETCD_VERSION}" =~ ^v3\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
  die "ETCD_VERSION must look like v3.<minor>.<patch>, got '${ETCD_VERSION}'"

cache_base="${XDG_CACHE_HOME:-}"
[[ "${cache_base}" == /* ]] || cache_base="${HOME:?HOME is not set}/.cache" # XDG: ignore relative paths
CACHE_ROOT="${cache_base}/callback-operator"
NAME="k8s-${K8S_VERSION}"
OUT="${CACHE_ROOT}/${NAME}"

is_complete() {
  local dir="$1" b
  [[ -f "${dir}/${MARKER}" ]] || return 1
  for b in "${BINARIES[@]}"; do
    [[ -f "${dir}/${b}" && -x "${dir}/${b}" ]] || return 1
  done
  grep -qxF "k8s=${K8S_VERSION}" "${dir}/${MARKER}" &&
    grep -qxF "etcd=${ETCD_VERSION}" "${dir}/${MARKER}"
}

# Fast path: no lock, no Go needed.
if is_complete "${OUT}"; then
  printf '%s\n' "${OUT}"
  exit 0
fi

command -v go >/dev/null 2>&1 || die "'go' not found in PATH (needed to build ${NAME})"
command -v flock >/dev/null 2>&1 || die "'flock' (util-linux) not found in PATH"

mkdir -p "${CACHE_ROOT}" || die "cannot create cache directory ${CACHE_ROOT}"

# Serialise builders of this version. Lock fd 9 stays open until exit.
LOCK="${CACHE_ROOT}/.${NAME}.lock"
exec 9>"${LOCK}" || die "cannot open lock file ${LOCK}"
if ! flock -n 9; then
  log "another build of ${NAME} is running; waiting for ${LOCK}"
  flock 9 || die "cannot lock ${LOCK}"
fi

# Someone else may have finished while we waited.
if is_complete "${OUT}"; then
  printf '%s\n' "${OUT}"
  exit 0
fi

# We hold the lock: leftovers of earlier killed builds of this version are stale.
rm -rf "${CACHE_ROOT}/.${NAME}.tmp."* "${CACHE_ROOT}/.${NAME}.old."*

STAGE="$(mktemp -d "${CACHE_ROOT}/.${NAME}.tmp.XXXXXX")"
CHILD=""
cleanup() {
  if [[ -n "${CHILD}" ]]; then kill -TERM "${CHILD}" 2>/dev/null || true; wait "${CHILD}" 2>/dev/null || true; fi
  rm -rf "${STAGE}"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM
BIN="${STAGE}/bin"  # becomes ${OUT}
SRC="${STAGE}/src"  # throwaway build modules
mkdir -p "${BIN}" "${SRC}/k8s" "${SRC}/etcd"

# Go environment: host binaries, module mode, no workspace, never download a toolchain.
export GOTOOLCHAIN=local GO111MODULE=on GOWORK=off CGO_ENABLED=0
unset GOOS GOARCH GOARM GOAMD64
# Merge -tags from GOFLAGS with ours (a command-line -tags would replace them).
user_tags="$(printf '%s' "${GOFLAGS:-}" | sed -ne 's/.*-tags[= ]\([^ ]*\).*/\1/p')"

now() { date +%s; }
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# step NAME CMD...: run CMD (its stdout goes to stderr), die naming NAME on failure.
# CMD runs in the background so that INT/TERM are handled at once (cleanup kills it).
step() {
  local name="$1"; shift
  "$@" >&2 &
  CHILD=$!
  if ! wait "${CHILD}"; then
    CHILD=""
    die "${name} failed (see the go output above); nothing was written to ${OUT}"
  fi
  CHILD=""
}

# field JSON KEY: value of a top-level string field in `go mod download -json` output.
field() {
  printf '%s\n' "$1" | sed -n "s/^[[:space:]]*\"$2\": \"\(.*\)\",\{0,1\}\$/\1/p" | head -n1 |
    sed -e 's/\\[nt]/ /g' -e 's/\\"/"/g'
}

# download MODULE@VERSION -> sets DL_JSON (go mod download -json output)
download() {
  local mv="$1" err
  log "downloading ${mv}"
  if ! DL_JSON="$(go -C "${SRC}" mod download -json "${mv}")"; then
    err="$(field "${DL_JSON:-}" Error)"
    die "downloading ${mv} from the module proxy failed${err:+: ${err}}"
  fi
  err="$(field "${DL_JSON}" Error)"
  [[ -z "${err}" ]] || die "downloading ${mv} failed: ${err}"
}

# write_gomod DIR UPSTREAM_GOMOD MODULE VERSION: a throwaway main module that
# requires MODULE@VERSION with the same go line and godebug settings as the
# upstream main module (they decide GODEBUG defaults of the binaries).
write_gomod() {
  local dir="$1" upstream="$2" mod="$3" ver="$4" goline
  goline="$(sed -n 's/^go \([0-9.]*\).*/\1/p' "${upstream}" | head -n1)"
  [[ -n "${goline}" ]] || die "no go line in ${upstream}"
  {
    echo "module callback-operator.local/build-${mod##*/}"
    echo
    echo "go ${goline}"
    echo
    awk '/^godebug[ \t]*\(/{b=1} b||/^godebug[ \t]/{print} b&&/^\)/{b=0}' "${upstream}"
    echo
    echo "require ${mod} ${ver}"
  } >"${dir}/go.mod"
}

# ---------------------------------------------------------------- kubernetes
t_start="$(now)"
download "k8s.io/kubernetes@${K8S_VERSION}"
K8S_GOMOD="$(field "${DL_JSON}" GoMod)"
K8S_INFO="$(field "${DL_JSON}" Info)"
[[ -f "${K8S_GOMOD}" ]] || die "go mod download did not report the go.mod of k8s.io/kubernetes@${K8S_VERSION}"

write_gomod "${SRC}/k8s" "${K8S_GOMOD}" k8s.io/kubernetes "${K8S_VERSION}"
# k8s.io/kubernetes replaces its staging modules with ./staging/src/k8s.io/<name>,
# which does not exist in the module zip. Map every such replace to the
# published k8s.io/<name>@v0.<minor>.<patch>; copy other (non-local) replaces.
awk -v sv="${STAGING_VERSION}" '
  { line = $0; sub(/\/\/.*/, "", line) }
  line ~ /^replace[ \t]*\([ \t]*$/ { blk = 1; next }
  blk && line ~ /^[ \t]*\)/ { blk = 0; next }
  (blk || line ~ /^replace[ \t]/) && line ~ /=>/ {
    sub(/^replace[ \t]+/, "", line)
    split(line, side, "=>"); split(side[1], l, " "); split(side[2], r, " ")
    if (r[1] ~ /^\.\.?\//) {
      if (r[1] !~ /^\.\/staging\/src\//) { print "BAD " line; next }
      printf "replace %s => %s %s\n", l[1], l[1], sv
    } else {
      printf "replace %s\n", line
    }
  }' "${K8S_GOMOD}" >"${SRC}/k8s/replaces"
if grep -q '^BAD ' "${SRC}/k8s/replaces"; then
  die "k8s.io/kubernetes@${K8S_VERSION} go.mod has a local replace this script cannot map: $(grep '^BAD ' "${SRC}/k8s/replaces" | head -n1)"
fi
n_staging="$(grep -c "=> .* ${STAGING_VERSION}\$" "${SRC}/k8s/replaces" || true)"
[[ "${n_staging}" -gt 0 ]] || die "found no staging replace lines in ${K8S_GOMOD}"
{ echo; cat "${SRC}/k8s/replaces"; } >>"${SRC}/k8s/go.mod"
rm -f "${SRC}/k8s/replaces"
log "build module for k8s.io/kubernetes@${K8S_VERSION}: ${n_staging} staging modules -> ${STAGING_VERSION}"

K8S_PKGS=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
log "resolving dependencies of ${K8S_PKGS[*]}"
t0="$(now)"
step "resolving dependencies of k8s.io/kubernetes@${K8S_VERSION}" \
  go -C "${SRC}/k8s" get "${K8S_PKGS[@]/%/@${K8S_VERSION}}"
log "resolved in $(fmt_secs $(($(now) - t0)))"

# Version stamping, as kubernetes' hack/lib/version.sh does for release builds.
if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
  build_date="$(date -u -d "@${SOURCE_DATE_EPOCH}" +%Y-%m-%dT%H:%M:%SZ)"
else # the tag's time from the proxy: reproducible, and what a release build reports
  tag_time="$(sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' "${K8S_INFO}" 2>/dev/null || true)"
  build_date="$(date -u -d "${tag_time:-now}" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)"
fi
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
  k8s_ldflags+=" -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${K8S_MINOR}"
  k8s_ldflags+=" -X ${pkg}.gitCommit=${K8S_GIT_COMMIT:-}"
  k8s_ldflags+=" -X ${pkg}.gitTreeState=clean"
  k8s_ldflags+=" -X ${pkg}.buildDate=${build_date}"
done
# Tags of upstream release builds (hack/lib/golang.sh).
k8s_tags="selinux,notest,grpcnotrace${user_tags:+,${user_tags}}"

declare -A took
for pkg in "${K8S_PKGS[@]}"; do
  b="${pkg##*/}"
  log "building ${b} ${K8S_VERSION}"
  t0="$(now)"
  step "building ${b} (${pkg}@${K8S_VERSION})" \
    go -C "${SRC}/k8s" build \
    -trimpath -tags="${k8s_tags}" -ldflags="${k8s_ldflags}" -o "${BIN}/${b}" "${pkg}"
  took[${b}]=$(($(now) - t0))
  log "built ${b} in $(fmt_secs "${took[${b}]}")"
done

# ---------------------------------------------------------------------- etcd
ETCD_MOD=go.etcd.io/etcd/server/v3
download "${ETCD_MOD}@${ETCD_VERSION}"
ETCD_GOMOD="$(field "${DL_JSON}" GoMod)"
[[ -f "${ETCD_GOMOD}" ]] || die "go mod download did not report the go.mod of ${ETCD_MOD}@${ETCD_VERSION}"
# etcd's own go.mod replaces its sibling modules with ../api etc.; those are
# ignored for a dependency, and its require lines pin the same release.
write_gomod "${SRC}/etcd" "${ETCD_GOMOD}" "${ETCD_MOD}" "${ETCD_VERSION}"
step "resolving dependencies of ${ETCD_MOD}@${ETCD_VERSION}" \
  go -C "${SRC}/etcd" get "${ETCD_MOD}@${ETCD_VERSION}"
etcd_ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.Version=${ETCD_VERSION#v}"
etcd_ldflags+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_GIT_SHA:-unknown}"
log "building etcd ${ETCD_VERSION}"
t0="$(now)"
step "building etcd (${ETCD_MOD}@${ETCD_VERSION})" \
  go -C "${SRC}/etcd" build \
  -trimpath ${user_tags:+-tags="${user_tags}"} -ldflags="${etcd_ldflags}" -o "${BIN}/etcd" "${ETCD_MOD}"
took[etcd]=$(($(now) - t0))
log "built etcd in $(fmt_secs "${took[etcd]}")"

# ------------------------------------------------------------ check, publish
for b in kube-apiserver kube-controller-manager; do
  v="$("${BIN}/${b}" --version 2>&1)" || die "${b} --version failed: ${v}"
  [[ "${v}" == "Kubernetes ${K8S_VERSION}" ]] || die "${b} --version says '${v}', expected 'Kubernetes ${K8S_VERSION}'"
done
v="$("${BIN}/kubectl" version --client 2>&1)" || die "kubectl version --client failed: ${v}"
[[ "${v}" == *"Client Version: ${K8S_VERSION}"* ]] || die "kubectl version --client says '${v}'"
v="$("${BIN}/etcd" --version 2>&1)" || die "etcd --version failed: ${v}"
[[ "${v}" == *"etcd Version: ${ETCD_VERSION#v}"* ]] || die "etcd --version says '${v}'"

rm -rf "${SRC}"
{
  echo "k8s=${K8S_VERSION}"
  echo "etcd=${ETCD_VERSION}"
  echo "go=$(go env GOVERSION)"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"${BIN}/${MARKER}"

if [[ -e "${OUT}" ]]; then # incomplete or for another etcd version
  old="$(mktemp -u "${CACHE_ROOT}/.${NAME}.old.XXXXXX")"
  mv -T "${OUT}" "${old}" || die "cannot move old ${OUT} aside"
  rm -rf "${old}"
fi
mv -T "${BIN}" "${OUT}" || die "cannot move the build into ${OUT}"
log "done in $(fmt_secs $(($(now) - t_start))) (kube-apiserver $(fmt_secs "${took[kube-apiserver]}"), kube-controller-manager $(fmt_secs "${took[kube-controller-manager]}"), kubectl $(fmt_secs "${took[kubectl]}"), etcd $(fmt_secs "${took[etcd]}")): ${OUT}"
printf '%s\n' "${OUT}"
