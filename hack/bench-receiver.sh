#!/usr/bin/env bash
# Benchmarks bin/receiver against a bare net/http server (the ceiling: read the body, write
# the fixed OK reply) with the same load generator, on loopback only:
#   - server pinned to core 0; load generator and accept-all sink pinned to core 1;
#   - peak throughput and latency with wrk (closed loop) for DURATION each;
#   - latency at half the receiver's peak rate with hack/bench/loadgen (open loop at a fixed
#     rate, latency from each request's scheduled time, like wrk2; wrk2 is not in Debian);
#   - peak RSS (VmHWM), CPU time per request / accepted callback (utime+stime from /proc),
#     and delivered == accepted read from the receiver's /metrics after the drain.
# The receiver runs with signature verification (IM_CALLBACK_TOKEN) and delivery on; every
# request body differs (a counter in it), since an exact repeat is answered as a duplicate.
#
# Then the abuse run, each phase on a fresh receiver (so its peak RSS is the phase's):
#   - ABUSE_CLIENTS (256) clients send ABUSE_BODY-byte (1,000,000) bodies as fast as they can,
#     with a bad Sign (strangers), then with a valid Sign (a client holding a captured URL);
#   - meanwhile distinct valid callbacks at ABUSE_RATE (100/s), from a separate process with
#     real-time priority on the load core (so it measures the receiver, not its own
#     starvation beside the abusive clients), latency from each one's scheduled time;
#   - peak RSS (VmHWM) against the 100 MiB target, valid p99 against 100 ms.
#
# Environment: DURATION (default 10s), CONNS (wrk connections, default 32),
# BENCH_PORT_BASE (default 28100, below the ephemeral range; uses base..base+3),
# ABUSE_ONLY=1 (only the abuse run), RECEIVER_BIN (default bin/receiver, built here; another
# binary to compare, e.g. an older build).
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
ABUSE_CLIENTS=${ABUSE_CLIENTS:-256}
ABUSE_BODY=${ABUSE_BODY:-1000000}
ABUSE_RATE=${ABUSE_RATE:-100}
RECEIVER_BIN=${RECEIVER_BIN:-bin/receiver}
BASE=${BENCH_PORT_BASE:-28100}
BARE_ADDR=127.0.0.1:$BASE
RECV_ADDR=127.0.0.1:$((BASE + 1))
ADMIN_ADDR=127.0.0.1:$((BASE + 2))
SINK_ADDR=127.0.0.1:$((BASE + 3))
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

mkdir -p bin
echo "building bin/receiver and the bench helpers..." >&2
# Built like `make build` does, so the benchmarked binary is the shipped one.
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/imcallback/callback-operator/internal/version.Version=$VERSION" -o bin/receiver ./cmd/receiver
go build -o bin/bench-bare ./hack/bench/bare
go build -o bin/bench-sink ./hack/bench/sink
go build -o bin/bench-loadgen ./hack/bench/loadgen
go build -o bin/bench-abuse ./hack/bench/abuse

WORK=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

BODY='{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"id","To_Account":"id1"},{"From_Account":"id","To_Account":"000000000000"}]}'
TOKEN=bench-token
RT=$(date +%s)
SIGN=$(printf '%s%s' "$TOKEN" "$RT" | sha256sum | cut -d' ' -f1)
QUERY="SdkAppid=1400000001&CallbackCommand=Sns.CallbackBlackListDelete&contenttype=json&ClientIP=127.0.0.1&OptPlatform=RESTAPI&RequestTime=$RT&Sign=$SIGN"
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
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
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
# run_wrk url -> prints "rps p50 p99 requests non2xx"
run_wrk() {
	local out
	out=$(taskset -c $LOAD_CPU wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "$WORK/post.lua" "$1")
	echo "$out" >"$WORK/wrk.last"
	local rps p50 p99 reqs non2xx
	rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
	p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
	p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
	reqs=$(echo "$out" | awk '/requests in/ {print $1}')
	non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
	echo "$rps $p50 $p99 $reqs ${non2xx:-0}"
}
# run_loadgen url rate -> prints the loadgen summary line with p99
run_loadgen() {
	taskset -c $LOAD_CPU bin/bench-loadgen -url "$1" -body "$BODY" -counter 000000000000 -rate "$2" -duration "$DURATION" -conns "$CONNS"
}
warm() { taskset -c $LOAD_CPU wrk -t1 -c"$CONNS" -d2s -s "$WORK/post.lua" "$1" >/dev/null; }


# abuse_phase NAME SIGN: a fresh receiver under ABUSE_CLIENTS abusive clients whose requests
# carry SIGN, with valid callbacks beside them; prints one result line.
abuse_phase() {
	local name=$1 sign=$2 pid out valid attack rss
	IM_CALLBACK_TOKEN=$TOKEN taskset -c $SERVER_CPU "$RECEIVER_BIN" --sdkappid 1400000001 --path /im/callback \
		--sink "http://$SINK_ADDR/" --listen "$RECV_ADDR" --admin-listen "$ADMIN_ADDR" \
		--max-clock-skew 1h --shutdown-delay 0s --log-level warn 2>"$WORK/abuse-$name.log" &
	pid=$!
	PIDS+=("$pid")
	wait_http "http://$ADMIN_ADDR/readyz"
	local q="SdkAppid=1400000001&CallbackCommand=Sns.CallbackBlackListDelete&RequestTime=$RT"
	taskset -c $LOAD_CPU bin/bench-abuse -attack-url "http://$RECV_ADDR/im/callback?$q&Sign=$sign" \
		-clients "$ABUSE_CLIENTS" -body-bytes "$ABUSE_BODY" -duration "$(( ${DURATION%s} + 1 ))s" >"$WORK/attack-$name.out" &
	local apid=$!
	sleep 0.5
	valid=$(taskset -c $LOAD_CPU $REALTIME bin/bench-abuse -clients 0 -valid-url "http://$RECV_ADDR/im/callback?$q&Sign=$SIGN" \
		-rate "$ABUSE_RATE" -duration "$DURATION")
	wait $apid
	attack=$(cat "$WORK/attack-$name.out")
	rss=$(peak_rss_kib $pid)
	kill $pid
	wait $pid 2>/dev/null || true
	local p99 non200
	p99=$(echo "$valid" | awk '/^valid latency/ {print $6}')
	non200=$(echo "$valid" | awk '/^valid callbacks/ {gsub(/,/, "", $7); print $7 + $9}')
	printf '%-22s %10s %12s %9s %9s   %s\n' "$name" "$(mib "$rss") MiB" "$p99" "$non200" \
		"$(awk -v k="$rss" 'BEGIN {print (k / 1024 < 100) ? "yes" : "NO"}')" "$(echo "$attack" | sed 's/^abusive //')"
	echo "$valid" >>"$WORK/abuse-valid.out"
}

abuse() {
	REALTIME=""
	if chrt -f 10 true 2>/dev/null; then REALTIME="chrt -f 10"; fi
	echo "== abuse run: $ABUSE_CLIENTS clients x $ABUSE_BODY-byte bodies on core $LOAD_CPU, valid callbacks at $ABUSE_RATE/s (${REALTIME:-no real-time priority}), receiver on core $SERVER_CPU, $DURATION each" >&2
	if [ -z "${SINK_PID:-}" ]; then
		taskset -c $LOAD_CPU bin/bench-sink -raw -listen "$SINK_ADDR" 2>"$WORK/sink.log" &
		SINK_PID=$!
		PIDS+=("$SINK_PID")
		wait_http "http://$SINK_ADDR/count"
	fi
	echo
	echo "abuse run ($RECEIVER_BIN): targets peak RSS < 100 MiB, valid callbacks answered within 100 ms at p99"
	printf '%-22s %10s %12s %9s %9s   %s\n' "abusive clients" "peak RSS" "valid p99" "valid !200" "RSS<100" "what the abusive clients got"
	abuse_phase bad-sign "$(printf '%064d' 0)"
	abuse_phase captured-valid-sign "$SIGN"
	echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

if [ "${ABUSE_ONLY:-0}" = 1 ]; then
	abuse
	exit 0
fi

echo "== bare net/http (ceiling) on core $SERVER_CPU, wrk -c$CONNS on core $LOAD_CPU, $DURATION" >&2
taskset -c $SERVER_CPU bin/bench-bare -listen "$BARE_ADDR" 2>"$WORK/bare.log" &
BARE_PID=$!
PIDS+=("$BARE_PID")
wait_http "http://$BARE_ADDR/"
warm "http://$BARE_ADDR/im/callback?$QUERY"
t0=$(cpu_ticks $BARE_PID)
read -r BARE_RPS BARE_P50 BARE_P99 BARE_REQS _ < <(run_wrk "http://$BARE_ADDR/im/callback?$QUERY")
t1=$(cpu_ticks $BARE_PID)
BARE_CPU_US=$(awk -v t="$((t1 - t0))" -v hz="$CLK_TCK" -v n="$BARE_REQS" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
BARE_HALF=$(awk -v r="$BARE_RPS" 'BEGIN {printf "%d", r / 2}')
BARE_HALF_OUT=$(run_loadgen "http://$BARE_ADDR/im/callback?$QUERY" "$BARE_HALF")
BARE_RSS=$(peak_rss_kib $BARE_PID)
kill $BARE_PID
wait $BARE_PID 2>/dev/null || true

echo "== receiver (verification + delivery) on core $SERVER_CPU, sink + wrk on core $LOAD_CPU" >&2
taskset -c $LOAD_CPU bin/bench-sink -raw -listen "$SINK_ADDR" 2>"$WORK/sink.log" &
SINK_PID=$!
PIDS+=("$SINK_PID")
IM_CALLBACK_TOKEN=$TOKEN taskset -c $SERVER_CPU "$RECEIVER_BIN" --sdkappid 1400000001 --path /im/callback \
	--sink "http://$SINK_ADDR/" --listen "$RECV_ADDR" --admin-listen "$ADMIN_ADDR" \
	--max-clock-skew 1h --shutdown-delay 0s --log-level warn 2>"$WORK/receiver.log" &
RECV_PID=$!
PIDS+=("$RECV_PID")
wait_http "http://$ADMIN_ADDR/readyz"
wait_http "http://$SINK_ADDR/count"
RECV_URL="http://$RECV_ADDR/im/callback?$QUERY"
warm "$RECV_URL"
drain() {
	for _ in $(seq 1 600); do
		local acc del dl fl
		acc=$(metric 'imcallback_callbacks_total{outcome="accepted"}')
		del=$(metric 'imcallback_events_total{result="delivered"}')
		dl=$(metric 'imcallback_events_total{result="dead_lettered"}')
		fl=$(metric 'imcallback_events_total{result="failed"}')
		if [ "$(awk -v a="$acc" -v d="$del" -v l="$dl" -v f="$fl" 'BEGIN {print (d + l + f >= a)}')" = 1 ]; then
			echo "$acc $del $dl $fl"
			return
		fi
		sleep 0.1
	done
	echo "bench-receiver: the receiver did not drain" >&2
	exit 1
}
read -r ACC0 _ < <(drain)
t0=$(cpu_ticks $RECV_PID)
read -r RECV_RPS RECV_P50 RECV_P99 RECV_REQS RECV_NON2XX < <(run_wrk "$RECV_URL")
read -r ACC1 DEL1 DL1 FL1 < <(drain)
t1=$(cpu_ticks $RECV_PID)
RECV_ACCEPTED=$(awk -v a="$ACC1" -v b="$ACC0" 'BEGIN {printf "%d", a - b}')
RECV_CPU_US=$(awk -v t="$((t1 - t0))" -v hz="$CLK_TCK" -v n="$RECV_ACCEPTED" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
RECV_HALF=$(awk -v r="$RECV_RPS" 'BEGIN {printf "%d", r / 2}')
RECV_HALF_OUT=$(run_loadgen "$RECV_URL" "$RECV_HALF")
read -r ACC2 DEL2 DL2 FL2 < <(drain)
RECV_RSS=$(peak_rss_kib $RECV_PID)
SINK_COUNT=$(curl -s "http://$SINK_ADDR/count")
UNAVAILABLE=$(metric 'imcallback_callbacks_total{outcome="unavailable"}')
DUPLICATE=$(metric 'imcallback_callbacks_total{outcome="duplicate"}')
REJECTED=$(metric 'imcallback_callbacks_total{outcome="rejected"}')

# Graceful stop: SIGTERM, then the final scrape the receiver waits for (it has been scraped).
kill -TERM $RECV_PID
for _ in $(seq 1 100); do
	curl -s -o /dev/null "http://$ADMIN_ADDR/metrics" || true
	kill -0 $RECV_PID 2>/dev/null || break
	sleep 0.1
done
RECV_EXIT=0
wait $RECV_PID || RECV_EXIT=$?

half_p() { echo "$1" | awk -v k="$2" '/^latency/ {for (i = 1; i <= NF; i++) if ($i == k) print $(i + 1)}'; }
half_rate() { echo "$1" | awk '/^requests/ {gsub(/[(\/s,]/, "", $5); print $5}'; }

echo
echo "receiver benchmark: server on core $SERVER_CPU, load (+ sink) on core $LOAD_CPU, wrk -t1 -c$CONNS -d$DURATION, loopback"
printf '%-28s %14s %14s\n' "" "bare net/http" "receiver"
printf '%-28s %14s %14s\n' "requests/s (wrk, peak)" "$BARE_RPS" "$RECV_RPS"
printf '%-28s %14s %14s\n' "latency p50 at peak" "$BARE_P50" "$RECV_P50"
printf '%-28s %14s %14s\n' "latency p99 at peak" "$BARE_P99" "$RECV_P99"
printf '%-28s %14s %14s\n' "half-peak rate (loadgen)" "$(half_rate "$BARE_HALF_OUT")/s" "$(half_rate "$RECV_HALF_OUT")/s"
printf '%-28s %14s %14s\n' "latency p50 at half peak" "$(half_p "$BARE_HALF_OUT" p50)" "$(half_p "$RECV_HALF_OUT" p50)"
printf '%-28s %14s %14s\n' "latency p99 at half peak" "$(half_p "$BARE_HALF_OUT" p99)" "$(half_p "$RECV_HALF_OUT" p99)"
printf '%-28s %14s %14s\n' "peak RSS (VmHWM)" "$(mib "$BARE_RSS") MiB" "$(mib "$RECV_RSS") MiB"
printf '%-28s %14s %14s\n' "CPU per request/callback" "$BARE_CPU_US us" "$RECV_CPU_US us"
echo "ratio receiver/bare (requests/s): $(awk -v a="$RECV_RPS" -v b="$BARE_RPS" 'BEGIN {printf "%.2f", a / b}')"
# On a shared machine other processes steal core 0 from either run; CPU time per request is
# much less sensitive to that than requests/s.
echo "ratio by CPU per request (bare / receiver, robust to noisy neighbours): $(awk -v a="$BARE_CPU_US" -v b="$RECV_CPU_US" 'BEGIN {printf "%.2f", a / b}')"
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg) (a quiet machine reads below 1)"
echo "receiver counts after drain: accepted $ACC2, delivered $DEL2, dead-lettered $DL2, failed $FL2, unavailable $UNAVAILABLE, rejected $REJECTED, duplicate ${DUPLICATE:-0}; sink received $SINK_COUNT; exit status $RECV_EXIT"
echo "loadgen at half peak: bare: $(echo "$BARE_HALF_OUT" | head -1)"
echo "                      receiver: $(echo "$RECV_HALF_OUT" | head -1)"
if [ "${RECV_NON2XX:-0}" != 0 ]; then
	echo "note: wrk saw $RECV_NON2XX non-2xx replies from the receiver"
fi
if [ "$DEL2" = "$ACC2" ] && [ "$FL2" = 0 ] && [ "$RECV_EXIT" = 0 ]; then
	echo "zero loss: delivered == accepted"
else
	echo "LOSS: delivered $DEL2 != accepted $ACC2 (or failed / non-zero exit)" >&2
	exit 1
fi

abuse
