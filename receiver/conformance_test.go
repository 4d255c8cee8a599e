package receiver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// TestCloudEventConformance checks, on the sink side, the CloudEvent of each of the four Sns
// callbacks: binary-mode headers as design.md fixes them and the body byte for byte.
func TestCloudEventConformance(t *testing.T) {
	received := time.Date(2022, 12, 1, 5, 21, 52, 123456789, time.UTC)
	for _, cmd := range allSns {
		t.Run(cmd, func(t *testing.T) {
			s := newSink(t, nil)
			cfg := testConfig(s.URL)
			cfg.Commands = allSns
			cfg.Token = "" // the event time is the receipt time, which the signature check would bound
			cfg.Now = func() time.Time { return received }
			rr := start(t, cfg)
			// Odd spacing, unicode and an unknown member: all must reach the sink unchanged.
			body := []byte(snsBody[cmd][:len(snsBody[cmd])-1] + ",\n  \"Unknown\": {\"emoji\": \"\u00e9\u4e2d\", \"n\": 1.50}}")
			q := query("SdkAppid", "1400000001", "CallbackCommand", cmd, "contenttype", "json",
				"ClientIP", "203.0.113.7", "OptPlatform", "IOS")
			if code, reply := post(t, rr.url, q, string(body)); code != 200 {
				t.Fatalf("callback: %d %s", code, reply)
			}
			eventually(t, "the sink has the event", func() bool { return s.count() == 1 })
			got := s.got()[0]

			sum := sha256.Sum256([]byte("1400000001\n" + cmd + "\n" + string(body)))
			want := map[string]string{
				"Ce-Specversion": "1.0",
				"Ce-Type":        "com.tencentcloud.im." + cmd,
				"Ce-Source":      "/tencentcloud/im/1400000001",
				"Ce-Id":          hex.EncodeToString(sum[:])[:32],
				"Ce-Time":        "2022-12-01T05:21:52.123456789Z",
				"Ce-Sdkappid":    "1400000001",
				"Ce-Clientip":    "203.0.113.7",
				"Ce-Optplatform": "IOS",
				"Content-Type":   "application/json",
			}
			for k, v := range want {
				if got.header.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, got.header.Get(k), v)
				}
			}
			for k := range got.header {
				if len(k) > 3 && k[:3] == "Ce-" {
					if _, ok := want[k]; !ok {
						t.Errorf("unexpected header %s: %s", k, got.header.Get(k))
					}
				}
			}
			if !bytes.Equal(got.body, body) {
				t.Errorf("body differs:\n got %q\nwant %q", got.body, body)
			}

			// The SDK on the consumer side reads a valid binary-mode event.
			req, _ := http.NewRequest(http.MethodPost, s.URL, io.NopCloser(bytes.NewReader(got.body)))
			req.Header = got.header
			msg := cehttp.NewMessageFromHttpRequest(req)
			if enc := msg.ReadEncoding(); enc != binding.EncodingBinary {
				t.Errorf("encoding = %v, want binary", enc)
			}
			ev, err := binding.ToEvent(context.Background(), msg)
			if err != nil {
				t.Fatalf("SDK cannot read the event: %v", err)
			}
			if err := ev.Validate(); err != nil {
				t.Errorf("invalid CloudEvent: %v", err)
			}
			if !bytes.Equal(ev.Data(), body) || ev.Time() != received || ev.ID() != want["Ce-Id"] {
				t.Errorf("SDK reads data %q time %v id %s", ev.Data(), ev.Time(), ev.ID())
			}
		})
	}
}

// TestEventIDRule: the id depends on SdkAppid, command and body only, so a redelivered
// callback keeps it (and two identical actions share it).
func TestEventIDRule(t *testing.T) {
	body := []byte(blackListDeleteBody)
	id := EventID("1400000001", CmdBlackListDelete, body)
	sum := sha256.Sum256([]byte("1400000001\nSns.CallbackBlackListDelete\n" + blackListDeleteBody))
	if id != hex.EncodeToString(sum[:16]) || len(id) != 32 {
		t.Fatalf("EventID = %s", id)
	}
	if EventID("1400000001", CmdBlackListAdd, body) == id || EventID("1400000002", CmdBlackListDelete, body) == id ||
		EventID("1400000001", CmdBlackListDelete, append(body, ' ')) == id {
		t.Error("id ignores an input")
	}

	s := newSink(t, nil)
	cfg := testConfig(s.URL)
	cfg.Token = ""
	var mu sync.Mutex
	now := time.Unix(1700000000, 0)
	cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); now = now.Add(time.Second); return now }
	rr := start(t, cfg)
	q := query("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "ClientIP", "10.0.0.1")
	post(t, rr.url, q, blackListDeleteBody)
	q2 := query("SdkAppid", "1400000001", "CallbackCommand", CmdBlackListDelete, "ClientIP", "10.0.0.2", "OptPlatform", "Web")
	post(t, rr.url, q2, blackListDeleteBody) // IM redelivering, from elsewhere, later
	eventually(t, "both delivered", func() bool { return s.count() == 2 })
	got := s.got()
	if got[0].header.Get("Ce-Clientip") != "10.0.0.1" { // delivered concurrently: in either order
		got[0], got[1] = got[1], got[0]
	}
	if got[0].header.Get("Ce-Id") != id || got[1].header.Get("Ce-Id") != id {
		t.Errorf("ids %s %s, want both %s", got[0].header.Get("Ce-Id"), got[1].header.Get("Ce-Id"), id)
	}
	if got[0].header.Get("Ce-Time") == got[1].header.Get("Ce-Time") {
		t.Error("ce-time should be each receipt's time")
	}
	if got[0].header.Get("Ce-Optplatform") != "" {
		t.Error("ce-optplatform set although OptPlatform was not sent")
	}
}
