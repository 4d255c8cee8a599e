package counts

import (
	"errors"
	"fmt"
	"io"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// Metric names of the receiver (see receiver/metrics.go), the contract this package reads.
const (
	metricCallbacks = "imcallback_callbacks_total"
	metricEvents    = "imcallback_events_total"
	metricPairs     = "imcallback_pairs_total"
	metricInfo      = "imcallback_receiver_info"
)

// Parse reads a receiver's /metrics text exposition: its incarnation and its counters.
func Parse(r io.Reader) (incarnation string, c cbv1.Counts, err error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return "", c, fmt.Errorf("parsing metrics: %w", err)
	}
	info := families[metricInfo]
	if info == nil || len(info.GetMetric()) != 1 {
		return "", c, errors.New("no single " + metricInfo + ": not a callback receiver")
	}
	incarnation = label(info.GetMetric()[0], "incarnation")
	if incarnation == "" {
		return "", c, errors.New(metricInfo + " has no incarnation label")
	}

	for _, m := range families[metricCallbacks].GetMetric() {
		v := counter(m)
		switch label(m, "outcome") {
		case "accepted":
			c.Accepted += v
		case "rejected":
			c.Rejected += v
		case "ignored":
			c.Ignored += v
		case "unavailable":
			c.Unavailable += v
		case "duplicate":
			c.Duplicate += v
		default:
			continue
		}
		c.Received += v
	}
	for _, m := range families[metricEvents].GetMetric() {
		v := counter(m)
		switch label(m, "result") {
		case "delivered":
			c.Delivered += v
		case "dead_lettered":
			c.DeadLettered += v
		case "failed":
			c.Failed += v
		}
	}
	for _, m := range families[metricPairs].GetMetric() {
		c.Pairs += counter(m)
	}
	return incarnation, c, nil
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
