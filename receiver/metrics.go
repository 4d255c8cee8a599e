package receiver

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/imcallback/callback-operator/internal/version"
	"github.com/imcallback/callback-operator/receiver/contract"
)

// Label values of imcallback_callbacks_total{outcome} and imcallback_events_total{result}:
// the contract's, re-exported for users of this package.
const (
	OutcomeAccepted    = contract.OutcomeAccepted
	OutcomeRejected    = contract.OutcomeRejected
	OutcomeIgnored     = contract.OutcomeIgnored
	OutcomeUnavailable = contract.OutcomeUnavailable
	OutcomeDecided     = contract.OutcomeDecided
	// OutcomeDuplicate is an exact repeat of an accepted callback: answered OK, not forwarded.
	OutcomeDuplicate = contract.OutcomeDuplicate

	ResultDelivered    = contract.ResultDelivered
	ResultDeadLettered = contract.ResultDeadLettered
	ResultFailed       = contract.ResultFailed
)

// metrics are one receiver's collectors, registered in its own registry. Every labelled child
// is created up front so a scrape shows each series, zero or not, from the start.
type metrics struct {
	registry *prometheus.Registry

	accepted, rejected, ignored, unavailable prometheus.Counter
	decided                                  prometheus.Counter
	duplicate                                prometheus.Counter
	reasons                                  [numReasons]prometheus.Counter
	unavailableReasons                       [numUnavailable]prometheus.Counter
	delivered, deadLettered, failed          prometheus.Counter
	retries, pairs                           prometheus.Counter

	requestAccepted, requestRejected prometheus.Observer
	requestIgnored, requestUnavail   prometheus.Observer
	requestDuplicate                 prometheus.Observer
	deliveryDelivered                prometheus.Observer
	deliveryDeadLettered             prometheus.Observer
	deliveryFailed                   prometheus.Observer
	attemptSink, attemptDLS          prometheus.Observer

	requestDecided   prometheus.Observer
	decisions        [numDecisionResults]prometheus.Counter
	decisionDuration [numDecisionResults]prometheus.Observer
	decisionFailures [numDecisionFailures]prometheus.Counter
	routeEvents      *prometheus.CounterVec
}

// routeCounters returns the imcallback_route_events_total counters of one sink.
func (m *metrics) routeCounters(sink string) (delivered, deadLettered, failed prometheus.Counter) {
	return m.routeEvents.WithLabelValues(sink, ResultDelivered),
		m.routeEvents.WithLabelValues(sink, ResultDeadLettered),
		m.routeEvents.WithLabelValues(sink, ResultFailed)
}

func newMetrics(incarnation string, queueDepth, queueCapacity, inFlight func() float64) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{registry: reg}

	callbacks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: contract.MetricCallbacks,
		Help: "Callback requests answered, by outcome; their sum is the number received.",
	}, []string{contract.LabelOutcome})
	m.accepted = callbacks.WithLabelValues(OutcomeAccepted)
	m.rejected = callbacks.WithLabelValues(OutcomeRejected)
	m.ignored = callbacks.WithLabelValues(OutcomeIgnored)
	m.unavailable = callbacks.WithLabelValues(OutcomeUnavailable)
	m.decided = callbacks.WithLabelValues(OutcomeDecided)

	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: contract.MetricDecisions,
		Help: "Decided callbacks by result: allowed or rejected (ErrorCode != 0) by the decision service, or, when it failed, failed_allowed or failed_rejected by the failure policy.",
	}, []string{contract.LabelResult})
	decisionDuration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "imcallback_decision_duration_seconds",
		Help:    "Time of the exchange with the decision service (sending the event, reading its answer), by result.",
		Buckets: []float64{.00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 1.5, 2},
	}, []string{contract.LabelResult})
	for i := range m.decisions {
		m.decisions[i] = decisions.WithLabelValues(decisionResultNames[i])
		m.decisionDuration[i] = decisionDuration.WithLabelValues(decisionResultNames[i])
	}
	decisionFailures := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imcallback_decision_failures_total",
		Help: "Failed exchanges with the decision service, by reason (answered by the failure policy).",
	}, []string{"reason"})
	for i := failureTimeout; i < numDecisionFailures; i++ {
		m.decisionFailures[i] = decisionFailures.WithLabelValues(decisionFailureNames[i])
	}
	m.routeEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imcallback_route_events_total",
		Help: "Accepted callbacks whose delivery ended, by sink (one series per configured sink: --sink and each --route's) and result.",
	}, []string{"sink", contract.LabelResult})
	m.duplicate = callbacks.WithLabelValues(OutcomeDuplicate)

	rejected := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imcallback_rejected_total",
		Help: "Callback requests rejected, by reason.",
	}, []string{"reason"})
	for i := range m.reasons {
		m.reasons[i] = rejected.WithLabelValues(Reason(i).String())
	}

	unavailable := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imcallback_unavailable_total",
		Help: "Callback requests answered 503 (outcome unavailable), by reason.",
	}, []string{"reason"})
	for i := range m.unavailableReasons {
		m.unavailableReasons[i] = unavailable.WithLabelValues(Unavailable(i).String())
	}

	events := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: contract.MetricEvents,
		Help: "Accepted callbacks whose delivery ended, by result.",
	}, []string{contract.LabelResult})
	m.delivered = events.WithLabelValues(ResultDelivered)
	m.deadLettered = events.WithLabelValues(ResultDeadLettered)
	m.failed = events.WithLabelValues(ResultFailed)

	m.retries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imcallback_delivery_retries_total",
		Help: "Delivery attempts after the first one of an event, to the sink or the dead-letter sink.",
	})
	m.pairs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: contract.MetricPairs,
		Help: "Account pairs (PairList entries) in accepted callbacks.",
	})

	requests := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "imcallback_request_duration_seconds",
		Help:    "Time to answer a callback request, by outcome.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"outcome"})
	m.requestAccepted = requests.WithLabelValues(OutcomeAccepted)
	m.requestRejected = requests.WithLabelValues(OutcomeRejected)
	m.requestIgnored = requests.WithLabelValues(OutcomeIgnored)
	m.requestUnavail = requests.WithLabelValues(OutcomeUnavailable)
	m.requestDecided = requests.WithLabelValues(OutcomeDecided)
	m.requestDuplicate = requests.WithLabelValues(OutcomeDuplicate)

	delivery := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "imcallback_delivery_duration_seconds",
		Help:    "Time from accepting a callback to the end of its delivery (queueing, retries and backoff included), by result.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	}, []string{"result"})
	m.deliveryDelivered = delivery.WithLabelValues(ResultDelivered)
	m.deliveryDeadLettered = delivery.WithLabelValues(ResultDeadLettered)
	m.deliveryFailed = delivery.WithLabelValues(ResultFailed)

	attempts := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "imcallback_delivery_attempt_duration_seconds",
		Help:    "Duration of single delivery attempts, by target (sink or dead_letter_sink).",
		Buckets: []float64{.00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"target"})
	m.attemptSink = attempts.WithLabelValues("sink")
	m.attemptDLS = attempts.WithLabelValues("dead_letter_sink")

	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: contract.MetricInfo,
		Help: "Always 1; incarnation is random per receiver start, so a changed incarnation means its counters restarted from zero.",
	}, []string{contract.LabelIncarnation, "version"})
	info.WithLabelValues(incarnation, version.Version).Set(1)

	reg.MustRegister(callbacks, rejected, unavailable, events, m.retries, m.pairs, requests, delivery, attempts, info,
		decisions, decisionDuration, decisionFailures, m.routeEvents,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "imcallback_queue_depth",
			Help: "Accepted callbacks waiting for a delivery worker (in memory, or in the spool).",
		}, queueDepth),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "imcallback_queue_capacity",
			Help: "Size of the in-memory delivery queue (--queue-size); 0 with a spool, bounded by imcallback_spool_max_bytes instead.",
		}, queueCapacity),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "imcallback_deliveries_in_flight",
			Help: "Events taken from the queue whose delivery has not ended yet.",
		}, inFlight),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}
