package counts

import (
	"errors"
	"fmt"
	"io"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/receiver/contract"
)

// Reading is what one scrape of a receiver says.
type Reading struct {
	// Incarnation is the random id of the process that answered.
	Incarnation string
	// Counts are its counters since it started.
	Counts cbv1.Counts
	// Spool is what its spool holds; nil without a spool.
	Spool *SpoolReading
}

// SpoolReading is a receiver's spool gauges.
type SpoolReading struct{ Events, Bytes, MaxBytes int64 }

// Full tells whether the spool is at least 90% full: close to answering 503 (it does when
// its data and two segments reach the bound).
func (s SpoolReading) Full() bool { return s.MaxBytes > 0 && s.Bytes*10 >= s.MaxBytes*9 }

// Parse reads a receiver's /metrics text exposition.
func Parse(r io.Reader) (Reading, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return Reading{}, fmt.Errorf("parsing metrics: %w", err)
	}
	info := families[contract.MetricInfo]
	if info == nil || len(info.GetMetric()) != 1 {
		return Reading{}, errors.New("no single " + contract.MetricInfo + ": not a callback receiver")
	}
	out := Reading{Incarnation: label(info.GetMetric()[0], contract.LabelIncarnation)}
	if out.Incarnation == "" {
		return Reading{}, errors.New(contract.MetricInfo + " has no incarnation label")
	}
	c := &out.Counts

	outcomes := map[string]*int64{
		contract.OutcomeAccepted:    &c.Accepted,
		contract.OutcomeRejected:    &c.Rejected,
		contract.OutcomeIgnored:     &c.Ignored,
		contract.OutcomeUnavailable: &c.Unavailable,
		contract.OutcomeDecided:     &c.Decided,
		contract.OutcomeDuplicate:   &c.Duplicate,
	}
	// Every outcome is a received callback.
	sum(families[contract.MetricCallbacks], contract.LabelOutcome, outcomes, &c.Received)
	sum(families[contract.MetricEvents], contract.LabelResult, map[string]*int64{
		contract.ResultDelivered:    &c.Delivered,
		contract.ResultDeadLettered: &c.DeadLettered,
		contract.ResultFailed:       &c.Failed,
	}, nil)
	for _, m := range families[contract.MetricPairs].GetMetric() {
		c.Pairs += counter(m)
	}
	if max := gauge(families[contract.MetricSpoolMaxBytes]); max > 0 {
		out.Spool = &SpoolReading{
			Events: gauge(families[contract.MetricSpoolEvents]), Bytes: gauge(families[contract.MetricSpoolBytes]), MaxBytes: max,
		}
	}
	return out, nil
}

// gauge reads a family's only sample; 0 when there is none.
func gauge(f *dto.MetricFamily) int64 {
	if f == nil || len(f.GetMetric()) != 1 {
		return 0
	}
	m := f.GetMetric()[0]
	if m.GetGauge() != nil {
		return int64(m.GetGauge().GetValue())
	}
	return int64(m.GetUntyped().GetValue())
}

// sum adds each sample of a family to the counter its label's value selects (unknown values
// are skipped), and to total when it is not nil.
func sum(f *dto.MetricFamily, name string, into map[string]*int64, total *int64) {
	for _, m := range f.GetMetric() {
		dst := into[label(m, name)]
		if dst == nil {
			continue
		}
		v := counter(m)
		*dst += v
		if total != nil {
			*total += v
		}
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// counter reads a counter (or an untyped sample) as an exact integer.
func counter(m *dto.Metric) int64 {
	if m.GetCounter() != nil {
		return int64(m.GetCounter().GetValue())
	}
	return int64(m.GetUntyped().GetValue())
}
