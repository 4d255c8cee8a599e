#!/usr/bin/env bash
# What it measures (issue 12's performance section): what a decision costs the receiver next
# to an accepted-and-delivered callback, in the same receiver process, on loopback. A decision
# is C2C.CallbackBeforeSendMsg answered by a local decision service (the raw sink answering a
# fixed reply); the accepted callbacks go to the accept-all sink. The receiver on core 0; wrk,
# hack/bench/loadgen, the sink and the decision service on core 1. The receiver verifies
# signatures (IM_CALLBACK_TOKEN) and delivers; every forwarded body differs.
#
# Phases: accepted callbacks at peak (wrk, DURATION) and at half of that peak (loadgen, open
# loop, latency from each request's scheduled time); decisions the same; then both at one
# fixed rate (the lower half peak) in alternating PHASE-long phases, two rounds, so that
# neighbours' noise falls on both alike; then the decision service alone at the decisions'
# half peak.
#
# How to read it:
#   - the table: per column (accepted callbacks, decisions) the wrk peak and its p50/p99, the
#     half-peak rate and its p50/p99, the share the receiver answered within 5 ms by its own
#     request histogram (its p99 is under 5 ms when this is >= 99%; a decision's includes its
#     exchange with the service), peak RSS, CPU per accepted-and-delivered callback (until
#     delivered) and per decision;
#   - "at one rate (alternating)": CPU per decision / per accepted-and-delivered callback, the
#     ratio to hold to (target <= 1.5); the same ratio at each one's peak is more exposed to
#     neighbours;
#   - "the service alone": the decision service's own latency at that rate, without the
#     receiver; target: the decision's p99 at half peak under 5 ms plus this;
#   - failed exchanges are answered by the failure policy, by reason ("canceled" are the
#     requests wrk drops when it stops); a decision is always answered 200 (the script fails
#     otherwise);
#   - zero loss: delivered == accepted after the drain and a clean exit (the script fails
#     otherwise).
#
# Environment: DURATION (default 10s), PHASE (each alternating phase, default 5s), CONNS (wrk
# and loadgen connections, default 32), BENCH_PORT_BASE (default 28110, below the ephemeral
# range; uses base+1..base+4), RECEIVER_BIN (default bin/receiver, built here; another binary
# to compare, e.g. an older build).
# shellcheck source=hack/bench/lib.sh
source "$(dirname "$0")/bench/lib.sh"
bench_init bench-decisions

DURATION=${DURATION:-10s}
PHASE=${PHASE:-5s}
CONNS=${CONNS:-32}
RECEIVER_BIN=${RECEIVER_BIN:-bin/receiver}
BASE=${BENCH_PORT_BASE:-28110}
RECV_ADDR=127.0.0.1:$((BASE + 1))
ADMIN_ADDR=127.0.0.1:$((BASE + 2))
SINK_ADDR=127.0.0.1:$((BASE + 3))
DECIDE_ADDR=127.0.0.1:$((BASE + 4))

need_cpus
need_wrk
build_receiver
build_helpers sink loadgen

DEC_BODY='{"CallbackCommand":"C2C.CallbackBeforeSendMsg","From_Account":"jared","To_Account":"Jonh","MsgSeq":48374,"MsgRandom":2837546,"MsgTime":1557481126,"MsgKey":"48374_2837546_1557481126","OnlineOnlyFlag":1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"red packet"}}],"CloudCustomData":"your cloud custom data"}'
DEC_ANSWER='{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}'
write_wrk_script "$WORK/decide.lua" "$DEC_BODY"
RECV_URL="http://$RECV_ADDR/im/callback?$(callback_query Sns.CallbackBlackListDelete)"
DEC_URL="http://$RECV_ADDR/im/callback?$(callback_query C2C.CallbackBeforeSendMsg)"

# within_5ms outcome -> "answered-within-5ms total" so far, from the receiver's own request
# histogram (its handler's time: free of the load generator's scheduling on the busy core).
within_5ms() {
	curl -s "http://$ADMIN_ADDR/metrics" | awk -v o="$1" '
		index($1, "imcallback_request_duration_seconds_bucket{") == 1 && index($1, "le=\"0.005\"") && index($1, "outcome=\"" o "\"") {w = $2}
		index($1, "imcallback_request_duration_seconds_count{") == 1 && index($1, "outcome=\"" o "\"") {n = $2}
		END {printf "%d %d", w, n}'
}
# within_5ms_since outcome "w0 n0" -> percentage answered within 5 ms since then
within_5ms_since() {
	local w1 n1
	read -r w1 n1 <<<"$(within_5ms "$1")"
	echo "$2" | awk -v w1="$w1" -v n1="$n1" '{printf "%.2f%%", (n1 - $2 > 0) ? 100 * (w1 - $1) / (n1 - $2) : 0}'
}
decided() { metric_sum 'imcallback_callbacks_total{outcome="decided"}'; }

echo "== receiver ($RECEIVER_BIN) on core $SERVER_CPU, sink + decision service + load on core $LOAD_CPU" >&2
start_sink sink "$SINK_ADDR"
start_sink decide "$DECIDE_ADDR" -answer "$DEC_ANSWER"
start_bg receiver env IM_CALLBACK_TOKEN=$TOKEN taskset -c "$SERVER_CPU" "$RECEIVER_BIN" "${RECV_COMMON[@]}" \
	--sink "http://$SINK_ADDR/" --decision "C2C.CallbackBeforeSendMsg=http://$DECIDE_ADDR/" \
	--listen "$RECV_ADDR" --admin-listen "$ADMIN_ADDR"
RECV_PID=$BG_PID
wait_http "http://$ADMIN_ADDR/readyz"

echo "== accepted callbacks: wrk -c$CONNS, $DURATION, then half of that peak" >&2
warm "$RECV_URL"
S=$(drain_receiver)
read -r ACC0 _ <<<"$S"
t0=$(cpu_ticks $RECV_PID)
S=$(run_wrk "$RECV_URL")
read -r RECV_RPS RECV_P50 RECV_P99 _ RECV_NON2XX <<<"$S"
S=$(drain_receiver)
read -r ACC1 _ <<<"$S"
t1=$(cpu_ticks $RECV_PID)
RECV_CPU_US=$(us_per $((t1 - t0)) $((ACC1 - ACC0)))
RECV_HALF=$(half "$RECV_RPS")
H0=$(within_5ms accepted)
RECV_HALF_OUT=$(run_loadgen "$RECV_URL" "$RECV_HALF")
RECV_WITHIN=$(within_5ms_since accepted "$H0")
S=$(drain_receiver)

echo "== decisions: C2C.CallbackBeforeSendMsg answered by the local decision service" >&2
warm "$DEC_URL" "$WORK/decide.lua"
DEC0=$(decided)
t0=$(cpu_ticks $RECV_PID)
S=$(run_wrk "$DEC_URL" "$WORK/decide.lua")
read -r DEC_RPS DEC_P50 DEC_P99 _ DEC_NON2XX <<<"$S"
t1=$(cpu_ticks $RECV_PID)
DEC1=$(decided)
DECIDED=$((DEC1 - DEC0))
DEC_CPU_US=$(us_per $((t1 - t0)) "$DECIDED")
DEC_HALF=$(half "$DEC_RPS")
H0=$(within_5ms decided)
DEC_HALF_OUT=$(run_loadgen "$DEC_URL" "$DEC_HALF" "$DEC_BODY")
DEC_WITHIN=$(within_5ms_since decided "$H0")
DEC_RELAYED=$(metric_sum 'imcallback_decisions_total{result="allowed"}')
DEC_FAILED=$(metric_sum 'imcallback_decisions_total{result="failed_allowed"}' 'imcallback_decisions_total{result="failed_rejected"}')
DEC_REASONS=$(curl -s "http://$ADMIN_ADDR/metrics" | awk -F'[{}"]' '/^imcallback_decision_failures_total/ && $NF + 0 > 0 {printf "%s%s %d", sep, $3, $NF; sep = ", "}')

# Both kinds at one rate, alternating, two rounds: CPU per accepted-and-delivered callback
# (until delivered) and per decision.
SAME_RATE=$(awk -v a="$RECV_HALF" -v b="$DEC_HALF" 'BEGIN {printf "%d", (a < b ? a : b)}')
echo "== accepted and decided alternately at $SAME_RATE/s, $PHASE phases, 2 rounds" >&2
SAME_ACC_T=0 SAME_ACC_N=0 SAME_DEC_T=0 SAME_DEC_N=0
for _ in 1 2; do
	S=$(drain_receiver)
	read -r a0 _ <<<"$S"
	t0=$(cpu_ticks $RECV_PID)
	run_loadgen "$RECV_URL" "$SAME_RATE" "$BODY" "$PHASE" >/dev/null
	S=$(drain_receiver)
	read -r a1 _ <<<"$S"
	t1=$(cpu_ticks $RECV_PID)
	SAME_ACC_T=$((SAME_ACC_T + t1 - t0))
	SAME_ACC_N=$((SAME_ACC_N + a1 - a0))
	d0=$(decided)
	t0=$(cpu_ticks $RECV_PID)
	run_loadgen "$DEC_URL" "$SAME_RATE" "$DEC_BODY" "$PHASE" >/dev/null
	t1=$(cpu_ticks $RECV_PID)
	d1=$(decided)
	SAME_DEC_T=$((SAME_DEC_T + t1 - t0))
	SAME_DEC_N=$((SAME_DEC_N + d1 - d0))
done
SAME_ACC_US=$(us_per "$SAME_ACC_T" "$SAME_ACC_N")
SAME_DEC_US=$(us_per "$SAME_DEC_T" "$SAME_DEC_N")
# The service's own time: the same exchange without the receiver, from the load core.
SVC_OUT=$(run_loadgen "http://$DECIDE_ADDR/" "$DEC_HALF" "$DEC_BODY" 3s)
S=$(drain_receiver)
read -r ACC2 DEL2 DL2 FL2 <<<"$S"
RECV_RSS=$(peak_rss_kib $RECV_PID)
SINK_COUNT=$(curl -s "http://$SINK_ADDR/count")
UNAVAILABLE=$(metric_sum 'imcallback_callbacks_total{outcome="unavailable"}')
DUPLICATE=$(metric_sum 'imcallback_callbacks_total{outcome="duplicate"}')
REJECTED=$(metric_sum 'imcallback_callbacks_total{outcome="rejected"}')
stop_receiver $RECV_PID
RECV_EXIT=$STOP_CODE

echo
echo "decision benchmark: receiver on core $SERVER_CPU, load + sink + decision service on core $LOAD_CPU, wrk -t1 -c$CONNS -d$DURATION, loopback"
row() { printf '%-34s %16s %16s\n' "$@"; }
row "" "accepted" "decision"
row "requests/s (wrk, peak)" "$RECV_RPS" "$DEC_RPS"
row "latency p50 at peak (wrk)" "$RECV_P50" "$DEC_P50"
row "latency p99 at peak (wrk)" "$RECV_P99" "$DEC_P99"
row "half-peak rate (loadgen)" "$(loadgen_rate "$RECV_HALF_OUT")/s" "$(loadgen_rate "$DEC_HALF_OUT")/s"
row "latency p50 at half peak" "$(loadgen_p "$RECV_HALF_OUT" p50)" "$(loadgen_p "$DEC_HALF_OUT" p50)"
row "latency p99 at half peak" "$(loadgen_p "$RECV_HALF_OUT" p99)" "$(loadgen_p "$DEC_HALF_OUT" p99)"
row "in-receiver <= 5 ms at half peak" "$RECV_WITHIN" "$DEC_WITHIN"
row "peak RSS (VmHWM)" "$(mib "$RECV_RSS") MiB" "(same process)"
row "CPU per callback / decision (peak)" "$RECV_CPU_US us" "$DEC_CPU_US us"
echo "in-receiver <= 5 ms: share of requests at half peak the receiver answered within 5 ms by its own clock (request histogram; a decision's includes its exchange): its p99 is under 5 ms when this is >= 99%"
echo "decision: CPU per decision / per accepted-and-delivered callback, at one rate ($SAME_RATE/s, alternating): $SAME_DEC_US us / $SAME_ACC_US us = $(ratio "$SAME_DEC_US" "$SAME_ACC_US") (target <= 1.5)"
echo "decision: the same ratio at each one's peak (wrk, one phase each, more exposed to neighbours): $(ratio "$DEC_CPU_US" "$RECV_CPU_US")"
echo "decision: the service alone at $DEC_HALF/s, without the receiver: $(echo "$SVC_OUT" | sed -n 2p) (target: the decision's p99 under 5 ms plus this)"
echo "decision: $DECIDED decided during wrk; $DEC_RELAYED answers relayed in all; $DEC_FAILED failed exchanges, answered by the failure policy (${DEC_REASONS:-none}; \"canceled\" are requests wrk drops when it stops)"
load_average
echo "receiver counts after drain: accepted $ACC2, delivered $DEL2, dead-lettered $DL2, failed $FL2, unavailable $UNAVAILABLE, rejected $REJECTED, duplicate $DUPLICATE; sink received $SINK_COUNT; exit status $RECV_EXIT"
echo "loadgen at half peak: accepted: $(echo "$RECV_HALF_OUT" | head -1)"
echo "                      decision: $(echo "$DEC_HALF_OUT" | head -1)"
if [ "$RECV_NON2XX" != 0 ]; then
	echo "note: wrk saw $RECV_NON2XX non-2xx replies to accepted callbacks"
fi
[ "$DEC_NON2XX" = 0 ] || die "DECISIONS ANSWERED NON-200: $DEC_NON2XX (a decision is always answered 200)"
if [ "$DEL2" = "$ACC2" ] && [ "$FL2" = 0 ] && [ "$RECV_EXIT" = 0 ]; then
	echo "zero loss: delivered == accepted"
else
	die "LOSS: delivered $DEL2 != accepted $ACC2 (or failed / non-zero exit)"
fi
