package receiver

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"time"
)

// Unavailable is why a callback got 503: the value of imcallback_unavailable_total's reason
// label.
type Unavailable uint8

// The reasons for a 503.
const (
	UnavailableQueueFull  Unavailable = iota // the in-memory queue (--queue-size) is full
	UnavailableSpoolFull                     // the spool (--spool-max-bytes) is full
	UnavailableDraining                      // shutting down: the shutdown delay is over
	UnavailableSpoolError                    // the spool could not write or sync; /healthz fails so the container restarts
	UnavailableBodyBudget                    // the bodies being read at once hold --max-body-bytes-in-flight
	numUnavailable
	available Unavailable = numUnavailable // enqueue's "accepted"
)

var unavailableNames = [numUnavailable]string{
	UnavailableQueueFull:  "queue_full",
	UnavailableSpoolFull:  "spool_full",
	UnavailableDraining:   "draining",
	UnavailableSpoolError: "spool_error",
	UnavailableBodyBudget: "body_budget",
}

var unavailableBodies = [numUnavailable][]byte{
	UnavailableQueueFull:  bodyQueueFull,
	UnavailableSpoolFull:  replyBody(false, "receiver spool is full, try again later"),
	UnavailableDraining:   bodyShuttingDown,
	UnavailableSpoolError: replyBody(false, "receiver cannot store callbacks durably, try again later"),
	UnavailableBodyBudget: bodyBusy,
}

func (u Unavailable) String() string { return unavailableNames[u] }

// UnavailableReasons lists every imcallback_unavailable_total reason label value.
func UnavailableReasons() []string { return append([]string(nil), unavailableNames[:]...) }

// unavailableOf is the 503 reason of a failed Queue.Append (available for nil).
func (r *Receiver) unavailableOf(err error) Unavailable {
	switch {
	case err == nil:
		return available
	case errors.Is(err, ErrLaneFull):
		if r.spool != nil {
			return UnavailableSpoolFull
		}
		return UnavailableQueueFull
	case errors.Is(err, ErrNoRoom):
		// The filesystem, not the quota, is full: not a failure; delivering frees space.
		if ok, left := r.noRoomLog.allow(time.Now(), 1); ok {
			r.log.Warn("callback refused: the spool's filesystem has no room for a new segment; delivering what the spool holds frees it",
				slog.Any("error", err), slog.Int64("notLoggedSinceLastLine", left))
		}
		return UnavailableSpoolFull
	case errors.Is(err, ErrStopped):
		return UnavailableDraining
	}
	r.spoolErrOnce.Do(func() {
		r.log.Error("the spool failed: callbacks get 503 and /healthz fails until a restart recovers the spool from disk",
			slog.Any("error", err), slog.String("spoolDir", r.cfg.SpoolDir))
	})
	return UnavailableSpoolError
}

// refusalMemory is how long a refusal for want of room keeps /readyz failing once nothing
// is accepted any more: with the pod out of the Service's endpoints nothing arrives to show
// that there is room again, so readiness comes back by itself after it and is tested by
// the next callbacks.
const refusalMemory = 5 * time.Second

// intakeState tells /readyz whether the intake can accept: per lane, when it last accepted
// and when it last refused for want of room (Unix nanoseconds), and the same for the store
// as a whole (a full filesystem refuses every lane).
type intakeState struct {
	lastOK, lastFull     []atomic.Int64
	storeOK, storeNoRoom atomic.Int64
}

func newIntakeState(lanes int) intakeState {
	return intakeState{lastOK: make([]atomic.Int64, lanes), lastFull: make([]atomic.Int64, lanes)}
}

// note records the answer of an Append to lane at now.
func (s *intakeState) note(lane int, u Unavailable, err error, now time.Time) {
	if lane >= len(s.lastOK) {
		return
	}
	t := now.UnixNano()
	switch {
	case u == available:
		s.lastOK[lane].Store(t)
		s.storeOK.Store(t)
	case errors.Is(err, ErrNoRoom):
		s.storeNoRoom.Store(t)
	case u == UnavailableSpoolFull || u == UnavailableQueueFull:
		s.lastFull[lane].Store(t)
	}
}

// refusing says why the receiver cannot accept callbacks now ("" when it can): the store
// failed, its filesystem is full, or every lane's quota is full. One lane full is not a
// reason: its commands get 503 on every replica alike, while the others' are accepted.
func (r *Receiver) refusing(now time.Time) string {
	if err := r.queue.Err(); err != nil {
		return "the spool failed: " + err.Error()
	}
	s := &r.intake
	recent := func(t int64) bool { return now.UnixNano()-t < int64(refusalMemory) }
	if t := s.storeNoRoom.Load(); t > s.storeOK.Load() && recent(t) {
		return "the spool's filesystem is full"
	}
	if len(s.lastFull) == 0 {
		return ""
	}
	for i := range s.lastFull {
		if t := s.lastFull[i].Load(); t <= s.lastOK[i].Load() || !recent(t) {
			return ""
		}
	}
	if r.spool != nil {
		return "every route's spool quota is full"
	}
	return "every route's queue is full"
}
