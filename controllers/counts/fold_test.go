package counts

import (
	"reflect"
	"testing"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

func c(accepted, delivered int64) cbv1.Counts {
	return cbv1.Counts{Received: accepted, Accepted: accepted, Delivered: delivered, Pairs: 2 * accepted}
}

func inc(id, pod string, counts cbv1.Counts) cbv1.IncarnationCounts {
	return cbv1.IncarnationCounts{ID: id, Pod: pod, Counts: counts}
}

func pods(names ...string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

func TestFold(t *testing.T) {
	cases := []struct {
		name string
		in   State
		snap Snapshot
		want State
	}{
		{
			name: "a new incarnation adds all it counted",
			in:   State{Total: c(10, 10)},
			snap: Snapshot{Pods: pods("a"), Observations: []Observation{{Pod: "a", Incarnation: "i1", Counts: c(3, 2)}}},
			want: State{Total: c(13, 12), Incarnations: []cbv1.IncarnationCounts{inc("i1", "a", c(3, 2))}},
		},
		{
			name: "a known incarnation adds what it counted since it was last read",
			in:   State{Total: c(13, 12), Incarnations: []cbv1.IncarnationCounts{inc("i1", "a", c(3, 2))}},
			snap: Snapshot{Pods: pods("a"), Observations: []Observation{{Pod: "a", Incarnation: "i1", Counts: c(5, 5)}}},
			want: State{Total: c(15, 15), Incarnations: []cbv1.IncarnationCounts{inc("i1", "a", c(5, 5))}},
		},
		{
			name: "an older reading adds nothing",
			in:   State{Total: c(15, 15), Incarnations: []cbv1.IncarnationCounts{inc("i1", "a", c(5, 5))}},
			snap: Snapshot{Pods: pods("a"), Observations: []Observation{{Pod: "a", Incarnation: "i1", Counts: c(4, 5)}}},
			want: State{Total: c(15, 15), Incarnations: []cbv1.IncarnationCounts{inc("i1", "a", c(5, 5))}},
		},
		{
			name: "a pod that did not answer keeps its incarnation",
			in:   State{Total: c(15, 15), Incarnations: []cbv1.IncarnationCounts{inc("i1", "a", c(5, 5))}},
			snap: Snapshot{Pods: pods("a")},
			want: State{Total: c(15, 15), Incarnations: []cbv1.IncarnationCounts{inc("i1", "a", c(5, 5))}},
		},
		{
			name: "a pod gone from the endpoints retires its incarnation; its counts stay",
			in:   State{Total: c(15, 15), Incarnations: []cbv1.IncarnationCounts{inc("i1", "a", c(5, 5)), inc("i2", "b", c(1, 1))}},
			snap: Snapshot{Pods: pods("b"), Observations: []Observation{{Pod: "b", Incarnation: "i2", Counts: c(2, 2)}}},
			want: State{Total: c(16, 16), Incarnations: []cbv1.IncarnationCounts{inc("i2", "b", c(2, 2))}},
		},
		{
			name: "a restarted container: the old incarnation retires, the new one counts from zero",
			in:   State{Total: c(16, 16), Incarnations: []cbv1.IncarnationCounts{inc("i2", "b", c(2, 2))}},
			snap: Snapshot{Pods: pods("b"), Observations: []Observation{{Pod: "b", Incarnation: "i3", Counts: c(1, 0)}}},
			want: State{Total: c(17, 16), Incarnations: []cbv1.IncarnationCounts{inc("i3", "b", c(1, 0))}},
		},
		{
			name: "several pods at once, sorted by incarnation",
			in:   State{},
			snap: Snapshot{Pods: pods("a", "b", "c"), Observations: []Observation{{Pod: "b", Incarnation: "z", Counts: c(1, 1)}, {Pod: "a", Incarnation: "y", Counts: c(2, 2)}}},
			want: State{Total: c(3, 3), Incarnations: []cbv1.IncarnationCounts{inc("y", "a", c(2, 2)), inc("z", "b", c(1, 1))}},
		},
		{
			name: "no pods, nothing stored: nothing changes",
			in:   State{Total: c(7, 7)},
			snap: Snapshot{Pods: pods()},
			want: State{Total: c(7, 7)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Fold(tc.in, tc.snap)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Fold =\n  %+v\nwant\n  %+v", got, tc.want)
			}
		})
	}
}

// TestFoldAcrossAManagerRestart: a new manager starts from what status holds and adds only
// what was counted since; reading the same counters twice adds nothing.
func TestFoldAcrossAManagerRestart(t *testing.T) {
	s := State{}
	s = Fold(s, Snapshot{Pods: pods("a"), Observations: []Observation{{Pod: "a", Incarnation: "i1", Counts: c(4, 4)}}})
	stored := s // what the old manager wrote to status before it stopped
	restarted := Fold(stored, Snapshot{Pods: pods("a"), Observations: []Observation{{Pod: "a", Incarnation: "i1", Counts: c(4, 4)}}})
	if !reflect.DeepEqual(restarted, stored) {
		t.Fatalf("reading the same counters again changed the state: %+v", restarted)
	}
	restarted = Fold(restarted, Snapshot{Pods: pods("a"), Observations: []Observation{{Pod: "a", Incarnation: "i1", Counts: c(9, 8)}}})
	if restarted.Total != c(9, 8) {
		t.Fatalf("total = %+v, want %+v", restarted.Total, c(9, 8))
	}
}

// TestCountersListsEveryCounter: a counter missing from counters() would never be folded.
func TestCountersListsEveryCounter(t *testing.T) {
	var x cbv1.Counts
	listed := map[*int64]bool{}
	for _, p := range counters(&x) {
		listed[p] = true
	}
	v := reflect.ValueOf(&x).Elem()
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Int64 && !listed[f.Addr().Interface().(*int64)] {
			t.Errorf("Counts.%s is not in counters()", v.Type().Field(i).Name)
		}
	}
	if len(listed) != v.NumField() {
		t.Errorf("counters() lists %d fields, Counts has %d", len(listed), v.NumField())
	}
}
