package natstest_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/imcallback/callback-operator/internal/natstest"
)

func connect(t testing.TB, c *natstest.Cluster) (jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	nc, err := nats.Connect(c.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		// Each attempt on its own deadline: a request made before the meta leader is elected
		// gets no answer at all.
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := js.CreateStream(actx, jetstream.StreamConfig{
			Name: "CALLBACKS", Subjects: []string{"im.>"}, Storage: jetstream.FileStorage, Replicas: 3,
			Discard: jetstream.DiscardNew, Duplicates: 2 * time.Minute,
		})
		acancel()
		if err == nil {
			return js, s
		}
		if ctx.Err() != nil {
			t.Fatalf("creating an R3 stream: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func leader(t testing.TB, s jetstream.Stream) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		info, err := s.Info(ctx)
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
			return info.Cluster.Leader
		}
		if ctx.Err() != nil {
			t.Fatalf("no stream leader: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func publish(js jetstream.JetStream, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := js.Publish(ctx, "im.1400000001.Sns.CallbackBlackListDelete", []byte(id), jetstream.WithMsgID(id))
	return err
}

// The harness gives what the receiver's JetStream tests need: a quorum lost when two of three
// servers are paused (a publish is then not acknowledged), regained when they resume; a
// killed leader replaced by another; a restarted server on its store; and a republish with
// the same Nats-Msg-Id stored once.
func TestClusterQuorumLeaderAndDeduplication(t *testing.T) {
	c := natstest.Start(t, natstest.Options{})
	js, s := connect(t, c)
	if err := publish(js, "a", 5*time.Second); err != nil {
		t.Fatalf("publishing to a healthy R3 stream: %v", err)
	}

	l := leader(t, s)
	var paused []*natstest.Server
	for _, srv := range c.Servers {
		if srv.Name != l {
			paused = append(paused, srv)
		}
	}
	// The client may be connected to a paused server: pause only the leader's two followers
	// and publish through the leader's own URL.
	nc, err := nats.Connect(c.Server(l).URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ljs, _ := jetstream.New(nc)
	for _, p := range paused {
		c.Pause(p)
	}
	err = publish(ljs, "b", time.Second)
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("publish without a quorum: %v, want a timeout", err)
	}
	for _, p := range paused {
		c.Resume(p)
	}
	deadline := time.Now().Add(30 * time.Second)
	for publish(ljs, "b", 2*time.Second) != nil {
		if time.Now().After(deadline) {
			t.Fatal("no acknowledgement within 30 s of the quorum's return")
		}
	}

	c.Kill(c.Server(l))
	deadline = time.Now().Add(30 * time.Second)
	for publish(js, "c", 2*time.Second) != nil {
		if time.Now().After(deadline) {
			t.Fatal("no acknowledgement within 30 s of the leader's loss")
		}
	}
	if nl := leader(t, s); nl == l {
		t.Fatalf("leader still %s after it was killed", l)
	}
	c.Restart(c.Server(l))
	// Republished ids are stored once.
	for _, id := range []string{"a", "b", "c"} {
		if err := publish(js, id, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("stream holds %d messages, want 3 (a, b, c once each)", info.State.Msgs)
	}
}

// BenchmarkPublishR3 is the acknowledgement latency of one publish at a time to an R3 file
// stream, with JetStream's default sync (every 2 minutes) and with sync_interval: always.
func BenchmarkPublishR3(b *testing.B) {
	for _, always := range []bool{false, true} {
		b.Run(fmt.Sprintf("sync_always=%v", always), func(b *testing.B) {
			c := natstest.Start(b, natstest.Options{SyncAlways: always})
			js, _ := connect(b, c)
			b.ResetTimer()
			for i := range b.N {
				if err := publish(js, fmt.Sprint(i), 5*time.Second); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
