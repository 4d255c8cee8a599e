#!/usr/bin/env bash
# What it measures (issue 11's performance section): bin/receiver without a spool, with
# --spool-dir on the machine's disk (not tmpfs), and with the spool at an explicit
# GOMAXPROCS=1 (what a pod with a CPU limit of 1 gets), side by side in one run, on loopback,
# against
#   - bare: a bare net/http server (the ceiling: read the body, write the fixed OK reply);
#   - forwarder: an ideal forwarder (hack/bench/forwarder: the fixed OK, the body queued in
#     memory and POSTed to the sink with plain net/http; the floor of any receiver that
#     delivers each callback as a request).
# Each server runs in turn on core 0; wrk, hack/bench/loadgen and the accept-all sink on core 1.
# The receiver verifies signatures (IM_CALLBACK_TOKEN) and delivers; every body differs.
#
# How to read the table (each figure the median of ROUNDS rounds: on a shared machine
# neighbours steal core 0 from one phase and not the next, and the servers take turns):
#   - requests/s (wrk, peak): closed-loop throughput for DURATION, and wrk's p50/p99 there;
#   - delivered/s (peak, to drained): what a forwarding server delivered per second from the
#     start of the wrk run until everything it accepted was delivered (a spool accepts
#     faster than it delivers for a while);
#   - half-peak rate, p50/p99 at half peak: hack/bench/loadgen, open loop at half of that
#     server's own peak, latency from each request's scheduled time (like wrk2, which Debian
#     lacks); issue 11's target for the spool: p99 under 5 ms;
#   - peak RSS (VmHWM) of the server process; target for the spool: under 64 MiB;
#   - CPU per delivered event: utime+stime from /proc over the wrk run and the drain,
#     divided by the events delivered (bare: by the requests answered);
#   - lost: accepted - delivered after the drain, for every forwarding server; must be 0
#     (the script fails otherwise);
#   - efficiency vs the ideal forwarder: its CPU per event / this server's, per round, then
#     the median; target for the spool: at least 0.75;
#   - receiver vs bare: throughput and CPU per request relative to the ceiling (CPU per
#     request is much less sensitive to neighbours than requests/s).
#
# With BENCH_BASE_REF (a git ref, such as the main branch), the receiver built from that ref
# runs beside this one in every round, without and with a spool (receiver@base, spool@base), so
# that a change's CPU per event is compared in one run.
#
# Environment: DURATION (default 10s), CONNS (wrk and loadgen connections, default 32),
# ROUNDS (default 3), BENCH_PORT_BASE (default 28100, below the ephemeral range; uses
# base..base+3), BENCH_SPOOL_PARENT (default /var/tmp: where the spool directory is made;
# must not be tmpfs).
# shellcheck source=hack/bench/lib.sh
source "$(dirname "$0")/bench/lib.sh"
bench_init bench-receiver

DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-3}
BASE=${BENCH_PORT_BASE:-28100}
SERVER_ADDR=127.0.0.1:$BASE
ADMIN_ADDR=127.0.0.1:$((BASE + 2))
SINK_ADDR=127.0.0.1:$((BASE + 3))
SPOOL_PARENT=${BENCH_SPOOL_PARENT:-/var/tmp}

need_cpus
need_wrk
SPOOL_FS=$(findmnt -n -o FSTYPE,SOURCE -T "$SPOOL_PARENT")
case "$SPOOL_FS" in
tmpfs* | ramfs*)
	die "$SPOOL_PARENT is on $SPOOL_FS; the spool must be measured on a disk (set BENCH_SPOOL_PARENT)"
	;;
esac
build_receiver
build_helpers bare forwarder sink loadgen
BASE_REF=${BENCH_BASE_REF:-}
if [ -n "$BASE_REF" ]; then
	echo "bench-receiver: building bin/receiver-base from $BASE_REF..." >&2
	BASE_SRC=$(mktemp -d)
	CLEANUP_PATHS+=("$BASE_SRC")
	git archive "$BASE_REF" | tar -x -C "$BASE_SRC"
	(cd "$BASE_SRC" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OLDPWD/bin/receiver-base" ./cmd/receiver)
fi

SPOOL_DIR=$(mktemp -d "$SPOOL_PARENT/imcallback-bench-spool.XXXXXX")
CLEANUP_PATHS+=("$SPOOL_DIR")
URL="http://$SERVER_ADDR/im/callback?$(callback_query Sns.CallbackBlackListDelete)"

# stats KIND -> "accepted delivered failed" so far (bare: requests are not counted)
stats() {
	case $1 in
	bare) echo "0 0 0" ;;
	forwarder) curl -s "http://$SERVER_ADDR/stats" ;;
	receiver)
		local acc del dl fl
		read -r acc del dl fl <<<"$(receiver_counts)"
		echo "$acc $del $((dl + fl))"
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
	die "$1 did not drain ($s)"
}

start_sink sink "$SINK_ADDR"

# bench NAME KIND command... : runs one server through the phases, records this round's
# figures (in the R_ arrays, which the table reads through median's nameref).
declare -A R_RPS R_PEAK R_P50PEAK R_P99PEAK R_HALF R_P50 R_P99 R_RSS R_CPU R_LOSS R_NOTE
# shellcheck disable=SC2034
bench() {
	local name=$1 kind=$2
	shift 2
	echo "== $name on core $SERVER_CPU, wrk -c$CONNS + sink on core $LOAD_CPU, $DURATION" >&2
	start_bg "$name" taskset -c "$SERVER_CPU" "$@"
	local pid=$BG_PID s d0 d1 a2 d2 f2 t0 t1 w0 w1 rps p50peak p99peak reqs non2xx
	if [ "$kind" = receiver ]; then wait_http "http://$ADMIN_ADDR/readyz"; else wait_http "http://$SERVER_ADDR/stats"; fi
	warm "$URL"
	s=$(drain "$kind")
	read -r _ d0 _ <<<"$s"
	t0=$(cpu_ticks "$pid")
	w0=$(date +%s.%N)
	s=$(run_wrk "$URL")
	read -r rps p50peak p99peak reqs non2xx <<<"$s"
	s=$(drain "$kind")
	read -r _ d1 _ <<<"$s"
	w1=$(date +%s.%N)
	t1=$(cpu_ticks "$pid")
	local n=$((d1 - d0))
	[ "$kind" = bare ] && n=$reqs
	R_CPU[$name,$ROUND]=$(us_per $((t1 - t0)) "$n")
	# The peak of a forwarding server is what it delivers per second until it has delivered
	# all it accepted (a spool accepts faster than it delivers for a while).
	local peak=$rps
	[ "$kind" = bare ] || peak=$(awk -v n="$n" -v a="$w0" -v b="$w1" 'BEGIN {printf "%.0f", n / (b - a)}')
	R_PEAK[$name,$ROUND]=$peak
	local lg
	lg=$(run_loadgen "$URL" "$(half "$peak")")
	s=$(drain "$kind")
	read -r a2 d2 f2 <<<"$s"
	R_RSS[$name,$ROUND]=$(mib "$(peak_rss_kib "$pid")")
	R_RPS[$name,$ROUND]=$rps
	R_P50PEAK[$name,$ROUND]=$p50peak
	R_P99PEAK[$name,$ROUND]=$p99peak
	R_HALF[$name,$ROUND]=$(loadgen_rate "$lg")
	R_P50[$name,$ROUND]=$(loadgen_p "$lg" p50)
	R_P99[$name,$ROUND]=$(loadgen_p "$lg" p99)
	if [ "$kind" = bare ]; then
		R_LOSS[$name,$ROUND]="-"
	else
		R_LOSS[$name,$ROUND]=$((a2 - d2))
		[ "$f2" = 0 ] || R_LOSS[$name,$ROUND]="${R_LOSS[$name,$ROUND]} (+$f2 failed)"
	fi
	R_NOTE[$name,$ROUND]="wrk non-2xx $non2xx; loadgen: $(echo "$lg" | head -1)"
	local syncs=""
	[ "$kind" = receiver ] && syncs=$(metric imcallback_spool_sync_duration_seconds_count)
	if [ -n "$syncs" ] && [ "$syncs" != 0 ]; then
		R_NOTE[$name,$ROUND]="${R_NOTE[$name,$ROUND]}; $syncs disk syncs, $(awk -v a="$a2" -v s="$syncs" 'BEGIN {printf "%.1f", a / s}') callbacks per sync"
	fi
	if [ "$kind" = receiver ]; then
		stop_receiver "$pid"
		[ "$STOP_CODE" = 0 ] || R_LOSS[$name,$ROUND]="${R_LOSS[$name,$ROUND]} (exit $STOP_CODE)"
	else
		kill "$pid"
		wait "$pid" 2>/dev/null || true
	fi
}

RECV_ARGS=("${RECV_COMMON[@]}" --sink "http://$SINK_ADDR/" --listen "$SERVER_ADDR" --admin-listen "$ADMIN_ADDR")
NAMES=(bare forwarder receiver spool spool-P1)
[ -z "$BASE_REF" ] || NAMES+=(receiver@base spool@base)
for ROUND in $(seq 1 "$ROUNDS"); do
	echo "-- round $ROUND of $ROUNDS" >&2
	bench bare bare bin/bench-bare -listen "$SERVER_ADDR"
	bench forwarder forwarder bin/bench-forwarder -listen "$SERVER_ADDR" -sink "http://$SINK_ADDR/"
	bench receiver receiver env IM_CALLBACK_TOKEN=$TOKEN bin/receiver "${RECV_ARGS[@]}"
	bench spool receiver env IM_CALLBACK_TOKEN=$TOKEN bin/receiver "${RECV_ARGS[@]}" --spool-dir "$SPOOL_DIR/a$ROUND"
	bench spool-P1 receiver env IM_CALLBACK_TOKEN=$TOKEN GOMAXPROCS=1 bin/receiver "${RECV_ARGS[@]}" --spool-dir "$SPOOL_DIR/b$ROUND"
	if [ -n "$BASE_REF" ]; then
		bench receiver@base receiver env IM_CALLBACK_TOKEN=$TOKEN bin/receiver-base "${RECV_ARGS[@]}"
		bench spool@base receiver env IM_CALLBACK_TOKEN=$TOKEN bin/receiver-base "${RECV_ARGS[@]}" --spool-dir "$SPOOL_DIR/c$ROUND"
	fi
done

echo
echo "receiver benchmark: each server on core $SERVER_CPU, load + sink on core $LOAD_CPU, wrk -t1 -c$CONNS -d$DURATION, loopback; medians of $ROUNDS rounds"
echo "spool on $SPOOL_PARENT ($SPOOL_FS); spool-P1 is the spool with GOMAXPROCS=1 set explicitly"
row() {
	printf '%-30s' "$1"
	shift
	for v in "$@"; do printf ' %13s' "$v"; done
	echo
}
# median ARRAY NAME: the median over the rounds, by each value's first word (durations in us,
# ms or s compare as such); the whole value is shown, notes included.
median() {
	local -n arr=$1
	for r in $(seq 1 "$ROUNDS"); do echo "${arr[$2,$r]}"; done |
		awk '{u = $1; x = u + 0; if (u ~ /us$/ || u ~ /µs$/) x /= 1000; else if (u ~ /ms$/) x += 0; else if (u ~ /s$/) x *= 1000; print x "\t" $0}' |
		sort -g | awk -F'\t' '{a[NR] = $2} END {print a[int((NR + 1) / 2)]}'
}
cols() {
	local out=() n
	for n in "${NAMES[@]}"; do out+=("$(median "$1" "$n")$2"); done
	row "$3" "${out[@]}"
}
row "" "${NAMES[@]}"
cols R_RPS "" "requests/s (wrk, peak)"
cols R_PEAK "" "delivered/s (peak, to drained)"
cols R_P50PEAK "" "latency p50 at peak (wrk)"
cols R_P99PEAK "" "latency p99 at peak (wrk)"
cols R_HALF "/s" "half-peak rate (loadgen)"
cols R_P50 "" "latency p50 at half peak"
cols R_P99 "" "latency p99 at half peak"
cols R_RSS " MiB" "peak RSS (VmHWM)"
cols R_CPU " us" "CPU per delivered event"
cols R_LOSS "" "lost (accepted - delivered)"
# per_round A B: A's figure over B's per round (servers measured minutes apart), then the
# median, with the rounds' values.
per_round() { # ARRAY A B
	local -n arr=$1
	for r in $(seq 1 "$ROUNDS"); do ratio "${arr[$2,$r]}" "${arr[$3,$r]}"; echo; done |
		sort -g | awk '{a[NR] = $1} END {printf "%s (rounds:", a[int((NR + 1) / 2)]; for (i = 1; i <= NR; i++) printf " %s", a[i]; print ")"}'
}
echo "efficiency vs the ideal forwarder (its CPU per event / this one's, median of rounds; spool target >= 0.75):"
for n in receiver spool spool-P1; do echo "  $n $(per_round R_CPU forwarder "$n")"; done
if [ -n "$BASE_REF" ]; then
	for n in receiver spool; do echo "  $n@base $(per_round R_CPU forwarder "$n@base")"; done
	echo "this build vs $BASE_REF, CPU per event (base / this, > 1: this one costs less): receiver $(per_round R_CPU receiver@base receiver); spool $(per_round R_CPU spool@base spool)"
fi
echo "receiver vs bare net/http: requests/s $(per_round R_RPS receiver bare); by CPU per request (bare / receiver, robust to noisy neighbours) $(per_round R_CPU bare receiver)"
load_average
for r in $(seq 1 "$ROUNDS"); do for n in "${NAMES[@]}"; do echo "round $r $n: ${R_NOTE[$n,$r]}"; done; done
lost=0
for r in $(seq 1 "$ROUNDS"); do for n in "${NAMES[@]}"; do [ "$n" = bare ] || [ "${R_LOSS[$n,$r]}" = 0 ] || lost=1; done; done
if [ $lost = 0 ]; then
	echo "zero loss: delivered == accepted for every forwarding server"
else
	die "LOSS: see the lost row"
fi
