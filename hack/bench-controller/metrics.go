package main

import (
	"fmt"
	"net/http"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// snapshot is one read of the manager's /metrics.
type snapshot struct {
	at       time.Time
	families map[string]*dto.MetricFamily
}

var metricsClient = &http.Client{Timeout: 5 * time.Second}

func scrapeMetrics(url string) (snapshot, error) {
	resp, err := metricsClient.Get(url)
	if err != nil {
		return snapshot{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return snapshot{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return snapshot{}, err
	}
	return snapshot{at: time.Now(), families: fams}, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// sumBy sums family name's samples grouped by the values of the given labels.
func (s snapshot) sumBy(name string, labels ...string) map[string]float64 {
	out := map[string]float64{}
	f := s.families[name]
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		key := ""
		for i, l := range labels {
			if i > 0 {
				key += " "
			}
			key += label(m, l)
		}
		out[key] += value(m)
	}
	return out
}

// requests are the manager's API requests by method (rest_client_requests_total).
func (s snapshot) requests() map[string]float64 {
	return s.sumBy("rest_client_requests_total", "method")
}

var writeMethods = []string{"POST", "PUT", "PATCH", "DELETE"}

func writes(byMethod map[string]float64) float64 {
	w := 0.0
	for _, m := range writeMethods {
		w += byMethod[m]
	}
	return w
}

// diff subtracts b from a, key by key.
func diff(a, b map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range a {
		out[k] = v - b[k]
	}
	for k, v := range b {
		if _, ok := a[k]; !ok {
			out[k] = -v
		}
	}
	return out
}

func sum(m map[string]float64) float64 {
	t := 0.0
	for _, v := range m {
		t += v
	}
	return t
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
