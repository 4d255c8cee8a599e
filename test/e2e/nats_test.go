package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/imcallback/callback-operator/test/localcluster"
)

// nodeDialer lets nats.go reach the cluster's Services and pods from the host, through the
// node's network namespace.
type nodeDialer struct{}

func (nodeDialer) Dial(network, address string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return cluster.DialContext(ctx, network, address)
}

// installNATS runs a 3-server JetStream cluster in ns and connects to it through its Service.
func installNATS(t *testing.T, ns string) (*localcluster.NATS, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	n, err := cluster.InstallNATS(ctx, localcluster.NATSOptions{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("NATS: %d servers ready in %s", n.Replicas, time.Since(start).Round(time.Millisecond))
	svc, err := cluster.Client.CoreV1().Services(ns).Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Right after the servers are ready, kube-proxy may not yet route the new Service.
	var nc *nats.Conn
	eventually(t, 30*time.Second, "a connection through the NATS Service", func() (err error) {
		nc, err = nats.Connect("nats://"+net.JoinHostPort(svc.Spec.ClusterIP, "4222"),
			nats.SetCustomDialer(nodeDialer{}), nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
		return err
	})
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return n, js
}

// TestNATSJetStreamClusterKeepsAcknowledgedMessages runs the local cluster's NATS as a user's
// would be (three servers, an R3 file stream with discard policy new), deletes the stream
// leader's pod while messages are published, and checks that every acknowledged message is in
// the stream exactly once: a publish retried with the same Nats-Msg-Id after the leader's loss
// is deduplicated, and the replacement server catches up.
func TestNATSJetStreamClusterKeepsAcknowledgedMessages(t *testing.T) {
	ns := newNamespace(t, "nats")
	n, js := installNATS(t, ns)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var stream jetstream.Stream
	eventually(t, time.Minute, "an R3 stream created", func() error {
		// Each attempt on its own deadline: a request made before the meta leader is elected
		// gets no answer at all.
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		defer acancel()
		var err error
		stream, err = js.CreateStream(actx, jetstream.StreamConfig{
			Name: "CALLBACKS", Subjects: []string{"im.>"}, Storage: jetstream.FileStorage, Replicas: 3,
			Discard: jetstream.DiscardNew, Duplicates: 2 * time.Minute,
		})
		return err
	})
	leader := func() (string, error) {
		info, err := stream.Info(ctx)
		if err != nil {
			return "", err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return "", errors.New("no leader")
		}
		current := 0
		for _, r := range info.Cluster.Replicas {
			if r.Current {
				current++
			}
		}
		if current != n.Replicas-1 {
			return "", fmt.Errorf("%d of %d followers current", current, n.Replicas-1)
		}
		return info.Cluster.Leader, nil
	}
	var first string
	eventually(t, time.Minute, "a leader and current followers", func() (err error) { first, err = leader(); return err })

	// A publisher sends 400 messages, 10 ms apart, each retried with its id until acknowledged
	// (bounded: 60 s per message), while the leader's pod is deleted.
	const total = 400
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		fails []error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			id := fmt.Sprintf("e2e-%04d", i)
			deadline := time.Now().Add(time.Minute)
			for {
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(pctx, "im.1400000001.Sns.CallbackBlackListDelete", []byte(id), jetstream.WithMsgID(id))
				pcancel()
				if err == nil {
					mu.Lock()
					acked[id] = true
					mu.Unlock()
					break
				}
				if time.Now().After(deadline) {
					mu.Lock()
					fails = append(fails, fmt.Errorf("%s: %w", id, err))
					mu.Unlock()
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	time.Sleep(time.Second)
	if err := cluster.Client.CoreV1().Pods(ns).Delete(ctx, first, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting the stream leader %s: %v", first, err)
	}
	t.Logf("deleted the stream leader %s under traffic", first)
	<-done
	if len(fails) > 0 {
		t.Fatalf("%d publishes never acknowledged within a minute, first: %v", len(fails), fails[0])
	}
	if err := cluster.WaitStatefulSet(ctx, ns, n.Name, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, "every server current again", func() error { _, err := leader(); return err })
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(len(acked)) || len(acked) != total {
		t.Fatalf("stream holds %d messages; %d of %d were acknowledged", info.State.Msgs, len(acked), total)
	}
	// Every id once: the consumer reads each message's id back.
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	batch, err := cons.Fetch(total, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		seen[string(m.Data())]++
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("%s is in the stream %d times", id, seen[id])
		}
	}
	t.Logf("%d messages acknowledged and in the stream once each; leader was %s", total, first)
}
