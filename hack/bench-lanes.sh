#!/usr/bin/env bash
# What it measures (issue 17's performance section): the delivery rate and latency of two
# healthy routes when a third route's sink is dead (connection refused) against the same
# load with all three healthy, side by side in one run; goal: within 20%.
#
# bin/receiver (with a spool on the machine's disk, as the operator runs it) on core 0 gets
# three commands from three open-loop load generators (hack/bench/loadgen, RATE each) on
# core 1: Sns.CallbackBlackListDelete to the default sink, State.StateChange and
# Group.CallbackAfterNewMemberJoin each to a --route sink (accept-all raw sinks, core 1).
# In the "one dead" phase the last route's URL is a closed port.
#
# For each phase (medians of ROUNDS rounds):
#   - delivered/s by the two healthy sinks over the load's DURATION (what they had taken by
#     its end, divided by DURATION) and what they had taken once drained;
#   - p50/p99 of the callbacks' replies (loadgen, from each request's scheduled time), and
#     p99 of the healthy events' delivery (imcallback_delivery_duration_seconds, delivered:
#     the dead route's events are not delivered, so it holds only the healthy ones);
#   - 503s (imcallback_callbacks_total{outcome="unavailable"}: must be 0);
#   - CPU per delivered event of the receiver.
#
# Environment: DURATION (default 10s), RATE (per command, default 1000), CONNS (per load
# generator, default 16), ROUNDS (default 3), BENCH_PORT_BASE (default 28200; uses
# base..base+5), BENCH_SPOOL_PARENT (default /var/tmp).
# shellcheck source=hack/bench/lib.sh
source "$(dirname "$0")/bench/lib.sh"
bench_init bench-lanes

DURATION=${DURATION:-10s}
RATE=${RATE:-1000}
CONNS=${CONNS:-16}
ROUNDS=${ROUNDS:-3}
BASE=${BENCH_PORT_BASE:-28200}
SERVER_ADDR=127.0.0.1:$BASE
ADMIN_ADDR=127.0.0.1:$((BASE + 1))
SINKS=(127.0.0.1:$((BASE + 2)) 127.0.0.1:$((BASE + 3)) 127.0.0.1:$((BASE + 4)))
DEAD=127.0.0.1:$((BASE + 5)) # nothing listens there
SPOOL_PARENT=${BENCH_SPOOL_PARENT:-/var/tmp}
COMMANDS=(Sns.CallbackBlackListDelete State.StateChange Group.CallbackAfterNewMemberJoin)
BODIES=("$BODY"
	'{"CallbackCommand":"State.StateChange","Info":{"To_Account":"000000000000","Action":"Login"}}'
	'{"CallbackCommand":"Group.CallbackAfterNewMemberJoin","GroupId":"g1","NewMemberList":[{"Member_Account":"000000000000"}]}')

need_cpus
build_receiver
build_helpers sink loadgen
SPOOL_DIR=$(mktemp -d "$SPOOL_PARENT/imcallback-bench-lanes.XXXXXX")
CLEANUP_PATHS+=("$SPOOL_DIR")
for i in 0 1 2; do start_sink "sink$i" "${SINKS[$i]}"; done
sink_count() { curl -s "http://$1/count"; }
secs() { awk -v d="$DURATION" 'BEGIN {sub(/s$/, "", d); print d + 0}'; }

# p99 of a histogram from its cumulative buckets: the upper bound of the first bucket
# holding 99% of the count.
hist_p99() {
	curl -s "http://$ADMIN_ADDR/metrics" | awk -v m="$1" '
		index($0, m "_bucket{") == 1 && index($0, "result=\"delivered\"") {
			match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5); n[++k] = $2; b[k] = le
		}
		END { t = n[k]; for (i = 1; i <= k; i++) if (n[i] >= 0.99 * t) { printf "%sms", b[i] * 1000; exit } }'
}

declare -A R_RATE R_DONE R_P99 R_DP99 R_503 R_CPU
# phase NAME THIRD_URL
phase() {
	local name=$1 third=$2
	echo "== $name, round $ROUND: $RATE/s of each of ${#COMMANDS[@]} commands for $DURATION" >&2
	start_bg "receiver-$name" taskset -c "$SERVER_CPU" env IM_CALLBACK_TOKEN=$TOKEN bin/receiver "${RECV_COMMON[@]}" \
		--listen "$SERVER_ADDR" --admin-listen "$ADMIN_ADDR" --spool-dir "$SPOOL_DIR/$name$ROUND" \
		--sink "http://${SINKS[0]}/" --route "${COMMANDS[1]}=http://${SINKS[1]}/" --route "${COMMANDS[2]}=$third" \
		--shutdown-timeout 3s
	local pid=$BG_PID
	wait_http "http://$ADMIN_ADDR/readyz"
	local c0=() i
	for i in 0 1; do c0[i]=$(sink_count "${SINKS[$i]}"); done
	local t0 outs=()
	t0=$(cpu_ticks "$pid")
	for i in 0 1 2; do
		run_loadgen "http://$SERVER_ADDR/im/callback?$(callback_query "${COMMANDS[$i]}")" "$RATE" "${BODIES[$i]}" >"$WORK/lg$i" &
		outs+=($!)
	done
	wait "${outs[@]}"
	local taken=0 done=0
	for i in 0 1; do taken=$((taken + $(sink_count "${SINKS[$i]}") - c0[i])); done
	# Drain the healthy routes (the dead one never drains).
	local want
	want=$((2 * $(awk -v r="$RATE" -v d="$(secs)" 'BEGIN {printf "%d", r * d}')))
	for _ in $(seq 1 300); do
		done=0
		for i in 0 1; do done=$((done + $(sink_count "${SINKS[$i]}") - c0[i])); done
		[ "$done" -ge "$want" ] && break
		sleep 0.1
	done
	local t1
	t1=$(cpu_ticks "$pid")
	R_RATE[$name,$ROUND]=$(awk -v n="$taken" -v d="$(secs)" 'BEGIN {printf "%.0f", n / d}')
	R_DONE[$name,$ROUND]="$done/$want"
	R_P99[$name,$ROUND]=$(loadgen_p "$(cat "$WORK/lg0")" p99)/$(loadgen_p "$(cat "$WORK/lg1")" p99)
	R_DP99[$name,$ROUND]=$(hist_p99 imcallback_delivery_duration_seconds)
	R_503[$name,$ROUND]=$(metric_sum 'imcallback_callbacks_total{outcome="unavailable"}')
	R_CPU[$name,$ROUND]=$(us_per $((t1 - t0)) "$done")
	stop_receiver "$pid"
}

NAMES=(all-healthy one-dead)
for ROUND in $(seq 1 "$ROUNDS"); do
	phase all-healthy "http://${SINKS[2]}/"
	phase one-dead "http://$DEAD/"
done

median() {
	local -n arr=$1
	for r in $(seq 1 "$ROUNDS"); do echo "${arr[$2,$r]}"; done |
		awk '{u = $1; x = u + 0; if (u ~ /us$/) x /= 1000; else if (u ~ /ms$/) x += 0; else if (u ~ /s$/) x *= 1000; print x "\t" $0}' |
		sort -g | awk -F'\t' '{a[NR] = $2} END {print a[int((NR + 1) / 2)]}'
}
row() {
	printf '%-44s' "$1"
	shift
	for v in "$@"; do printf ' %16s' "$v"; done
	echo
}
cols() {
	local out=() n
	for n in "${NAMES[@]}"; do out+=("$(median "$1" "$n")$2"); done
	row "$3" "${out[@]}"
}
echo
echo "lanes benchmark: bin/receiver with a spool on core $SERVER_CPU, 3 x loadgen ($RATE/s each, -c$CONNS) and sinks on core $LOAD_CPU, $DURATION, medians of $ROUNDS rounds"
row "" "${NAMES[@]}"
cols R_RATE "/s" "healthy routes' delivered/s during the load"
cols R_DONE "" "healthy events delivered / offered"
cols R_P99 "" "reply p99 (default / healthy route)"
cols R_DP99 "" "delivery p99 of delivered events (bucket)"
cols R_503 "" "503s"
cols R_CPU " us" "CPU per delivered event"
ratio_rate=$(ratio "$(median R_RATE one-dead)" "$(median R_RATE all-healthy)")
echo "healthy delivery rate, one dead / all healthy: $ratio_rate (goal: >= 0.80)"
load_average
