package controllers_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers/resources"
)

// args lists every value of a repeatable flag.
func args(d *appsv1.Deployment, name string) []string {
	var out []string
	for _, a := range container(d).Args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestRoutesAndDecisions: routes and decision services resolve like the sink and reach the
// receiver's flags; a decision service that does not exist yet is a condition, and the
// receiver still runs, answering its commands by the failure policy, until the Service
// appears (its watch brings the change).
func TestRoutesAndDecisions(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ctx := context.Background()
	ns, cr := newReceiver(t, managerOptions{}, func(cr *cbv1.CallbackReceiver) {
		cr.Spec.Routes = []cbv1.Route{{
			Commands: []cbv1.Command{"C2C.CallbackAfterSendMsg", "Group.CallbackAfterSendMsg"},
			Sink:     cbv1.Destination{URI: "http://archive.example.com/im"},
		}}
		cr.Spec.Decisions = []cbv1.Decision{{
			Commands:   []cbv1.Command{"C2C.CallbackBeforeSendMsg"},
			Subscriber: cbv1.Destination{Ref: &cbv1.KReference{APIVersion: "v1", Kind: "Service", Name: "moderator"}},
		}}
		cr.Spec.DecisionPolicy = &cbv1.DecisionPolicy{FailurePolicy: cbv1.DecisionFailureReject}
	})

	g.Eventually(func(g Gomega) {
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		c := condition(got, cbv1.ConditionDecisionsResolved)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(cbv1.ReasonSinkNotFound))
		g.Expect(c.Message).To(ContainSubstring("spec.decisions[0].subscriber: Service " + ns + "/moderator does not exist"))
		g.Expect(c.Message).To(ContainSubstring("answered by the failure policy (Reject)"))
		g.Expect(condition(got, cbv1.ConditionReady).Reason).To(Equal(cbv1.ReasonSinkNotFound))
		g.Expect(got.Status.Routes).To(Equal([]cbv1.ResolvedRoute{{Commands: cr.Spec.Routes[0].Commands, URI: "http://archive.example.com/im"}}))
		// The receiver runs nonetheless, and applies the failure policy to the decision.
		d := get(g, ns, cr.Name, &appsv1.Deployment{})
		g.Expect(args(d, "route")).To(Equal([]string{"C2C.CallbackAfterSendMsg,Group.CallbackAfterSendMsg=http://archive.example.com/im"}))
		g.Expect(args(d, "decision")).To(Equal([]string{"C2C.CallbackBeforeSendMsg=" + resources.UnresolvedDecisionURI}))
		g.Expect(args(d, "decision-failure")).To(Equal([]string{"reject"}))
	}).Should(Succeed())

	must(t, k8sClient.Create(ctx, sinkService(ns, "moderator")))
	g.Eventually(func(g Gomega) {
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		g.Expect(condition(got, cbv1.ConditionDecisionsResolved).Reason).To(Equal(cbv1.ReasonResolved))
		g.Expect(got.Status.Decisions[0].URI).To(Equal("http://moderator." + ns + ".svc.cluster.local"))
		d := get(g, ns, cr.Name, &appsv1.Deployment{})
		g.Expect(args(d, "decision")).To(Equal([]string{"C2C.CallbackBeforeSendMsg=http://moderator." + ns + ".svc.cluster.local"}))
	}).Should(Succeed())
}

// TestUnknownCommandIsFlagged: a command in no catalogue is accepted (IM adds commands) but
// flagged with the likely intended one, as a condition and a Warning event; Ready is not
// affected.
func TestUnknownCommandIsFlagged(t *testing.T) {
	t.Parallel()
	g := NewWithT(t)
	ns, cr := newReceiver(t, managerOptions{}, func(cr *cbv1.CallbackReceiver) {
		cr.Spec.Commands = []cbv1.Command{"Sns.CallbackBlacklistDelete"}
	})
	g.Eventually(func(g Gomega) {
		got := get(g, ns, cr.Name, &cbv1.CallbackReceiver{})
		c := condition(got, cbv1.ConditionCommandsRecognized)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(cbv1.ReasonUnknownCommand))
		g.Expect(c.Message).To(ContainSubstring("Sns.CallbackBlacklistDelete (did you mean Sns.CallbackBlackListDelete?)"))
		g.Expect(condition(got, cbv1.ConditionReady).Reason).NotTo(Equal(cbv1.ReasonUnknownCommand))
		events := &corev1.EventList{}
		g.Expect(k8sClient.List(context.Background(), events)).To(Succeed())
		g.Expect(slices.ContainsFunc(events.Items, func(e corev1.Event) bool {
			return e.Namespace == ns && e.Reason == cbv1.ReasonUnknownCommand && e.Type == corev1.EventTypeWarning
		})).To(BeTrue())
	}).Should(Succeed())
}
