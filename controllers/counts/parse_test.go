package counts

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/receiver"
)

// TestParseReadsARealReceiver pins the contract between the receiver's metrics and the
// counts in status: callbacks of every outcome go through a real receiver's handler, and
// Parse must read back exactly what was sent.
func TestParseReadsARealReceiver(t *testing.T) {
	t.Run("in-memory queue", func(t *testing.T) { parseRealReceiver(t, "") })
	t.Run("spool", func(t *testing.T) { parseRealReceiver(t, t.TempDir()) })
}

func parseRealReceiver(t *testing.T, spoolDir string) {
	cfg := receiver.DefaultConfig()
	cfg.SpoolDir, cfg.SpoolMaxBytes = spoolDir, 64<<20
	cfg.SdkAppID = 1400000001
	cfg.Path = "/im/callback"
	cfg.Sink = "http://127.0.0.1:1/never-used" // Serve is not called: nothing is delivered
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.Token = "parse-test-token"
	r, err := receiver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	send := func(path, query, body string) int {
		req := httptest.NewRequest(http.MethodPost, path+"?"+query, strings.NewReader(body))
		rec := httptest.NewRecorder()
		r.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	now := strconv.FormatInt(time.Now().Unix(), 10)
	q := func(appID, cmd string) string {
		return "SdkAppid=" + appID + "&CallbackCommand=" + cmd + "&contenttype=json&ClientIP=10.0.0.1&OptPlatform=iOS" +
			"&RequestTime=" + now + "&Sign=" + receiver.Sign(cfg.Token, now)
	}
	del := `{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"a","To_Account":"b"},{"From_Account":"a","To_Account":"c"}]}`
	for i := range 3 {
		if code := send("/im/callback", q("1400000001", "Sns.CallbackBlackListDelete"), strings.Replace(del, `"c"`, `"c`+strconv.Itoa(i)+`"`, 1)); code != 200 {
			t.Fatalf("accepted callback answered %d", code)
		}
	}
	if code := send("/im/callback", q("1400000001", "Sns.CallbackBlackListDelete"), strings.Replace(del, `"c"`, `"c0"`, 1)); code != 200 {
		t.Fatalf("duplicate callback answered %d", code)
	}
	if code := send("/im/callback", q("1400000002", "Sns.CallbackBlackListDelete"), del); code != 403 {
		t.Fatalf("wrong SdkAppid answered %d", code)
	}
	if code := send("/elsewhere", q("1400000001", "Sns.CallbackBlackListDelete"), del); code != 404 {
		t.Fatalf("wrong path answered %d", code)
	}
	if code := send("/im/callback", q("1400000001", "State.StateChange"), `{"CallbackCommand":"State.StateChange"}`); code != 200 {
		t.Fatalf("unselected command answered %d", code)
	}

	rec := httptest.NewRecorder()
	r.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	rd, err := Parse(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	if rd.Incarnation != r.Incarnation() || rd.Incarnation == "" {
		t.Fatalf("incarnation %q, want %q", rd.Incarnation, r.Incarnation())
	}
	want := cbv1.Counts{Received: 7, Accepted: 3, Rejected: 2, Ignored: 1, Duplicate: 1, Pairs: 6}
	if rd.Counts != want {
		t.Fatalf("counts = %+v, want %+v", rd.Counts, want)
	}
	switch {
	case spoolDir == "" && rd.Spool != nil:
		t.Fatalf("a spool reading without a spool: %+v", rd.Spool)
	case spoolDir != "" && (rd.Spool == nil || rd.Spool.Events != 3 || rd.Spool.Bytes <= 0 || rd.Spool.MaxBytes != 64<<20 || rd.Spool.Full()):
		t.Fatalf("spool reading %+v, want 3 events waiting in a 64 MiB spool", rd.Spool)
	}
}

func TestSpoolFull(t *testing.T) {
	for _, c := range []struct {
		s    SpoolReading
		full bool
	}{
		{SpoolReading{Bytes: 0, MaxBytes: 100}, false},
		{SpoolReading{Bytes: 89, MaxBytes: 100}, false},
		{SpoolReading{Bytes: 90, MaxBytes: 100}, true},
		{SpoolReading{Bytes: 5, MaxBytes: 0}, false},
	} {
		if c.s.Full() != c.full {
			t.Errorf("%+v: full %v", c.s, !c.full)
		}
	}
}

func TestParseRefusesWhatIsNotAReceiver(t *testing.T) {
	for name, text := range map[string]string{
		"no info":        "imcallback_callbacks_total{outcome=\"accepted\"} 3\n",
		"no incarnation": "imcallback_receiver_info{version=\"v1\"} 1\n",
		"not exposition": "<html>hello</html>\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(strings.NewReader(text)); err == nil {
				t.Fatal("parsed without error")
			}
		})
	}
}
