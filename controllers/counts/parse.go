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

// Parse reads a receiver's /metrics text exposition: its incarnation and its counters.
func Parse(r io.Reader) (incarnation string, c cbv1.Counts, err error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return "", c, fmt.Errorf("parsing metrics: %w", err)
	}
	info := families[contract.MetricInfo]
	if info == nil || len(info.GetMetric()) != 1 {
		return "", c, errors.New("no single " + contract.MetricInfo + ": not a callback receiver")
	}
	incarnation = label(info.GetMetric()[0], contract.LabelIncarnation)
	if incarnation == "" {
		return "", c, errors.New(contract.MetricInfo + " has no incarnation label")
	}

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
	return incarnation, c, nil
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
