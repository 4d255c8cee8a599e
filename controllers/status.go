package controllers

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers/resources"
	"github.com/imcallback/callback-operator/controllers/sink"
)

// Status is computed from the children on every reconcile: nothing is incremented in
// place, so a restarted manager writes the same answer.

func (r *CallbackReceiverReconciler) setTokenCondition(cr *cbv1.CallbackReceiver, err error) {
	c := metav1.Condition{Type: ConditionTokenResolved, ObservedGeneration: cr.Generation}
	var ue *userError
	switch {
	case cr.Spec.Auth == nil:
		c.Status, c.Reason = metav1.ConditionTrue, ReasonAuthenticationDisabled
		c.Message = "Callbacks are not authenticated: anyone who can reach the URL can send them. Set spec.auth.tokenSecretRef to the IM console's callback token to verify Sign."
	case err == nil:
		c.Status, c.Reason = metav1.ConditionTrue, ReasonTokenFound
		c.Message = fmt.Sprintf("Callbacks are verified with the token in Secret %s, key %s.", cr.Spec.Auth.TokenSecretRef.Name, cr.Spec.Auth.TokenSecretRef.Key)
	case errors.As(err, &ue):
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, ue.reason, ue.message
	}
	meta.SetStatusCondition(&cr.Status.Conditions, c)
}

func (r *CallbackReceiverReconciler) setSinkCondition(cr *cbv1.CallbackReceiver, err error) {
	c := metav1.Condition{Type: cbv1.ConditionSinkResolved, ObservedGeneration: cr.Generation}
	if se, ok := sink.AsError(err); ok {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, se.Reason, truncate(se.Message)
	} else {
		c.Status, c.Reason = metav1.ConditionTrue, ReasonResolved
		c.Message = "Events go to " + cr.Status.SinkURI
		if cr.Status.DeadLetterSinkURI != "" {
			c.Message += ", undeliverable ones to " + cr.Status.DeadLetterSinkURI
		}
		c.Message += "."
	}
	meta.SetStatusCondition(&cr.Status.Conditions, c)
}

// setAvailable reads the Deployment's own status: replicas, ready replicas, availability.
// applied, when not nil, is the Deployment as this reconcile just applied it, fresher than
// the cache.
func (r *CallbackReceiverReconciler) setAvailable(ctx context.Context, cr *cbv1.CallbackReceiver, applied *appsv1.Deployment) error {
	c := metav1.Condition{Type: cbv1.ConditionAvailable, ObservedGeneration: cr.Generation, Status: metav1.ConditionFalse}
	d := applied
	var err error
	if d == nil {
		d = &appsv1.Deployment{}
		err = r.Client.Get(ctx, client.ObjectKeyFromObject(cr), d)
	}
	switch {
	case client.IgnoreNotFound(err) != nil:
		return err
	case err != nil || !metav1.IsControlledBy(d, cr):
		cr.Status.Replicas, cr.Status.ReadyReplicas = 0, 0
		c.Reason = ReasonDeploymentNotFound
		c.Message = "The receiver's Deployment does not exist yet: see the TokenResolved and SinkResolved conditions."
		meta.SetStatusCondition(&cr.Status.Conditions, c)
		return nil
	}
	cr.Status.Replicas, cr.Status.ReadyReplicas = d.Status.Replicas, d.Status.ReadyReplicas
	want := resources.Replicas(cr)
	avail := deploymentCondition(d, appsv1.DeploymentAvailable)
	switch {
	case want == 0:
		c.Reason = ReasonScaledToZero
		c.Message = fmt.Sprintf("spec.replicas is 0: no pod receives callbacks. Scale up with: kubectl scale cbr %s --replicas=1", cr.Name)
	case d.Status.ObservedGeneration < d.Generation:
		c.Status = conditionStatus(avail != nil && avail.Status == corev1.ConditionTrue && d.Status.ReadyReplicas > 0)
		c.Reason, c.Message = ReasonRollingOut, "The Deployment controller has not yet seen the latest change."
	case avail != nil && avail.Status == corev1.ConditionTrue && d.Status.ReadyReplicas > 0:
		c.Status, c.Reason = metav1.ConditionTrue, ReasonMinimumReplicas
		c.Message = fmt.Sprintf("%d of %d receiver pods are ready.", d.Status.ReadyReplicas, want)
	default:
		c.Reason = ReasonUnavailable
		c.Message = fmt.Sprintf("%d of %d receiver pods are ready", d.Status.ReadyReplicas, want)
		if avail != nil && avail.Message != "" {
			c.Message += ": " + avail.Message
		}
		c.Message += fmt.Sprintf(". See: kubectl describe deployment %s -n %s", d.Name, d.Namespace)
	}
	meta.SetStatusCondition(&cr.Status.Conditions, c)
	return nil
}

// setReady summarises the other conditions: Ready is True when all are, else it carries the
// reason and message of the first that is not.
func (r *CallbackReceiverReconciler) setReady(cr *cbv1.CallbackReceiver) {
	ready := metav1.Condition{
		Type: cbv1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonReady, ObservedGeneration: cr.Generation,
		Message: fmt.Sprintf("Receiving callbacks at %s and delivering them to %s.", cr.Status.URL, cr.Status.SinkURI),
	}
	for _, t := range []string{ConditionTokenResolved, cbv1.ConditionSinkResolved, cbv1.ConditionAvailable} {
		if c := meta.FindStatusCondition(cr.Status.Conditions, t); c == nil || c.Status != metav1.ConditionTrue {
			if c != nil {
				ready.Reason, ready.Message = c.Reason, c.Message
			}
			ready.Status = metav1.ConditionFalse
			break
		}
	}
	meta.SetStatusCondition(&cr.Status.Conditions, ready)
}

func deploymentCondition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

func conditionStatus(b bool) metav1.ConditionStatus {
	if b {
		return metav1.ConditionTrue
	}
	return metav1.ConditionFalse
}
