// Package counts turns the counters of receiver processes into exact totals in a
// CallbackReceiver's status: it scrapes every receiver pod's /metrics and folds the counters
// per incarnation (one receiver process), so that process restarts, rollouts, scale-down and
// restarts of the manager itself neither lose nor double-count.
package counts

import (
	"sort"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// Observation is one successful scrape of one pod.
type Observation struct {
	// Pod that answered (its name, or its address when the endpoint names no pod).
	Pod string
	// Incarnation of the process that answered.
	Incarnation string
	// Counts it reported: its counters since it started.
	Counts cbv1.Counts
	// Spool is its spool's reading; nil without a spool.
	Spool *SpoolReading
}

// Snapshot is one round of scrapes of a receiver's endpoints.
type Snapshot struct {
	// Pods lists every pod the receiver's EndpointSlices named when the round started,
	// whether or not its scrape succeeded.
	Pods map[string]bool
	// Observations are the scrapes that succeeded.
	Observations []Observation
}

// State is what status keeps: the totals, and the counters last read from each live
// incarnation. Totals include everything retired incarnations counted.
type State struct {
	Total        cbv1.Counts
	Incarnations []cbv1.IncarnationCounts
}

// Fold adds a snapshot to a state. Each incarnation's counters only grow, so the totals grow
// by what each one counted since it was last read; a new incarnation adds all it counted.
// An incarnation is retired (its counts stay in the totals) when its pod left the
// EndpointSlices, or when its pod now answers with another incarnation (a restarted
// container). A pod that failed to answer keeps its incarnation: it is read again later.
func Fold(s State, snap Snapshot) State {
	byID := make(map[string]cbv1.IncarnationCounts, len(s.Incarnations))
	for _, inc := range s.Incarnations {
		byID[inc.ID] = inc
	}
	total := s.Total
	current := make(map[string]string, len(snap.Observations)) // pod -> incarnation now
	for _, o := range snap.Observations {
		current[o.Pod] = o.Incarnation
		prev, known := byID[o.Incarnation]
		if !known {
			total = add(total, o.Counts)
			byID[o.Incarnation] = cbv1.IncarnationCounts{ID: o.Incarnation, Pod: o.Pod, Counts: o.Counts}
			continue
		}
		// Counters never go down within one incarnation; a smaller value is an older
		// reading that arrived late and adds nothing.
		grown := maxCounts(prev.Counts, o.Counts)
		total = add(total, sub(grown, prev.Counts))
		prev.Counts, prev.Pod = grown, o.Pod
		byID[o.Incarnation] = prev
	}
	for id, inc := range byID {
		if !snap.Pods[inc.Pod] {
			delete(byID, id) // the pod is gone
		} else if now, answered := current[inc.Pod]; answered && now != id {
			delete(byID, id) // the pod's process restarted
		}
	}
	out := State{Total: total, Incarnations: make([]cbv1.IncarnationCounts, 0, len(byID))}
	for _, inc := range byID {
		out.Incarnations = append(out.Incarnations, inc)
	}
	sort.Slice(out.Incarnations, func(i, j int) bool { return out.Incarnations[i].ID < out.Incarnations[j].ID })
	if len(out.Incarnations) == 0 {
		out.Incarnations = nil
	}
	return out
}

func add(a, b cbv1.Counts) cbv1.Counts { return combine(a, b, func(x, y int64) int64 { return x + y }) }

func sub(a, b cbv1.Counts) cbv1.Counts { return combine(a, b, func(x, y int64) int64 { return x - y }) }

func maxCounts(a, b cbv1.Counts) cbv1.Counts {
	return combine(a, b, func(x, y int64) int64 { return max(x, y) })
}

// combine applies op to each counter of a and b.
func combine(a, b cbv1.Counts, op func(x, y int64) int64) cbv1.Counts {
	out := a
	pa, pb := counters(&out), counters(&b)
	for i := range pa {
		*pa[i] = op(*pa[i], *pb[i])
	}
	return out
}

// counters lists every counter of c, the one place a new counter must be added to be
// folded.
func counters(c *cbv1.Counts) []*int64 {
	return []*int64{&c.Received, &c.Accepted, &c.Rejected, &c.Ignored, &c.Unavailable, &c.Decided, &c.Duplicate,
		&c.Delivered, &c.DeadLettered, &c.Failed, &c.Pairs}
}
