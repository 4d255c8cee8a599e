package nodeagent

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestCrashLoopBackOff pins the kubelet's restart delays: the first restart at once, then
// 10s doubling up to 5 minutes, and a fresh start after a run of 10 minutes.
func TestCrashLoopBackOff(t *testing.T) {
	c := &container{}
	start := metav1.Now()
	short := &corev1.ContainerStateTerminated{StartedAt: start, FinishedAt: metav1.NewTime(start.Add(time.Second))}
	var got []time.Duration
	for range 8 {
		got = append(got, c.nextBackoff(short))
	}
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 300 * time.Second, 300 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays = %v, want %v", got, want)
		}
	}
	long := &corev1.ContainerStateTerminated{StartedAt: start, FinishedAt: metav1.NewTime(start.Add(11 * time.Minute))}
	if d := c.nextBackoff(long); d != 0 {
		t.Errorf("after a long run the delay is %s, want 0", d)
	}
}
