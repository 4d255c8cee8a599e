#!/usr/bin/env bash
# What it measures (issue 8): whether abusive clients can take the receiver's memory or
# starve valid callbacks. Two phases, each on a fresh receiver (so its peak RSS is the
# phase's), on loopback:
#   - ABUSE_CLIENTS clients send ABUSE_BODY-byte bodies as fast as they can, with a bad Sign
#     (strangers: the receiver must refuse them before buffering the body), then with a valid
#     Sign (a client holding a captured URL: the body is read within the body budget and
#     refused, as it is not JSON);
#   - meanwhile distinct valid callbacks at ABUSE_RATE/s, from a separate process with
#     real-time priority on the load core when chrt allows it (so it measures the receiver,
#     not its own starvation beside the abusive clients), latency from each one's scheduled
#     time.
# The receiver (RECEIVER_BIN) on core 0, verifying signatures and delivering to the accept-all
# sink; the abusive clients, the valid sender and the sink on core 1.
#
# How to read the table, one row per phase:
#   - peak RSS (VmHWM) of the receiver; target under 100 MiB ("RSS<100");
#   - valid p99: the valid callbacks' p99 (target under 100 ms), and how many of them were
#     not answered 200 or failed to connect ("valid !200");
#   - what the abusive clients got: their requests and replies by status, and the connections
#     that failed before a reply;
#   - below it, each phase's valid callbacks' full latency line and the receiver's counts:
#     every valid callback it accepted must be delivered and it must exit cleanly (the
#     script fails otherwise).
# To compare builds, run it once per binary: RECEIVER_BIN=/path/to/older/receiver.
#
# Environment: DURATION (each phase, default 10s), ABUSE_CLIENTS (default 256), ABUSE_BODY
# (bytes, default 1000000), ABUSE_RATE (valid callbacks per second, default 100),
# RECEIVER_BIN (default bin/receiver, built here), BENCH_PORT_BASE (default 28120, below the
# ephemeral range; uses base+1..base+3).
# shellcheck source=hack/bench/lib.sh
source "$(dirname "$0")/bench/lib.sh"
bench_init bench-abuse

DURATION=${DURATION:-10s}
ABUSE_CLIENTS=${ABUSE_CLIENTS:-256}
ABUSE_BODY=${ABUSE_BODY:-1000000}
ABUSE_RATE=${ABUSE_RATE:-100}
RECEIVER_BIN=${RECEIVER_BIN:-bin/receiver}
BASE=${BENCH_PORT_BASE:-28120}
RECV_ADDR=127.0.0.1:$((BASE + 1))
ADMIN_ADDR=127.0.0.1:$((BASE + 2))
SINK_ADDR=127.0.0.1:$((BASE + 3))

need_cpus
build_receiver
build_helpers sink abuse

REALTIME=()
if chrt -f 10 true 2>/dev/null; then REALTIME=(chrt -f 10); fi
# The abuse outlasts the valid callbacks, which start half a second into it.
ATTACK_FOR=$(awk -v d="${DURATION%s}" 'BEGIN {print d + 1 "s"}')

row() { printf '%-22s %10s %12s %10s %9s   %s\n' "$@"; }

# abuse_phase NAME SIGN: a fresh receiver under ABUSE_CLIENTS abusive clients whose requests
# carry SIGN, with valid callbacks beside them; prints one table row, appends the details to
# WORK/details.
abuse_phase() {
	local name=$1 sign=$2 pid apid valid attack rss s acc del dl fl p99 non200
	start_bg "receiver-$name" env IM_CALLBACK_TOKEN=$TOKEN taskset -c "$SERVER_CPU" "$RECEIVER_BIN" "${RECV_COMMON[@]}" \
		--sink "http://$SINK_ADDR/" --listen "$RECV_ADDR" --admin-listen "$ADMIN_ADDR"
	pid=$BG_PID
	wait_http "http://$ADMIN_ADDR/readyz"
	local url="http://$RECV_ADDR/im/callback?"
	taskset -c "$LOAD_CPU" bin/bench-abuse -attack-url "$url$(callback_query Sns.CallbackBlackListDelete "$sign")" \
		-clients "$ABUSE_CLIENTS" -body-bytes "$ABUSE_BODY" -duration "$ATTACK_FOR" >"$WORK/attack-$name.out" &
	apid=$!
	PIDS+=("$apid")
	sleep 0.5
	valid=$(taskset -c "$LOAD_CPU" "${REALTIME[@]}" bin/bench-abuse -clients 0 \
		-valid-url "$url$(callback_query Sns.CallbackBlackListDelete)" -rate "$ABUSE_RATE" -duration "$DURATION")
	wait "$apid"
	attack=$(cat "$WORK/attack-$name.out")
	rss=$(peak_rss_kib "$pid")
	s=$(drain_receiver)
	read -r acc del dl fl <<<"$s"
	stop_receiver "$pid"
	p99=$(echo "$valid" | awk '/^valid latency/ {print $6}')
	non200=$(echo "$valid" | awk '/^valid callbacks/ {gsub(/,/, "", $7); print $7 + $9}')
	row "$name" "$(mib "$rss") MiB" "$p99" "$non200" \
		"$(awk -v k="$rss" 'BEGIN {print (k / 1024 < 100) ? "yes" : "NO"}')" "${attack#abusive }"
	{
		echo "$name: $valid" | tr '\n' ';' | sed 's/;$//; s/;/; /'
		echo
		echo "$name: receiver accepted $acc, delivered $del, dead-lettered $dl, failed $fl; exit status $STOP_CODE"
	} >>"$WORK/details"
	if [ "$del" != "$acc" ] || [ "$fl" != 0 ] || [ "$STOP_CODE" != 0 ]; then LOST=1; fi
}

echo "== abuse run: $ABUSE_CLIENTS clients x $ABUSE_BODY-byte bodies on core $LOAD_CPU, valid callbacks at $ABUSE_RATE/s (${REALTIME[*]:-no real-time priority}), receiver on core $SERVER_CPU, $DURATION each" >&2
start_sink sink "$SINK_ADDR"
LOST=0
: >"$WORK/details"
echo
echo "abuse run ($RECEIVER_BIN): targets peak RSS < 100 MiB, valid callbacks answered within 100 ms at p99"
row "abusive clients" "peak RSS" "valid p99" "valid !200" "RSS<100" "what the abusive clients got"
abuse_phase bad-sign "$(printf '%064d' 0)"
abuse_phase captured-valid-sign "$SIGN"
cat "$WORK/details"
load_average
if [ "$LOST" = 0 ]; then
	echo "zero loss: every valid callback accepted was delivered"
else
	die "LOSS: delivered != accepted (or failed / non-zero exit), see above"
fi
