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
	cfg := receiver.DefaultConfig()
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
	inc, got, err := Parse(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	if inc != r.Incarnation() || inc == "" {
		t.Fatalf("incarnation %q, want %q", inc, r.Incarnation())
	}
	want := cbv1.Counts{Received: 7, Accepted: 3, Rejected: 2, Ignored: 1, Duplicate: 1, Pairs: 6}
	if got != want {
		t.Fatalf("counts = %+v, want %+v", got, want)
	}
}

func TestParseRefusesWhatIsNotAReceiver(t *testing.T) {
	for name, text := range map[string]string{
		"no info":        "imcallback_callbacks_total{outcome=\"accepted\"} 3\n",
		"no incarnation": "imcallback_receiver_info{version=\"v1\"} 1\n",
		"not exposition": "<html>hello</html>\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := Parse(strings.NewReader(text)); err == nil {
				t.Fatal("parsed without error")
			}
		})
	}
}
