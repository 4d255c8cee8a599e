package e2e

// The operator's manager runs as a pod of config/default's Deployment.

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imcallback/callback-operator/test/localcluster"
)

var managerSelector = map[string]string{"control-plane": "controller-manager"}

// managerPods are the manager's pods.
func managerPods(t *testing.T) []corev1.Pod {
	t.Helper()
	list, err := cluster.Client.CoreV1().Pods(localcluster.OperatorNamespace).List(context.Background(), metav1.ListOptions{
		LabelSelector: metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: managerSelector}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// scaleManager scales the manager's Deployment and waits until it has exactly n ready pods.
func scaleManager(t *testing.T, n int32) {
	t.Helper()
	scaleDeployment(t, localcluster.OperatorNamespace, localcluster.ManagerDeployment, n)
	if n == 0 {
		waitNoPods(t, localcluster.OperatorNamespace, managerSelector, 2*time.Minute)
		return
	}
	waitAvailable(t, localcluster.OperatorNamespace, localcluster.ManagerDeployment, int(n), 2*time.Minute)
}

// ensureManager puts the manager back to one ready pod when the test ends, whatever it did.
func ensureManager(t *testing.T) {
	t.Cleanup(func() {
		d, err := cluster.Client.AppsV1().Deployments(localcluster.OperatorNamespace).Get(context.Background(), localcluster.ManagerDeployment, metav1.GetOptions{})
		if err != nil {
			t.Error(err)
			return
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			scaleManager(t, 1)
		}
		if err := cluster.WaitDeployment(context.Background(), localcluster.OperatorNamespace, localcluster.ManagerDeployment, 2*time.Minute); err != nil {
			t.Error(err)
		}
	})
}
