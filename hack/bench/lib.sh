# shellcheck shell=bash
# What the receiver benchmarks (hack/bench-receiver.sh, hack/bench-decisions.sh,
# hack/bench-abuse.sh) share: checks, builds, process handling, /proc and /metrics readings,
# signed callbacks and the load generators. Sourced, not run; bench_init first.
#
# Layout on every script: the server under test pinned to core SERVER_CPU, the load
# generator, sinks and decision service to core LOAD_CPU, all on loopback.

# shellcheck disable=SC2034 # read by the scripts that source this
SERVER_CPU=0
LOAD_CPU=1
COUNTER=000000000000 # digits in BODY the load generators replace by a request number
TOKEN=bench-token
SDKAPPID=1400000001
# A forwarded callback: the receiver answers an exact repeat of a signed callback as a
# duplicate without forwarding it, so every body sent must replace COUNTER.
BODY='{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"id","To_Account":"id1"},{"From_Account":"id","To_Account":"000000000000"}]}'
# Flags every benchmarked receiver gets (the addresses are each script's).
# shellcheck disable=SC2034
RECV_COMMON=(--sdkappid "$SDKAPPID" --path /im/callback --max-clock-skew 1h --shutdown-delay 0s --log-level warn)
PIDS=()
CLEANUP_PATHS=()

# bench_init NAME: the repository root as working directory, failures reported with their
# line, everything started stopped and WORK removed on exit.
bench_init() {
	BENCH_NAME=$1
	set -Eeuo pipefail
	trap 'echo "$BENCH_NAME: failed at ${BASH_SOURCE[0]}:$LINENO: $BASH_COMMAND" >&2' ERR
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
	cd "$(dirname "${BASH_SOURCE[0]}")/../.."
	WORK=$(mktemp -d)
	CLEANUP_PATHS+=("$WORK")
	CLK_TCK=$(getconf CLK_TCK)
	# Signed for the whole run (the receivers allow an hour of clock skew).
	RT=$(date +%s)
	SIGN=$(printf '%s%s' "$TOKEN" "$RT" | sha256sum | cut -d' ' -f1)
	write_wrk_script "$WORK/post.lua"
}

bench_cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "${CLEANUP_PATHS[@]}"
}

die() {
	echo "$BENCH_NAME: $*" >&2
	exit 1
}

need_cpus() {
	[ "$(nproc --all)" -ge 2 ] || die "needs 2 CPUs (server on one, load on the other)"
}

need_wrk() {
	command -v wrk >/dev/null && return
	echo "$BENCH_NAME: installing wrk" >&2
	(apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }) ||
		die "cannot install wrk"
}

# build_receiver: bin/receiver built like `make build`, so the benchmarked binary is the
# shipped one.
build_receiver() {
	mkdir -p bin
	echo "$BENCH_NAME: building bin/receiver..." >&2
	local version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
	CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X github.com/imcallback/callback-operator/internal/version.Version=$version" \
		-o bin/receiver ./cmd/receiver
}

# build_helpers NAME...: hack/bench/NAME built as bin/bench-NAME.
build_helpers() {
	mkdir -p bin
	echo "$BENCH_NAME: building the bench helpers: $*" >&2
	local h
	for h in "$@"; do go build -o "bin/bench-$h" "./hack/bench/$h"; done
}

# start_bg NAME command...: runs the command in the background, its stderr in
# WORK/NAME.log, stopped on exit; BG_PID is its process (give taskset or env first: they
# exec, so BG_PID is the measured program's own).
start_bg() {
	local name=$1
	shift
	"$@" 2>"$WORK/$name.log" &
	BG_PID=$!
	PIDS+=("$BG_PID")
}

# start_sink NAME ADDR [flags...]: the accept-all raw sink (with -answer: a decision service)
# on the load core, once it answers.
start_sink() {
	local name=$1 addr=$2
	shift 2
	start_bg "$name" taskset -c "$LOAD_CPU" bin/bench-sink -raw -listen "$addr" "$@"
	wait_http "http://$addr/count"
}

wait_http() { # url
	local i
	for i in $(seq 1 200); do
		if curl -s -o /dev/null "$1"; then return 0; fi
		sleep 0.05
	done
	echo "$BENCH_NAME: $1 did not come up after $i tries; logs:" >&2
	tail -n 20 "$WORK"/*.log >&2 || true
	exit 1
}

# cpu_ticks PID: utime + stime so far, in CLK_TCK ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# us_per TICKS N: microseconds of CPU per event.
us_per() { awk -v t="$1" -v hz="$CLK_TCK" -v n="$2" 'BEGIN {printf "%.1f", (n > 0) ? t / hz * 1e6 / n : 0}'; }
peak_rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
# ratio A B: A / B to two places.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }
half() { awk -v r="$1" 'BEGIN {printf "%d", r / 2}'; }

# metric NAME{labels}: its value on the receiver at ADMIN_ADDR (empty if never counted).
metric() {
	curl -s "http://$ADMIN_ADDR/metrics" | awk -v m="$1" '$1 == m {print $2}'
}
# metric_sum NAME{labels}...: the sum of those values, as an integer.
metric_sum() {
	local m s=0
	for m in "$@"; do s=$(awk -v s="$s" -v v="$(metric "$m")" 'BEGIN {printf "%d", s + v}'); done
	echo "$s"
}
# receiver_counts: "accepted delivered dead_lettered failed" so far.
receiver_counts() {
	echo "$(metric_sum 'imcallback_callbacks_total{outcome="accepted"}')" \
		"$(metric_sum 'imcallback_events_total{result="delivered"}')" \
		"$(metric_sum 'imcallback_events_total{result="dead_lettered"}')" \
		"$(metric_sum 'imcallback_events_total{result="failed"}')"
}
# drain_receiver: waits until every accepted callback was delivered, dead-lettered or failed,
# prints receiver_counts. Use as s=$(drain_receiver), so that a timeout stops the script.
drain_receiver() {
	local s acc del dl fl
	for _ in $(seq 1 1200); do
		s=$(receiver_counts)
		read -r acc del dl fl <<<"$s"
		if [ $((del + dl + fl)) -ge "$acc" ]; then
			echo "$s"
			return
		fi
		sleep 0.1
	done
	die "the receiver did not drain (accepted delivered dead_lettered failed: $s)"
}
# stop_receiver PID: SIGTERM, then the final scrape the receiver waits for before it exits;
# its exit status in STOP_CODE (not printed: only this shell, its parent, can wait for it).
stop_receiver() {
	kill -TERM "$1"
	for _ in $(seq 1 100); do
		curl -s -o /dev/null "http://$ADMIN_ADDR/metrics" || true
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	STOP_CODE=0
	wait "$1" || STOP_CODE=$?
}

# callback_query COMMAND [SIGN]: the query string IM sends with a callback, signed for RT.
callback_query() {
	echo "SdkAppid=$SDKAPPID&CallbackCommand=$1&contenttype=json&ClientIP=127.0.0.1&OptPlatform=RESTAPI&RequestTime=$RT&Sign=${2:-$SIGN}"
}

# write_wrk_script FILE [BODY]: a wrk script that POSTs BODY (default: BODY with COUNTER
# replaced by a request number). The numbers start from the clock's second, so bodies also
# differ across runs. A BODY without COUNTER is sent as it is, with no Lua per request
# (decisions are not forwarded, so never answered as duplicates).
write_wrk_script() {
	local body=${2:-$BODY}
	if [[ $body != *"$COUNTER"* ]]; then
		cat >"$1" <<EOF
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
EOF
		return
	fi
	cat >"$1" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = (os.time() % 10000) * 10000000
request = function()
	n = n + 1
	local body = string.gsub('$body', "$COUNTER", string.format("%012d", n))
	return wrk.format(nil, nil, nil, body)
end
EOF
}

# run_wrk URL [SCRIPT]: closed-loop peak for DURATION; prints "rps p50 p99 requests non2xx".
run_wrk() {
	local out rps p50 p99 reqs non2xx
	out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "${2:-$WORK/post.lua}" "$1")
	echo "$out" >"$WORK/wrk.last"
	rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
	p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
	p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
	reqs=$(echo "$out" | awk '/requests in/ {print $1}')
	non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
	echo "$rps $p50 $p99 $reqs ${non2xx:-0}"
}
# warm URL [SCRIPT]: two seconds of wrk, unmeasured.
warm() { taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s -s "${2:-$WORK/post.lua}" "$1" >/dev/null; }

# run_loadgen URL RATE [BODY [DURATION]]: open loop at RATE (latency from each request's
# scheduled time, like wrk2); a BODY with COUNTER gets it replaced per request. Prints the
# loadgen summary ("requests ..." and "latency ..." lines).
run_loadgen() {
	local body=${3:-$BODY} counter=()
	if [[ $body == *"$COUNTER"* ]]; then counter=(-counter "$COUNTER"); fi
	taskset -c "$LOAD_CPU" bin/bench-loadgen -url "$1" -body "$body" "${counter[@]}" -rate "$2" \
		-duration "${4:-$DURATION}" -conns "$CONNS"
}
# loadgen_rate OUT: the rate achieved; loadgen_p OUT p50|p90|p99|p99.9|max: that latency.
loadgen_rate() { echo "$1" | awk '/^requests/ {gsub(/[(\/s,]/, "", $5); print $5}'; }
loadgen_p() { echo "$1" | awk -v k="$2" '/^latency/ {for (i = 1; i < NF; i++) if ($i == k) print $(i + 1)}'; }

load_average() { echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg) (a quiet machine reads below 1)"; }
