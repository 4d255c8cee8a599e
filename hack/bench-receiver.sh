#!/usr/bin/env bash
# Benchmarks bin/receiver, side by side in one run, on loopback only, against:
#   - a bare net/http server (the ceiling: read the body, write the fixed OK reply);
#   - an ideal forwarder (hack/bench/forwarder: the fixed OK, the body queued in memory and
#     POSTed to the sink with plain net/http; the floor of any receiver that delivers each
#     callback as a request);
# and runs the receiver without a spool, with --spool-dir on the machine's disk (not tmpfs),
# and with the spool at an explicit GOMAXPROCS=1.
#   - each server pinned to core 0; load generator and accept-all sink pinned to core 1;
#   - peak throughput with wrk (closed loop) for DURATION; CPU time (utime+stime from /proc)
#     from the start of that run until everything accepted was delivered, per delivered event;
#   - latency at half of each server's own peak with hack/bench/loadgen (open loop at a fixed
#     rate, latency from each request's scheduled time, like wrk2; wrk2 is not in Debian);
#   - peak RSS (VmHWM); delivered == accepted (zero lost) after the drain.
# The receiver runs with signature verification (IM_CALLBACK_TOKEN) and delivery on; every
# request body differs (a counter in it), since an exact repeat is answered as a duplicate.
#
# On a machine shared with other work, neighbours steal core 0 from one phase and not the
# next: ROUNDS rounds run the servers in turn, and the table shows each figure's median.
#
# Environment: DURATION (default 10s), CONNS (wrk connections, default 32), ROUNDS (default 3),
# BENCH_PORT_BASE (default 28100, below the ephemeral range; uses base..base+4),
# BENCH_SPOOL_PARENT (default /var/tmp: where the spool directory is made; must not be tmpfs).
set -euo pipefail
trap 'echo "bench-receiver: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
BASE=${BENCH_PORT_BASE:-28100}
SERVER_ADDR=127.0.0.1:$BASE
ADMIN_ADDR=127.0.0.1:$((BASE + 2))
SINK_ADDR=127.0.0.1:$((BASE + 3))
SPOOL_PARENT=${BENCH_SPOOL_PARENT:-/var/tmp}
SERVER_CPU=0
LOAD_CPU=1

if [ "$(nproc --all)" -lt 2 ]; then
	echo "bench-receiver: needs 2 CPUs (server on one, load on the other)" >&2
	exit 1
fi
if ! command -v wrk >/dev/null; then
	echo "bench-receiver: installing wrk" >&2
	(apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }) ||
		{ echo "bench-receiver: cannot install wrk" >&2; exit 1; }
fi
SPOOL_FS=$(findmnt -n -o FSTYPE,SOURCE -T "$SPOOL_PARENT")
case "$SPOOL_FS" in
tmpfs* | ramfs*)
	echo "bench-receiver: $SPOOL_PARENT is on $SPOOL_FS; the spool must be measured on a disk (set BENCH_SPOOL_PARENT)" >&2
	exit 1
	;;
esac

mkdir -p bin
echo "building bin/receiver and the bench helpers..." >&2
# Built like `make build` does, so the benchmarked binary is the shipped one.
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/imcallback/callback-operator/internal/version.Version=$VERSION" -o bin/receiver ./cmd/receiver
for h in bare forwarder sink loadgen; do go build -o "bin/bench-$h" "./hack/bench/$h"; done

WORK=$(mktemp -d)
SPOOL_DIR=$(mktemp -d "$SPOOL_PARENT/imcallback-bench-spool.XXXXXX")
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK" "$SPOOL_DIR"
}
trap cleanup EXIT

BODY='{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"id","To_Account":"id1"},{"From_Account":"id","To_Account":"000000000000"}]}'
TOKEN=bench-token
RT=$(date +%s)
SIGN=$(printf '%s%s' "$TOKEN" "$RT" | sha256sum | cut -d' ' -f1)
QUERY="SdkAppid=1400000001&CallbackCommand=Sns.CallbackBlackListDelete&contenttype=json&ClientIP=127.0.0.1&OptPlatform=RESTAPI&RequestTime=$RT&Sign=$SIGN"
URL="http://$SERVER_ADDR/im/callback?$QUERY"
cat >"$WORK/post.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- Distinct bodies (same length), also across runs (each starts from its own second): the
-- receiver answers exact repeats as duplicates.
local n = (os.time() % 10000) * 10000000
request = function()
	n = n + 1
	local body = string.gsub('$BODY', "000000000000", string.format("%012d", n))
	return wrk.format(nil, nil, nil, body)
end
EOF

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
peak_rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
wait_http() { # url
	for _ in $(seq 1 200); do
		if curl -s -o /dev/null "$1"; then return 0; fi
		sleep 0.05
	done
	echo "bench-receiver: $1 did not come up; logs:" >&2
	tail -n 20 "$WORK"/*.log >&2 || true
	exit 1
}
metric() { # name{labels} -> value
	curl -s "http://$ADMIN_ADDR/metrics" | awk -v m="$1" '$1 == m {print $2}'
}
# stats KIND -> "accepted delivered failed" so far (bare: requests are not counted)
stats() {
	case $1 in
	bare) echo "0 0 0" ;;
	forwarder) curl -s "http://$SERVER_ADDR/stats" ;;
	receiver)
		local acc del dl fl
		acc=$(metric 'imcallback_callbacks_total{outcome="accepted"}')
		del=$(metric 'imcallback_events_total{result="delivered"}')
		dl=$(metric 'imcallback_events_total{result="dead_lettered"}')
		fl=$(metric 'imcallback_events_total{result="failed"}')
		awk -v a="$acc" -v d="$del" -v l="$dl" -v f="$fl" 'BEGIN {printf "%d %d %d\n", a, d, l + f}'
		;;
	esac
}
# drain KIND -> waits until delivered + failed >= accepted, prints the stats
drain() {
	local s
	for _ in $(seq 1 1200); do
		s=$(stats "$1")
		if [ "$(echo "$s" | awk '{print ($2 + $3 >= $1)}')" = 1 ]; then
			echo "$s"
			return
		fi
		sleep 0.1
	done
	echo "bench-receiver: $1 did not drain ($s)" >&2
	exit 1
}
# run_wrk -> prints "rps p99 requests non2xx"
run_wrk() {
	local out
	out=$(taskset -c $LOAD_CPU wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "$WORK/post.lua" "$URL")
	local rps p99 reqs non2xx
	rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
	p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
	reqs=$(echo "$out" | awk '/requests in/ {print $1}')
	non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
	echo "$rps $p99 $reqs ${non2xx:-0}"
}
run_loadgen() { # rate
	taskset -c $LOAD_CPU bin/bench-loadgen -url "$URL" -body "$BODY" -counter 000000000000 -rate "$1" -duration "$DURATION" -conns "$CONNS"
}
warm() { taskset -c $LOAD_CPU wrk -t1 -c"$CONNS" -d2s -s "$WORK/post.lua" "$URL" >/dev/null; }

taskset -c $LOAD_CPU bin/bench-sink -raw -listen "$SINK_ADDR" 2>"$WORK/sink.log" &
PIDS+=($!)
wait_http "http://$SINK_ADDR/count"

# bench NAME KIND command... : runs one server through the phases, appends a result line.
declare -A R_RPS R_PEAK R_P99PEAK R_HALF R_P50 R_P99 R_RSS R_CPU R_LOSS R_NOTE
NAMES=()
bench() {
	local name=$1 kind=$2
	shift 2
	echo "== $name on core $SERVER_CPU, wrk -c$CONNS + sink on core $LOAD_CPU, $DURATION" >&2
	taskset -c $SERVER_CPU "$@" 2>"$WORK/$name.log" &
	local pid=$!
	PIDS+=("$pid")
	if [ "$kind" = receiver ]; then wait_http "http://$ADMIN_ADDR/readyz"; else wait_http "http://$SERVER_ADDR/stats"; fi
	warm
	read -r a0 d0 _ < <(drain "$kind")
	local s0 t0 t1 s1
	s0=$(curl -s "http://$SINK_ADDR/count")
	t0=$(cpu_ticks "$pid")
	local w0 w1
	w0=$(date +%s.%N)
	read -r rps p99peak reqs non2xx < <(run_wrk)
	read -r a1 d1 f1 < <(drain "$kind")
	w1=$(date +%s.%N)
	t1=$(cpu_ticks "$pid")
	s1=$(curl -s "http://$SINK_ADDR/count")
	local n=$((d1 - d0))
	[ "$kind" = bare ] && n=$reqs
	R_CPU[$name,$ROUND]=$(awk -v t="$((t1 - t0))" -v hz="$CLK_TCK" -v n="$n" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
	# The peak of a forwarding server is what it delivers per second until it has delivered
	# all it accepted (a spool accepts faster than it delivers for a while).
	local peak=$rps
	[ "$kind" = bare ] || peak=$(awk -v n="$n" -v a="$w0" -v b="$w1" 'BEGIN {printf "%.0f", n / (b - a)}')
	R_PEAK[$name,$ROUND]=$peak
	local half
	half=$(awk -v r="$peak" 'BEGIN {printf "%d", r / 2}')
	local lg
	lg=$(run_loadgen "$half")
	read -r a2 d2 f2 < <(drain "$kind")
	R_RSS[$name,$ROUND]=$(awk -v k="$(peak_rss_kib "$pid")" 'BEGIN {printf "%.1f", k / 1024}')
	R_RPS[$name,$ROUND]=$rps
	R_P99PEAK[$name,$ROUND]=$p99peak
	R_HALF[$name,$ROUND]=$(echo "$lg" | awk '/^requests/ {gsub(/[(\/s,]/, "", $5); print $5}')
	R_P50[$name,$ROUND]=$(echo "$lg" | awk '/^latency/ {print $3}')
	R_P99[$name,$ROUND]=$(echo "$lg" | awk '/^latency/ {print $7}')
	if [ "$kind" = bare ]; then
		R_LOSS[$name,$ROUND]="-"
	else
		R_LOSS[$name,$ROUND]=$((a2 - d2))
		[ "$f2" = 0 ] || R_LOSS[$name,$ROUND]="${R_LOSS[$name,$ROUND]} (+$f2 failed)"
	fi
	R_NOTE[$name,$ROUND]="wrk non-2xx $non2xx; loadgen: $(echo "$lg" | head -1)"
	local syncs
	syncs=$([ "$kind" = receiver ] && metric imcallback_spool_sync_duration_seconds_count || true)
	if [ -n "$syncs" ] && [ "$syncs" != 0 ]; then
		R_NOTE[$name,$ROUND]="${R_NOTE[$name,$ROUND]}; $syncs disk syncs, $(awk -v a="$a2" -v s="$syncs" 'BEGIN {printf "%.1f", a / s}') callbacks per sync"
	fi
	if [ "$kind" = receiver ]; then
		kill -TERM "$pid"
		for _ in $(seq 1 100); do
			curl -s -o /dev/null "http://$ADMIN_ADDR/metrics" || true # the final scrape it waits for
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		local code=0
		wait "$pid" || code=$?
		[ "$code" = 0 ] || R_LOSS[$name,$ROUND]="${R_LOSS[$name,$ROUND]} (exit $code)"
	else
		kill "$pid"
		wait "$pid" 2>/dev/null || true
	fi
}

RECV_ARGS=(--sdkappid 1400000001 --path /im/callback --sink "http://$SINK_ADDR/" --listen "$SERVER_ADDR"
	--admin-listen "$ADMIN_ADDR" --max-clock-skew 1h --shutdown-delay 0s --log-level warn)
NAMES=(bare forwarder receiver spool spool-P1)
for ROUND in $(seq 1 "$ROUNDS"); do
	echo "-- round $ROUND of $ROUNDS" >&2
	bench bare bare bin/bench-bare -listen "$SERVER_ADDR"
	bench forwarder forwarder bin/bench-forwarder -listen "$SERVER_ADDR" -sink "http://$SINK_ADDR/"
	bench receiver receiver env IM_CALLBACK_TOKEN=$TOKEN bin/receiver "${RECV_ARGS[@]}"
	bench spool receiver env IM_CALLBACK_TOKEN=$TOKEN bin/receiver "${RECV_ARGS[@]}" --spool-dir "$SPOOL_DIR/a$ROUND"
	bench spool-P1 receiver env IM_CALLBACK_TOKEN=$TOKEN GOMAXPROCS=1 bin/receiver "${RECV_ARGS[@]}" --spool-dir "$SPOOL_DIR/b$ROUND"
done

echo
echo "receiver benchmark: each server on core $SERVER_CPU, load + sink on core $LOAD_CPU, wrk -t1 -c$CONNS -d$DURATION, loopback; medians of $ROUNDS rounds"
echo "spool on $SPOOL_PARENT ($SPOOL_FS); spool-P1 is the spool with GOMAXPROCS=1 set explicitly"
row() { printf '%-30s' "$1"; shift; for v in "$@"; do printf ' %13s' "$v"; done; echo; }
# median ARRAY NAME: the median over the rounds (durations in us, ms or s compare as such)
median() {
	local -n arr=$1
	for r in $(seq 1 "$ROUNDS"); do echo "${arr[$2,$r]}"; done |
		awk '{v = $1; x = v + 0; if (v ~ /us$/ || v ~ /µs$/) x /= 1000; else if (v ~ /ms$/) x += 0; else if (v ~ /s$/) x *= 1000; print x "\t" v}' |
		sort -g | awk -F'\t' '{a[NR] = $2} END {print a[int((NR + 1) / 2)]}'
}
cols() { local out=(); for n in "${NAMES[@]}"; do out+=("$(median "$1" "$n")$2"); done; row "$3" "${out[@]}"; }
row "" "${NAMES[@]}"
cols R_RPS "" "requests/s (wrk, peak)"
cols R_PEAK "" "delivered/s (peak, to drained)"
cols R_P99PEAK "" "latency p99 at peak (wrk)"
cols R_HALF "/s" "half-peak rate (loadgen)"
cols R_P50 "" "latency p50 at half peak"
cols R_P99 "" "latency p99 at half peak"
cols R_RSS " MiB" "peak RSS (VmHWM)"
cols R_CPU " us" "CPU per delivered event"
cols R_LOSS "" "lost (accepted - delivered)"
# Efficiency per round (forwarder and receiver measured minutes apart), then the median.
eff() {
	for r in $(seq 1 "$ROUNDS"); do
		awk -v f="${R_CPU[forwarder,$r]}" -v x="${R_CPU[$1,$r]}" 'BEGIN {printf "%.2f\n", f / x}'
	done | sort -g | awk '{a[NR] = $1} END {printf "%s (rounds:", a[int((NR + 1) / 2)]; for (i = 1; i <= NR; i++) printf " %s", a[i]; print ")"}'
}
echo "efficiency vs the ideal forwarder (its CPU per event / this one's, median of rounds):"
for n in receiver spool spool-P1; do echo "  $n $(eff "$n")"; done
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg) (a quiet machine reads below 1)"
for r in $(seq 1 "$ROUNDS"); do for n in "${NAMES[@]}"; do echo "round $r $n: ${R_NOTE[$n,$r]}"; done; done
lost=0
for r in $(seq 1 "$ROUNDS"); do for n in forwarder receiver spool spool-P1; do [ "${R_LOSS[$n,$r]}" = 0 ] || lost=1; done; done
if [ $lost = 0 ]; then
	echo "zero loss: delivered == accepted for every forwarding server"
else
	echo "LOSS: see the lost row" >&2
	exit 1
fi
