# Shared by hack/control-plane.sh and hack/node.sh: a per-version cache of binaries built
# from Go modules, filled under a flock, in a temp dir renamed into place when complete, with
# a marker written last. Source it after setting:
#   PART      log prefix, such as control-plane
#   NAME      the cache directory's name, such as k8s-v1.37.2
#   BINARIES  the files a complete directory holds
#   MARKS     "key=value" lines the marker must hold (the versions built)
# then call cache_init, and when the fast path did not exit, stage_begin ... stage_publish.

log() { printf '[%s] %s\n' "${PART}" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "${PART}" "$*" >&2; exit 1; }

MARKER=".complete"

# cache_init: CACHE_ROOT and OUT; prints OUT and exits when it is complete already.
cache_init() {
  local base="${XDG_CACHE_HOME:-}"
  [[ "${base}" == /* ]] || base="${HOME:?HOME is not set}/.cache" # XDG: ignore relative paths
  CACHE_ROOT="${base}/callback-operator"
  OUT="${CACHE_ROOT}/${NAME}"
  if is_complete "${OUT}"; then # fast path: no lock, no Go needed
    printf '%s\n' "${OUT}"
    exit 0
  fi
}

is_complete() {
  local dir="$1" b m
  [[ -f "${dir}/${MARKER}" ]] || return 1
  for b in "${BINARIES[@]}"; do
    [[ -f "${dir}/${b}" && -x "${dir}/${b}" ]] || return 1
  done
  for m in "${MARKS[@]}"; do
    grep -qxF "${m}" "${dir}/${MARKER}" || return 1
  done
}

# stage_begin: takes the lock (waiting for another builder), exits when that builder filled
# OUT meanwhile, else makes STAGE with BIN (becomes OUT) and SRC (throwaway build modules).
stage_begin() {
  command -v go >/dev/null 2>&1 || die "'go' not found in PATH (needed to build ${NAME})"
  command -v flock >/dev/null 2>&1 || die "'flock' (util-linux) not found in PATH"
  mkdir -p "${CACHE_ROOT}" || die "cannot create cache directory ${CACHE_ROOT}"
  LOCK="${CACHE_ROOT}/.${NAME}.lock"
  exec 9>"${LOCK}" || die "cannot open lock file ${LOCK}"
  if ! flock -n 9; then
    log "another build of ${NAME} is running; waiting for ${LOCK}"
    flock 9 || die "cannot lock ${LOCK}"
  fi
  if is_complete "${OUT}"; then
    printf '%s\n' "${OUT}"
    exit 0
  fi
  # We hold the lock: leftovers of earlier killed builds of this version are stale.
  rm -rf "${CACHE_ROOT}/.${NAME}.tmp."* "${CACHE_ROOT}/.${NAME}.old."*
  STAGE="$(mktemp -d "${CACHE_ROOT}/.${NAME}.tmp.XXXXXX")"
  CHILD=""
  trap stage_cleanup EXIT
  trap 'log "interrupted"; exit 130' INT
  trap 'log "terminated"; exit 143' TERM
  BIN="${STAGE}/bin"
  SRC="${STAGE}/src"
  mkdir -p "${BIN}" "${SRC}"
  # Go environment: host binaries, module mode, no workspace, never download a toolchain.
  export GOTOOLCHAIN=local GO111MODULE=on GOWORK=off CGO_ENABLED=0
  unset GOOS GOARCH GOARM GOAMD64
  # Merge -tags from GOFLAGS with ours (a command-line -tags would replace them).
  user_tags="$(printf '%s' "${GOFLAGS:-}" | sed -ne 's/.*-tags[= ]\([^ ]*\).*/\1/p')"
  T_START="$(now)"
}

stage_cleanup() {
  if [[ -n "${CHILD}" ]]; then kill -TERM "${CHILD}" 2>/dev/null || true; wait "${CHILD}" 2>/dev/null || true; fi
  rm -rf "${STAGE}"
}

# stage_publish: writes the marker (MARKS and the Go version) and moves BIN to OUT.
stage_publish() {
  rm -rf "${SRC}"
  {
    printf '%s\n' "${MARKS[@]}"
    echo "go=$(go env GOVERSION)"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"${BIN}/${MARKER}"
  if [[ -e "${OUT}" ]]; then # incomplete or for other versions
    local old
    old="$(mktemp -u "${CACHE_ROOT}/.${NAME}.old.XXXXXX")"
    mv -T "${OUT}" "${old}" || die "cannot move old ${OUT} aside"
    rm -rf "${old}"
  fi
  mv -T "${BIN}" "${OUT}" || die "cannot move the build into ${OUT}"
}

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

# timed_build NAME CMD...: step, logging and recording (TOOK[NAME]) how long it took.
declare -A TOOK
timed_build() {
  local name="$1" t0; shift
  log "building ${name}"
  t0="$(now)"
  step "building ${name}" "$@"
  TOOK[${name}]=$(($(now) - t0))
  log "built ${name} in $(fmt_secs "${TOOK[${name}]}")"
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

# k8s_module DIR VERSION: a build module for k8s.io/kubernetes@VERSION in DIR, its staging
# modules mapped to their published versions; sets K8S_LDFLAGS and K8S_TAGS as a release
# build (hack/lib/version.sh, hack/lib/golang.sh of kubernetes) sets them.
k8s_module() {
  local dir="$1" version="$2" minor staging gomod info n tag_time build_date pkg
  [[ "${version}" =~ ^v1\.([0-9]+)\.([0-9]+)(-[0-9A-Za-z.-]+)?$ ]] ||
    die "K8S_VERSION must look like v1.<minor>.<patch>[-pre], got '${version}'"
  minor="${BASH_REMATCH[1]}"
  # Staging modules (k8s.io/api, client-go, ...) are published as v0.<minor>.<patch>.
  staging="v0.${version#v1.}"
  download "k8s.io/kubernetes@${version}"
  gomod="$(field "${DL_JSON}" GoMod)"
  info="$(field "${DL_JSON}" Info)"
  [[ -f "${gomod}" ]] || die "go mod download did not report the go.mod of k8s.io/kubernetes@${version}"
  mkdir -p "${dir}"
  write_gomod "${dir}" "${gomod}" k8s.io/kubernetes "${version}"
  # k8s.io/kubernetes replaces its staging modules with ./staging/src/k8s.io/<name>,
  # which does not exist in the module zip. Map every such replace to the
  # published k8s.io/<name>@v0.<minor>.<patch>; copy other (non-local) replaces.
  awk -v sv="${staging}" '
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
    }' "${gomod}" >"${dir}/replaces"
  if grep -q '^BAD ' "${dir}/replaces"; then
    die "k8s.io/kubernetes@${version} go.mod has a local replace this script cannot map: $(grep '^BAD ' "${dir}/replaces" | head -n1)"
  fi
  n="$(grep -c "=> .* ${staging}\$" "${dir}/replaces" || true)"
  [[ "${n}" -gt 0 ]] || die "found no staging replace lines in ${gomod}"
  { echo; cat "${dir}/replaces"; } >>"${dir}/go.mod"
  rm -f "${dir}/replaces"
  log "build module for k8s.io/kubernetes@${version}: ${n} staging modules -> ${staging}"

  if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
    build_date="$(date -u -d "@${SOURCE_DATE_EPOCH}" +%Y-%m-%dT%H:%M:%SZ)"
  else # the tag's time from the proxy: reproducible, and what a release build reports
    tag_time="$(sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' "${info}" 2>/dev/null || true)"
    build_date="$(date -u -d "${tag_time:-now}" +%Y-%m-%dT%H:%M:%SZ 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)"
  fi
  K8S_LDFLAGS="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    K8S_LDFLAGS+=" -X ${pkg}.gitVersion=${version}"
    K8S_LDFLAGS+=" -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=${minor}"
    K8S_LDFLAGS+=" -X ${pkg}.gitCommit=${K8S_GIT_COMMIT:-}"
    K8S_LDFLAGS+=" -X ${pkg}.gitTreeState=clean"
    K8S_LDFLAGS+=" -X ${pkg}.buildDate=${build_date}"
  done
  K8S_TAGS="selinux,notest,grpcnotrace${user_tags:+,${user_tags}}"
}

# check_k8s_version BINARY VERSION: BINARY --version says Kubernetes VERSION.
check_k8s_version() {
  local v
  v="$("$1" --version 2>&1)" || die "$(basename "$1") --version failed: ${v}"
  [[ "${v}" == "Kubernetes $2" ]] || die "$(basename "$1") --version says '${v}', expected 'Kubernetes $2'"
}
