package controllers

import (
	"errors"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers/sink"
)

// cond is the part of a condition the table pins.
type cond struct {
	status  metav1.ConditionStatus
	reason  string
	message string
}

const (
	statusURL  = "http://blacklist.chat.svc.cluster.local/im/callback"
	statusSink = "http://moderation.chat.svc.cluster.local/events"
)

func statusResource(change func(*cbv1.CallbackReceiver)) *cbv1.CallbackReceiver {
	cr := &cbv1.CallbackReceiver{
		ObjectMeta: metav1.ObjectMeta{Name: "blacklist", Namespace: "chat", Generation: 4},
		Spec: cbv1.CallbackReceiverSpec{
			SdkAppID: 1400000001, Path: "/im/callback", Replicas: ptr.To(int32(2)),
			Auth:  &cbv1.AuthSpec{TokenSecretRef: cbv1.SecretKeySelector{Name: "im-callback-token", Key: "token"}},
			Spool: &cbv1.SpoolSpec{Type: cbv1.SpoolEmptyDir}, // facts of a Deployment below
		},
	}
	if change != nil {
		change(cr)
	}
	return cr
}

// deployment is a receiver Deployment whose controller saw its latest generation.
func deployment(ready int32, available corev1.ConditionStatus, message string) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "blacklist", Namespace: "chat", Generation: 2}}
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, ReadyReplicas: ready}
	if available != "" {
		d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: available, Message: message}}
	}
	return d
}

// statefulSet is a receiver StatefulSet with ready pods, its latest generation seen.
func statefulSet(ready int32) *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "blacklist", Namespace: "chat", Generation: 2}}
	s.Status = appsv1.StatefulSetStatus{ObservedGeneration: 2, Replicas: 2, ReadyReplicas: ready, AvailableReplicas: ready}
	return s
}

const statusImage = "ghcr.io/imcallback/callback-operator:v1"

// checkComputedStatus computes the status of statusResource(change) from healthy facts
// changed by facts, and checks that it has the conditions in want.
func checkComputedStatus(t *testing.T, change func(*cbv1.CallbackReceiver), facts func(*Facts), want map[string]cond) (*cbv1.CallbackReceiver, cbv1.CallbackReceiverStatus) {
	t.Helper()
	cr := statusResource(change)
	f := healthy()
	if facts != nil {
		facts(&f)
	}
	st := ComputeStatus(cr, f)
	for typ, w := range want {
		got := meta.FindStatusCondition(st.Conditions, typ)
		if got == nil {
			t.Fatalf("no %s condition", typ)
		}
		if (cond{got.Status, got.Reason, got.Message}) != w {
			t.Errorf("%s = %s %s %q\nwant   %s %s %q", typ, got.Status, got.Reason, got.Message, w.status, w.reason, w.message)
		}
	}
	return cr, st
}

func healthy() Facts {
	return Facts{URL: statusURL, SinkURI: statusSink, Image: statusImage, Deployment: deployment(2, corev1.ConditionTrue, "")}
}

const (
	msgTokenFound    = "Callbacks are verified with the token in Secret im-callback-token, key token."
	msgAuthDisabled  = "Callbacks are not authenticated: anyone who can reach the URL can send them. Set spec.auth.tokenSecretRef to the IM console's callback token to verify Sign."
	msgSink          = "Events go to " + statusSink + "."
	msgTwoReady      = "2 of 2 receiver pods are ready."
	msgReady         = "Receiving callbacks at " + statusURL + "."
	msgNoDeployment  = "The receiver's Deployment does not exist yet: see the TokenResolved, TLSResolved and SinkResolved conditions."
	msgRollingOut    = "The Deployment controller has not yet seen the latest change."
	msgSecretMissing = "Secret im-callback-token with the callback token does not exist: create it."
	msgSinkMissing   = "spec.sink: Service chat/moderation does not exist: create it, or point spec.sink.ref at an existing one"

	msgDecisionMissing = "spec.decisions[0].subscriber: Service chat/moderator does not exist: create it, or point spec.decisions[0].subscriber.ref at an existing one. Meanwhile its callbacks are answered by the failure policy (Reject)."

	msgSpoolFull = "The spool of 1 receiver pod(s) is 90% full or more: at full they answer callbacks with 503. The sink has not taken events for long: see SinkResolved, the receivers' logs and imcallback_deliveries_held; fix the sink, or raise spec.spool.sizeLimit."

	msgImageNotAllowed = "spec.image registry.example.com/mine:v2 is not used: this operator runs receivers only from its own image " + statusImage + ", because an image of one's choice could read the token Secret. Remove spec.image, or have the operator's administrator start the manager with --allow-image-override."
)

func TestComputeStatus(t *testing.T) {
	tokenMissing := &Problem{cbv1.ReasonTokenSecretNotFound, msgSecretMissing}
	sinkMissing := &sink.Error{Reason: cbv1.ReasonSinkNotFound, Message: msgSinkMissing}
	cases := []struct {
		name   string
		change func(*cbv1.CallbackReceiver)
		facts  func(*Facts)
		want   map[string]cond // by condition type
	}{
		{"everything in place", nil, nil, map[string]cond{
			cbv1.ConditionTokenResolved: {metav1.ConditionTrue, cbv1.ReasonTokenFound, msgTokenFound},
			cbv1.ConditionSinkResolved:  {metav1.ConditionTrue, cbv1.ReasonResolved, msgSink},
			cbv1.ConditionImageResolved: {metav1.ConditionTrue, cbv1.ReasonOperatorImage, "Receivers run the operator's image " + statusImage + "."},
			cbv1.ConditionAvailable:     {metav1.ConditionTrue, cbv1.ReasonMinimumReplicasAvailable, msgTwoReady},
			cbv1.ConditionTLSResolved:   {metav1.ConditionTrue, cbv1.ReasonTLSDisabled, msgTLSDisabled},
			cbv1.ConditionExposed:       {metav1.ConditionFalse, cbv1.ReasonNotExposed, msgNotExposed},
			cbv1.ConditionReady:         {metav1.ConditionTrue, cbv1.ReasonReady, msgReady},
		}},
		{"an allowed image override", func(cr *cbv1.CallbackReceiver) { cr.Spec.Image = "registry.example.com/mine:v2" },
			func(f *Facts) { f.Image = "registry.example.com/mine:v2" }, map[string]cond{
				cbv1.ConditionImageResolved: {metav1.ConditionTrue, cbv1.ReasonImageOverridden, "Receivers run spec.image registry.example.com/mine:v2, as this operator allows image overrides."},
				cbv1.ConditionReady:         {metav1.ConditionTrue, cbv1.ReasonReady, msgReady},
			}},
		{"an image override the operator does not allow", func(cr *cbv1.CallbackReceiver) { cr.Spec.Image = "registry.example.com/mine:v2" },
			func(f *Facts) { f.IgnoredImage = "registry.example.com/mine:v2" }, map[string]cond{
				cbv1.ConditionImageResolved: {metav1.ConditionFalse, cbv1.ReasonImageOverrideNotAllowed, msgImageNotAllowed},
				cbv1.ConditionReady:         {metav1.ConditionFalse, cbv1.ReasonImageOverrideNotAllowed, msgImageNotAllowed},
			}},
		{"authentication off is resolved, with a warning", func(cr *cbv1.CallbackReceiver) { cr.Spec.Auth = nil }, nil, map[string]cond{
			cbv1.ConditionTokenResolved: {metav1.ConditionTrue, cbv1.ReasonAuthenticationDisabled, msgAuthDisabled},
			cbv1.ConditionReady:         {metav1.ConditionTrue, cbv1.ReasonReady, msgReady},
		}},
		{"a token problem is the token condition and Ready", nil, func(f *Facts) { f.TokenProblem = tokenMissing; f.Deployment = nil }, map[string]cond{
			cbv1.ConditionTokenResolved: {metav1.ConditionFalse, cbv1.ReasonTokenSecretNotFound, msgSecretMissing},
			cbv1.ConditionAvailable:     {metav1.ConditionFalse, cbv1.ReasonDeploymentNotFound, msgNoDeployment},
			cbv1.ConditionReady:         {metav1.ConditionFalse, cbv1.ReasonTokenSecretNotFound, msgSecretMissing},
		}},
		{"each token reason passes through", nil, func(f *Facts) { f.TokenProblem = &Problem{cbv1.ReasonTokenEmpty, "empty"} }, map[string]cond{
			cbv1.ConditionTokenResolved: {metav1.ConditionFalse, cbv1.ReasonTokenEmpty, "empty"},
			cbv1.ConditionReady:         {metav1.ConditionFalse, cbv1.ReasonTokenEmpty, "empty"},
		}},
		{"a sink problem", nil, func(f *Facts) { f.SinkProblem = sinkMissing }, map[string]cond{
			cbv1.ConditionSinkResolved: {metav1.ConditionFalse, cbv1.ReasonSinkNotFound, msgSinkMissing},
			cbv1.ConditionAvailable:    {metav1.ConditionTrue, cbv1.ReasonMinimumReplicasAvailable, msgTwoReady},
			cbv1.ConditionReady:        {metav1.ConditionFalse, cbv1.ReasonSinkNotFound, msgSinkMissing},
		}},
		{"the token comes first in Ready", nil, func(f *Facts) { f.TokenProblem, f.SinkProblem = tokenMissing, sinkMissing }, map[string]cond{
			cbv1.ConditionReady: {metav1.ConditionFalse, cbv1.ReasonTokenSecretNotFound, msgSecretMissing},
		}},
		{"commands in the catalogue", func(cr *cbv1.CallbackReceiver) {
			cr.Spec.Commands = []cbv1.Command{"Sns.CallbackBlackListDelete"}
			cr.Spec.Decisions = []cbv1.Decision{{Commands: []cbv1.Command{"C2C.CallbackBeforeSendMsg"}}}
		}, nil, map[string]cond{
			cbv1.ConditionCommandsRecognized: {metav1.ConditionTrue, cbv1.ReasonCommandsKnown, "Every command is in IM's callback catalogue, and before-callbacks are decided."},
		}},
		{"a typo is flagged with the likely command, and Ready does not depend on it", func(cr *cbv1.CallbackReceiver) {
			cr.Spec.Commands = []cbv1.Command{"Sns.CallbackBlacklistDelete", "Sns.CallbackPrevFriendAdd"}
			cr.Spec.Decisions = []cbv1.Decision{{Commands: []cbv1.Command{"C2C.CallbackAfterSendMsg"}}}
		}, nil, map[string]cond{
			cbv1.ConditionCommandsRecognized: {metav1.ConditionFalse, cbv1.ReasonUnknownCommand,
				"1 command in no IM callback catalogue, so nothing may ever match: Sns.CallbackBlacklistDelete (did you mean Sns.CallbackBlackListDelete?). " +
					"1 before-callback forwarded, so answered OK at once without a decision: Sns.CallbackPrevFriendAdd; list them in spec.decisions to decide them. " +
					"1 after-callback in spec.decisions, whose answer IM ignores: C2C.CallbackAfterSendMsg; forward them with spec.commands or spec.routes."},
			cbv1.ConditionReady: {metav1.ConditionTrue, cbv1.ReasonReady, msgReady},
		}},
		{"a before-callback forwarded", func(cr *cbv1.CallbackReceiver) {
			cr.Spec.Routes = []cbv1.Route{{Commands: []cbv1.Command{"Group.CallbackBeforeSendMsg"}}}
		}, nil, map[string]cond{
			cbv1.ConditionCommandsRecognized: {metav1.ConditionFalse, cbv1.ReasonBeforeCallbackForwarded,
				"1 before-callback forwarded, so answered OK at once without a decision: Group.CallbackBeforeSendMsg; list them in spec.decisions to decide them."},
		}},
		{"a spool on claims with room", func(cr *cbv1.CallbackReceiver) { cr.Spec.Spool = nil }, func(f *Facts) {
			f.Deployment, f.StatefulSet = nil, statefulSet(2)
		}, map[string]cond{
			cbv1.ConditionSpoolReady: {metav1.ConditionTrue, cbv1.ReasonSpoolHasRoom, "Accepted callbacks are kept on each pod's claim until delivered, across rollouts, deletions, evictions and scale-downs; status.spool shows how many wait."},
			cbv1.ConditionAvailable:  {metav1.ConditionTrue, cbv1.ReasonMinimumReplicasAvailable, msgTwoReady},
			cbv1.ConditionReady:      {metav1.ConditionTrue, cbv1.ReasonReady, msgReady},
		}},
		{"an emptyDir spool: True, with its risk", nil, nil, map[string]cond{
			cbv1.ConditionSpoolReady: {metav1.ConditionTrue, cbv1.ReasonSpoolOnEmptyDir, "spec.spool.type is EmptyDir: accepted callbacks survive a container restart, but a pod that is rolled, deleted, evicted or scaled away delivers its backlog for 25s at most (spec.spool.drainTimeout) and loses the rest, as does a lost node. Use type PersistentVolumeClaim to keep them."},
		}},
		{"no default StorageClass: not Ready, and what to set", func(cr *cbv1.CallbackReceiver) { cr.Spec.Spool = nil }, func(f *Facts) {
			f.Deployment, f.StatefulSet = nil, statefulSet(0)
			f.StorageProblem = &Problem{Reason: cbv1.ReasonNoDefaultStorageClass, Message: "no default"}
		}, map[string]cond{
			cbv1.ConditionSpoolReady: {metav1.ConditionFalse, cbv1.ReasonNoDefaultStorageClass, "no default"},
			cbv1.ConditionReady:      {metav1.ConditionFalse, cbv1.ReasonNoDefaultStorageClass, "no default"},
		}},
		{"one replica on claims: a rollout's cost said", func(cr *cbv1.CallbackReceiver) { cr.Spec.Spool, cr.Spec.Replicas = nil, ptr.To(int32(1)) }, func(f *Facts) {
			f.Deployment, f.StatefulSet = nil, statefulSet(1)
		}, map[string]cond{
			cbv1.ConditionAvailable: {metav1.ConditionTrue, cbv1.ReasonMinimumReplicasAvailable, "1 of 1 receiver pods are ready. With one replica every rollout (a spec change, an operator upgrade) stops the only receiver before its replacement starts: IM gets no answer for seconds and does not retry those callbacks. Set spec.replicas to 2 or more."},
		}},
		{"a stranded claim: said, still Ready", func(cr *cbv1.CallbackReceiver) { cr.Spec.Spool = nil }, func(f *Facts) {
			f.Deployment, f.StatefulSet = nil, statefulSet(2)
			f.Stranded = []cbv1.StrandedSpool{{Name: "spool-blacklist-2", Kind: "PersistentVolumeClaim", State: StrandedDraining}}
		}, map[string]cond{
			cbv1.ConditionSpoolReady: {metav1.ConditionTrue, cbv1.ReasonSpoolsStranded, "Spools no receiver pod serves any more are being delivered: PersistentVolumeClaim spool-blacklist-2 (Draining); status.strandedSpools says more."},
			cbv1.ConditionReady:      {metav1.ConditionTrue, cbv1.ReasonReady, msgReady},
		}},
		{"no spool: said, and not a reason to be unready", func(cr *cbv1.CallbackReceiver) { cr.Spec.Spool = &cbv1.SpoolSpec{Type: cbv1.SpoolNone} }, nil, map[string]cond{
			cbv1.ConditionSpoolReady: {metav1.ConditionTrue, cbv1.ReasonSpoolDisabled, "spec.spool.type is None: accepted callbacks wait for delivery in memory, so a receiver killed without warning (an OOM kill, a node failure) loses those not yet delivered."},
			cbv1.ConditionReady:      {metav1.ConditionTrue, cbv1.ReasonReady, msgReady},
		}},
		{"a full spool", func(cr *cbv1.CallbackReceiver) {
			cr.Status.Spool = &cbv1.SpoolStatus{Events: 900000, Bytes: 1 << 30, FullPods: 1}
		}, nil, map[string]cond{
			cbv1.ConditionSpoolReady: {metav1.ConditionFalse, cbv1.ReasonSpoolFull, msgSpoolFull},
			cbv1.ConditionReady:      {metav1.ConditionFalse, cbv1.ReasonSpoolFull, msgSpoolFull},
		}},
		{"no decisions", nil, nil, map[string]cond{
			cbv1.ConditionDecisionsResolved: {metav1.ConditionTrue, cbv1.ReasonNoDecisions, "No decision services: before-callbacks are answered OK (allowed) unless spec.commands or spec.routes forward them."},
		}},
		{"routes are named", nil, func(f *Facts) {
			f.Routes = []cbv1.ResolvedRoute{{Commands: []cbv1.Command{"C2C.CallbackAfterSendMsg", "Group.CallbackAfterSendMsg"}, URI: "http://archive.chat.svc.cluster.local"}}
		}, map[string]cond{
			cbv1.ConditionSinkResolved: {metav1.ConditionTrue, cbv1.ReasonResolved, "Events go to " + statusSink + ", events of C2C.CallbackAfterSendMsg, Group.CallbackAfterSendMsg to http://archive.chat.svc.cluster.local."},
		}},
		{"only decisions", func(cr *cbv1.CallbackReceiver) {
			cr.Spec.Decisions = []cbv1.Decision{{Commands: []cbv1.Command{"C2C.CallbackBeforeSendMsg"}}}
		}, func(f *Facts) {
			f.SinkURI = ""
			f.Decisions = []cbv1.ResolvedRoute{{Commands: []cbv1.Command{"C2C.CallbackBeforeSendMsg"}, URI: "http://moderator.chat.svc.cluster.local"}}
		}, map[string]cond{
			cbv1.ConditionSinkResolved:      {metav1.ConditionTrue, cbv1.ReasonResolved, "No callbacks are forwarded: only decisions are taken."},
			cbv1.ConditionDecisionsResolved: {metav1.ConditionTrue, cbv1.ReasonResolved, "Before-callbacks are decided: C2C.CallbackBeforeSendMsg by http://moderator.chat.svc.cluster.local (failure policy Allow)."},
			cbv1.ConditionReady:             {metav1.ConditionTrue, cbv1.ReasonReady, msgReady},
		}},
		{"a decision service that does not resolve", func(cr *cbv1.CallbackReceiver) {
			cr.Spec.Decisions = []cbv1.Decision{{Commands: []cbv1.Command{"C2C.CallbackBeforeSendMsg"}}}
			cr.Spec.DecisionPolicy = &cbv1.DecisionPolicy{FailurePolicy: cbv1.DecisionFailureReject}
		}, func(f *Facts) {
			f.DecisionProblem = &sink.Error{Reason: cbv1.ReasonSinkNotFound, Message: "spec.decisions[0].subscriber: Service chat/moderator does not exist: create it, or point spec.decisions[0].subscriber.ref at an existing one"}
		}, map[string]cond{
			cbv1.ConditionDecisionsResolved: {metav1.ConditionFalse, cbv1.ReasonSinkNotFound, msgDecisionMissing},
			cbv1.ConditionAvailable:         {metav1.ConditionTrue, cbv1.ReasonMinimumReplicasAvailable, msgTwoReady},
			cbv1.ConditionReady:             {metav1.ConditionFalse, cbv1.ReasonSinkNotFound, msgDecisionMissing},
		}},
		{"a dead-letter sink is named", nil, func(f *Facts) { f.DeadLetterSinkURI = "http://dlq.chat.svc.cluster.local" }, map[string]cond{
			cbv1.ConditionSinkResolved: {metav1.ConditionTrue, cbv1.ReasonResolved, "Events go to " + statusSink + ", undeliverable ones to http://dlq.chat.svc.cluster.local."},
		}},
		{"no Deployment yet", nil, func(f *Facts) { f.Deployment = nil }, map[string]cond{
			cbv1.ConditionAvailable: {metav1.ConditionFalse, cbv1.ReasonDeploymentNotFound, msgNoDeployment},
			cbv1.ConditionReady:     {metav1.ConditionFalse, cbv1.ReasonDeploymentNotFound, msgNoDeployment},
		}},
		{"scaled to zero", func(cr *cbv1.CallbackReceiver) { cr.Spec.Replicas = ptr.To(int32(0)) }, func(f *Facts) { f.Deployment = deployment(0, corev1.ConditionTrue, "") }, map[string]cond{
			cbv1.ConditionAvailable: {metav1.ConditionFalse, cbv1.ReasonScaledToZero, "spec.replicas is 0: no pod receives callbacks. Scale up with: kubectl scale cbr blacklist --replicas=2"},
		}},
		{"rolling out, still serving", nil, func(f *Facts) { f.Deployment.Generation = 3 }, map[string]cond{
			cbv1.ConditionAvailable: {metav1.ConditionTrue, cbv1.ReasonRollingOut, msgRollingOut},
			cbv1.ConditionReady:     {metav1.ConditionTrue, cbv1.ReasonReady, msgReady},
		}},
		{"rolling out, nothing ready", nil, func(f *Facts) { f.Deployment = deployment(0, "", ""); f.Deployment.Generation = 3 }, map[string]cond{
			cbv1.ConditionAvailable: {metav1.ConditionFalse, cbv1.ReasonRollingOut, msgRollingOut},
			cbv1.ConditionReady:     {metav1.ConditionFalse, cbv1.ReasonRollingOut, msgRollingOut},
		}},
		{"unavailable, with the Deployment's own words", nil, func(f *Facts) {
			f.Deployment = deployment(0, corev1.ConditionFalse, "Deployment does not have minimum availability.")
		}, map[string]cond{
			cbv1.ConditionAvailable: {metav1.ConditionFalse, cbv1.ReasonMinimumReplicasUnavailable,
				"0 of 2 receiver pods are ready: Deployment does not have minimum availability.. See: kubectl describe deployment blacklist -n chat"},
		}},
		{"apply failed overrides Ready", nil, func(f *Facts) { f.ApplyError = errors.New("Service: conflict") }, map[string]cond{
			cbv1.ConditionAvailable: {metav1.ConditionTrue, cbv1.ReasonMinimumReplicasAvailable, msgTwoReady},
			cbv1.ConditionReady:     {metav1.ConditionFalse, cbv1.ReasonApplyFailed, "Applying child objects failed, retrying: Service: conflict"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cr, st := checkComputedStatus(t, c.change, c.facts, c.want)
			for typ := range c.want {
				if got := meta.FindStatusCondition(st.Conditions, typ); got.ObservedGeneration != cr.Generation {
					t.Errorf("%s observedGeneration %d, want %d", typ, got.ObservedGeneration, cr.Generation)
				}
			}
			if len(st.Conditions) != 10 {
				t.Errorf("%d conditions, want 10", len(st.Conditions))
			}
		})
	}
}

func TestComputeStatusFields(t *testing.T) {
	cr := statusResource(nil)
	cr.Status = cbv1.CallbackReceiverStatus{
		ObservedGeneration: 3, SinkURI: "http://old/events",
		Counts:       cbv1.Counts{Received: 7, Accepted: 7},
		Incarnations: []cbv1.IncarnationCounts{{ID: "a", Counts: cbv1.Counts{Received: 7}}},
	}
	st := ComputeStatus(cr, healthy())
	switch {
	case st.ObservedGeneration != 4, st.URL != statusURL, st.SinkURI != statusSink, st.DeadLetterSinkURI != "":
		t.Errorf("status %+v", st)
	case st.Selector != "app.kubernetes.io/instance=blacklist,app.kubernetes.io/name=callback-receiver":
		t.Errorf("selector %q", st.Selector)
	case st.Replicas != 2 || st.ReadyReplicas != 2:
		t.Errorf("replicas %d/%d", st.ReadyReplicas, st.Replicas)
	case st.Counts.Received != 7 || len(st.Incarnations) != 1:
		t.Error("counts and incarnations belong to the counts controller and must be kept")
	}
	if cr.Status.ObservedGeneration != 3 || len(cr.Status.Conditions) != 0 {
		t.Error("ComputeStatus changed the resource it was given")
	}

	// An unresolved sink keeps the last resolved URI: the running receiver still uses it.
	f := healthy()
	f.SinkProblem = &sink.Error{Reason: cbv1.ReasonSinkNotFound, Message: "gone"}
	if st := ComputeStatus(cr, f); st.SinkURI != "http://old/events" {
		t.Errorf("sinkURI %q after the sink went away, want the last resolved one", st.SinkURI)
	}
	// A failed apply does not claim the generation was observed.
	f = healthy()
	f.ApplyError = errors.New("boom")
	if st := ComputeStatus(cr, f); st.ObservedGeneration != 3 {
		t.Errorf("observedGeneration %d after a failed apply, want 3", st.ObservedGeneration)
	}
	// No Deployment: no replicas.
	f = healthy()
	f.Deployment = nil
	if st := ComputeStatus(cr, f); st.Replicas != 0 || st.ReadyReplicas != 0 {
		t.Errorf("replicas %d/%d without a Deployment", st.ReadyReplicas, st.Replicas)
	}
}

// TestComputeStatusKeepsTransitionTimes: recomputing an unchanged status changes nothing,
// so the reconciler writes nothing.
func TestComputeStatusKeepsTransitionTimes(t *testing.T) {
	cr := statusResource(nil)
	cr.Status = ComputeStatus(cr, healthy())
	for i := range cr.Status.Conditions {
		cr.Status.Conditions[i].LastTransitionTime = metav1.NewTime(time.Unix(1700000000, 0))
	}
	again := ComputeStatus(cr, healthy())
	for _, c := range again.Conditions {
		if !c.LastTransitionTime.Equal(&metav1.Time{Time: time.Unix(1700000000, 0)}) {
			t.Errorf("%s moved its transition time without a change", c.Type)
		}
	}
	f := healthy()
	f.Deployment = nil
	changed := ComputeStatus(cr, f)
	if c := meta.FindStatusCondition(changed.Conditions, cbv1.ConditionAvailable); c.LastTransitionTime.Unix() == 1700000000 {
		t.Error("Available went False without a new transition time")
	}
}
