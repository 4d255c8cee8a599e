package controllers

import (
	"context"
	"strconv"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers/sink"
)

// role is what a destination is for.
type role int

const (
	roleSink role = iota
	roleDeadLetterSink
	roleRoute
	roleDecision
)

// destination is one place a resource sends callbacks to, with the field it stands in.
type destination struct {
	role     role
	field    string
	d        *cbv1.Destination
	commands []cbv1.Command // of a route or decision
}

// destinations lists every destination of a resource: the sink, the dead-letter sink, each
// route's sink and each decision service, in that order.
func destinations(cr *cbv1.CallbackReceiver) []destination {
	var out []destination
	if cr.Spec.Sink != nil {
		out = append(out, destination{roleSink, "spec.sink", cr.Spec.Sink, nil})
	}
	if d := cr.Spec.Delivery; d != nil && d.DeadLetterSink != nil {
		out = append(out, destination{roleDeadLetterSink, "spec.delivery.deadLetterSink", d.DeadLetterSink, nil})
	}
	for i, r := range cr.Spec.Routes {
		out = append(out, destination{roleRoute, "spec.routes[" + strconv.Itoa(i) + "].sink", &cr.Spec.Routes[i].Sink, r.Commands})
	}
	for i, d := range cr.Spec.Decisions {
		out = append(out, destination{roleDecision, "spec.decisions[" + strconv.Itoa(i) + "].subscriber", &cr.Spec.Decisions[i].Subscriber, d.Commands})
	}
	return out
}

// resolved is where a resource's callbacks go, as far as its destinations resolved.
type resolved struct {
	sinkURI, deadLetterSinkURI string
	routes, decisions          []cbv1.ResolvedRoute
	// sinkProblem is the first sink (main, dead-letter or route) that did not resolve: events
	// would have nowhere to go. decisionProblem is the first decision service that did not.
	sinkProblem, decisionProblem *sink.Error
}

// resolveDestinations resolves every destination of cr. Problems the user has to fix are in
// the result; the error is transient.
func (r *CallbackReceiverReconciler) resolveDestinations(ctx context.Context, cr *cbv1.CallbackReceiver) (resolved, error) {
	var out resolved
	for _, dst := range destinations(cr) {
		if ref, ok := sink.RefOf(cr.Namespace, dst.d); ok {
			r.kinds.ensure(ctx, ref.GVK)
		}
		uri, err := r.sinks.Resolve(ctx, cr.Namespace, dst.field, dst.d)
		if se, ok := sink.AsError(err); ok {
			problem := &out.sinkProblem
			if dst.role == roleDecision {
				problem = &out.decisionProblem
			}
			if *problem == nil {
				*problem = se
			}
			uri, err = "", nil
		}
		if err != nil {
			return out, err
		}
		switch dst.role {
		case roleSink:
			out.sinkURI = uri
		case roleDeadLetterSink:
			out.deadLetterSinkURI = uri
		case roleRoute:
			out.routes = append(out.routes, cbv1.ResolvedRoute{Commands: dst.commands, URI: uri})
		case roleDecision:
			out.decisions = append(out.decisions, cbv1.ResolvedRoute{Commands: dst.commands, URI: uri})
		}
	}
	return out, nil
}
