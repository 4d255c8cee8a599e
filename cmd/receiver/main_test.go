package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imcallback/callback-operator/receiver"
	"github.com/imcallback/callback-operator/receiver/contract"
)

// The test binary doubles as the receiver when this variable is set (see TestMain).
const beReceiver = "RECEIVER_TEST_BE_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(beReceiver) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func TestFlagsDefaults(t *testing.T) {
	cfg, opts, err := parseFlags([]string{"--sdkappid", "1400000001", "--path", "/im/callback", "--sink", "http://127.0.0.1:8081"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := receiver.DefaultConfig()
	want.SdkAppID, want.Path, want.Sink = 1400000001, "/im/callback", "http://127.0.0.1:8081"
	if cfg.SdkAppID != want.SdkAppID || cfg.Path != want.Path || cfg.Sink != want.Sink ||
		len(cfg.Commands) != 0 || cfg.Routes != nil || cfg.Decisions != nil || cfg.DecisionTimeout != time.Second || cfg.DecisionFailure != "allow" ||
		cfg.Retry != 3 || cfg.BackoffPolicy != "exponential" ||
		cfg.BackoffDelay != 200*time.Millisecond || cfg.DeliveryTimeout != time.Second || cfg.QueueSize != 10000 ||
		cfg.MaxBodyBytes != 1<<20 || cfg.MaxBodyBytesInFlight != 16<<20 || cfg.ReplayWindowSize != 100000 || cfg.MaxClockSkew != time.Minute || cfg.Listen != ":8080" || cfg.AdminListen != ":9090" ||
		cfg.ShutdownDelay != 5*time.Second || cfg.ShutdownTimeout != 25*time.Second || cfg.Token != "" || opts.version ||
		cfg.SpoolDir != "" || cfg.SpoolMaxBytes != 1<<30 {
		t.Errorf("defaults differ from the contract: %+v", cfg)
	}
}

func TestFlagsAll(t *testing.T) {
	cfg, _, err := parseFlags(strings.Fields(`--sdkappid=7 --path=/cb --commands=Sns.CallbackFriendAdd,,Sns.CallbackFriendDelete
		--sink=https://sink.example/e --dead-letter-sink=http://dlq --retry=0 --backoff-policy=linear --backoff-delay=1s
		--delivery-timeout=3s --queue-size=5 --workers=2 --max-body-bytes=2Ki --max-body-bytes-in-flight=1Mi --replay-window-size=-1 --max-clock-skew=30s --listen=:1 --admin-listen=:2
		--tls-cert-file=c --tls-key-file=k --shutdown-delay=0s --shutdown-timeout=9s --log-level=debug
		--spool-dir=/var/spool/imcallback --spool-max-bytes=2Gi`), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SdkAppID != 7 || cfg.Path != "/cb" || strings.Join(cfg.Commands, "|") != "Sns.CallbackFriendAdd|Sns.CallbackFriendDelete" ||
		cfg.Sink != "https://sink.example/e" || cfg.DeadLetterSink != "http://dlq" || cfg.Retry != 0 || cfg.BackoffPolicy != "linear" ||
		cfg.BackoffDelay != time.Second || cfg.DeliveryTimeout != 3*time.Second || cfg.QueueSize != 5 || cfg.Workers != 2 ||
		cfg.MaxBodyBytes != 2048 || cfg.MaxBodyBytesInFlight != 1<<20 || cfg.ReplayWindowSize != -1 || cfg.MaxClockSkew != 30*time.Second || cfg.Listen != ":1" || cfg.AdminListen != ":2" ||
		cfg.TLSCertFile != "c" || cfg.TLSKeyFile != "k" || cfg.ShutdownDelay != 0 || cfg.ShutdownTimeout != 9*time.Second ||
		cfg.SpoolDir != "/var/spool/imcallback" || cfg.SpoolMaxBytes != 2<<30 {
		t.Errorf("flags not applied: %+v", cfg)
	}
}

// TestFlagsRoutesAndDecisions: --route and --decision repeat; with them --sink may go.
func TestFlagsRoutesAndDecisions(t *testing.T) {
	cfg, _, err := parseFlags(strings.Fields(`--sdkappid=7 --path=/cb
		--route=C2C.CallbackAfterSendMsg,Group.CallbackAfterSendMsg=http://archive/e?a=b
		--route Sns.CallbackBlackListDelete=http://blacklist
		--decision=C2C.CallbackBeforeSendMsg,Group.CallbackBeforeSendMsg=https://moderation/decide
		--decision-timeout=800ms --decision-failure=reject`), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Routes) != 2 || cfg.Routes[0].Sink != "http://archive/e?a=b" || strings.Join(cfg.Routes[0].Commands, "|") != "C2C.CallbackAfterSendMsg|Group.CallbackAfterSendMsg" ||
		cfg.Routes[1].Sink != "http://blacklist" || len(cfg.Decisions) != 1 || cfg.Decisions[0].URL != "https://moderation/decide" ||
		cfg.DecisionTimeout != 800*time.Millisecond || cfg.DecisionFailure != "reject" {
		t.Errorf("flags not applied: %+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("routes and decisions without --sink: %v", err)
	}
}

// TestRunRoutingConflictsExitTwo: a command in two places, a malformed --route or a sink
// missing for --commands is a usage error naming what is wrong.
func TestRunRoutingConflictsExitTwo(t *testing.T) {
	base := []string{"--sdkappid=1", "--path=/p"}
	for _, tc := range []struct {
		args []string
		say  string
	}{
		{[]string{"--sink=http://s", "--commands=C2C.CallbackAfterSendMsg,Sns.CallbackFriendAdd", "--route=C2C.CallbackAfterSendMsg=http://a"},
			`command \"C2C.CallbackAfterSendMsg\" is named by both --commands and --route`},
		{[]string{"--route=C2C.CallbackBeforeSendMsg=http://a", "--decision=Group.CallbackBeforeSendMsg,C2C.CallbackBeforeSendMsg=http://d"},
			`command \"C2C.CallbackBeforeSendMsg\" is named by both --route and --decision`},
		{[]string{"--sink=http://s", "--commands=Sns.CallbackBlackListDelete", "--decision=Sns.CallbackBlackListDelete=http://d"},
			`command \"Sns.CallbackBlackListDelete\" is named by both --commands and --decision`},
		{[]string{"--decision=C2C.CallbackBeforeSendMsg=http://d", "--decision=C2C.CallbackBeforeSendMsg=http://e"},
			`command \"C2C.CallbackBeforeSendMsg\" is listed twice in --decision`},
		{[]string{"--commands=Sns.CallbackFriendAdd", "--decision=C2C.CallbackBeforeSendMsg=http://d"},
			"sink is required for --commands Sns.CallbackFriendAdd"},
		{[]string{"--sink=http://s", "--route=C2C.CallbackAfterSendMsg"}, "want CMD[,CMD...]=URL"},
		{[]string{"--sink=http://s", "--decision-failure=deny"}, `decision-failure must be \"allow\" or \"reject\"`},
	} {
		var errOut bytes.Buffer
		if code := run(append(base, tc.args...), os.LookupEnv, io.Discard, &errOut); code != 2 || !strings.Contains(errOut.String(), tc.say) {
			t.Errorf("%q: exit %d, want 2 saying %s; stderr:\n%s", tc.args, code, tc.say, errOut.String())
		}
	}
}

func TestNoTokenFlag(t *testing.T) {
	if _, _, err := parseFlags([]string{"--token=x"}, io.Discard); err == nil {
		t.Fatal("a --token flag exists; the token must only come from IM_CALLBACK_TOKEN")
	}
}

func TestRunExitCodes(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--version"}, os.LookupEnv, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "receiver ") {
		t.Errorf("--version: %d %q", code, out.String())
	}
	if code := run([]string{"--no-such-flag"}, os.LookupEnv, io.Discard, io.Discard); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
	errOut.Reset()
	if code := run([]string{"--sdkappid=1", "--path=im"}, os.LookupEnv, io.Discard, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), "must be absolute") || !strings.Contains(errOut.String(), "sink is required") {
		t.Errorf("invalid config: exit %d, log %s", code, errOut.String())
	}
	if code := run([]string{"--max-body-bytes=1MB"}, os.LookupEnv, io.Discard, io.Discard); code != 2 {
		t.Errorf("bad size: exit %d, want 2", code)
	}
}

// process is the receiver binary running as a child.
type process struct {
	cmd      *exec.Cmd
	mu       sync.Mutex
	logs     bytes.Buffer
	listen   chan string
	admin    atomic.Value // the admin address, once started
	exitCode chan int
}

func startProcess(t *testing.T, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0", "--sdkappid=1400000001", "--path=/im/callback", "--shutdown-delay=0s", "--backoff-delay=1ms", "--retry=1"}, args...)...)
	// The token is whatever env says, never inherited from the test's own environment.
	var inherited []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, contract.TokenEnv+"=") {
			inherited = append(inherited, kv)
		}
	}
	cmd.Env = append(inherited, append(env, beReceiver+"=1")...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, listen: make(chan string, 1), exitCode: make(chan int, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			var l struct{ Msg, Listen, AdminListen string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "receiver starting" {
				p.admin.Store(l.AdminListen)
				p.listen <- l.Listen
			}
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
			p.exitCode <- 0
		case errors.As(err, &ee):
			p.exitCode <- ee.ExitCode()
		default:
			p.exitCode <- -1
		}
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return p
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *process) addr(t *testing.T) string {
	select {
	case a := <-p.listen:
		return a
	case code := <-p.exitCode:
		t.Fatalf("receiver exited with %d:\n%s", code, p.log())
	case <-time.After(20 * time.Second):
		t.Fatalf("receiver did not start:\n%s", p.log())
	}
	return ""
}

func (p *process) terminate(t *testing.T) int {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-p.exitCode:
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("receiver did not exit after SIGTERM:\n%s", p.log())
		return -1
	}
}

const blackListDelete = `{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"id","To_Account":"id1"}]}`

func sendCallback(t *testing.T, addr, rawQuery string) int {
	resp, err := http.Post("http://"+addr+"/im/callback?"+rawQuery, "application/json", strings.NewReader(blackListDelete))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestBlankTokenIsAStartupError: a set but blank IM_CALLBACK_TOKEN (an empty Secret value, a
// file holding a newline) must never start an unauthenticated receiver.
func TestBlankTokenIsAStartupError(t *testing.T) {
	args := []string{"--sdkappid=1400000001", "--path=/im/callback", "--sink=http://127.0.0.1:1", "--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0"}
	for _, value := range []string{"", "\n", " \t\r\n"} {
		var errOut bytes.Buffer
		lookup := func(name string) (string, bool) {
			if name == contract.TokenEnv {
				return value, true
			}
			return "", false
		}
		if code := run(args, lookup, io.Discard, &errOut); code != 2 {
			t.Errorf("%s=%q: exit %d, want 2", contract.TokenEnv, value, code)
		}
		if !strings.Contains(errOut.String(), contract.TokenEnv+" is set but blank") || strings.Contains(errOut.String(), "receiver starting") {
			t.Errorf("%s=%q: the error does not name the variable, or the receiver started:\n%s", contract.TokenEnv, value, errOut.String())
		}
	}
}

// TestProcessDeliversAndExitsZero: standalone, unauthenticated (and says so once), SIGTERM
// drains and exits 0.
func TestProcessDeliversAndExitsZero(t *testing.T) {
	got := make(chan string, 10)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- string(b)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer sink.Close()
	p := startProcess(t, nil, "--sink="+sink.URL)
	addr := p.addr(t)
	if code := sendCallback(t, addr, "SdkAppid=1400000001&CallbackCommand=Sns.CallbackBlackListDelete"); code != 200 {
		t.Fatalf("callback: %d", code)
	}
	if b := <-got; b != blackListDelete {
		t.Errorf("sink got %s", b)
	}
	if code := p.terminate(t); code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, p.log())
	}
	if n := strings.Count(p.log(), "callbacks are NOT authenticated"); n != 1 {
		t.Errorf("unauthenticated warning logged %d times, want once:\n%s", n, p.log())
	}
}

// TestProcessUndeliveredExitsOne: the sink refuses the event and there is no dead-letter
// sink: the event is logged whole and the process exits 1. The token never shows in logs.
func TestProcessUndeliveredExitsOne(t *testing.T) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
	}))
	defer sink.Close()
	const token = "s3cr3t-token-value"
	p := startProcess(t, []string{"IM_CALLBACK_TOKEN=" + token + "\n"}, "--sink="+sink.URL)
	addr := p.addr(t)
	rt := time.Now().Unix()
	q := "SdkAppid=1400000001&CallbackCommand=Sns.CallbackBlackListDelete&RequestTime=" + itoa(rt) + "&Sign=" + receiver.Sign(token, itoa(rt))
	if code := sendCallback(t, addr, q); code != 200 {
		t.Fatalf("signed callback (token read from the environment, trailing newline trimmed): %d\n%s", code, p.log())
	}
	if code := sendCallback(t, addr, "SdkAppid=1400000001&CallbackCommand=Sns.CallbackBlackListDelete"); code != 401 {
		t.Fatalf("unsigned callback: %d, want 401", code)
	}
	if code := p.terminate(t); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, p.log())
	}
	logs := p.log()
	if !strings.Contains(logs, `"msg":"event not delivered"`) || !strings.Contains(logs, `"To_Account":"id1"`) {
		t.Errorf("undelivered event not logged whole:\n%s", logs)
	}
	if strings.Contains(logs, token) || strings.Contains(logs, "NOT authenticated") {
		t.Errorf("token leaked or wrong warning:\n%s", logs)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestProcessRoutesAndDecides: the binary with a route and a decision and no --sink: the
// routed after-callback reaches its sink, the before-callback is answered by the decision
// service, the default command is ignored (it has nowhere to go), and SIGTERM exits 0.
func TestProcessRoutesAndDecides(t *testing.T) {
	const (
		afterSend  = `{"CallbackCommand":"C2C.CallbackAfterSendMsg","From_Account":"a","To_Account":"b","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]}`
		beforeSend = `{"CallbackCommand":"C2C.CallbackBeforeSendMsg","From_Account":"a","To_Account":"b","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hi"}}]}`
		refusal    = `{"ActionStatus":"OK","ErrorCode":120001,"ErrorInfo":"not allowed"}`
	)
	got := make(chan string, 10)
	archive := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r.Header.Get("Ce-Type") + " " + string(b)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer archive.Close()
	decider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte(refusal))
	}))
	defer decider.Close()
	p := startProcess(t, nil, "--route=C2C.CallbackAfterSendMsg="+archive.URL,
		"--decision=C2C.CallbackBeforeSendMsg="+decider.URL)
	addr := p.addr(t)
	post := func(cmd, body string) (int, string) {
		resp, err := http.Post("http://"+addr+"/im/callback?SdkAppid=1400000001&CallbackCommand="+cmd, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, reply := post("C2C.CallbackAfterSendMsg", afterSend); code != 200 || reply != `{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}` {
		t.Errorf("routed: %d %s", code, reply)
	}
	if code, reply := post("C2C.CallbackBeforeSendMsg", beforeSend); code != 200 || reply != refusal {
		t.Errorf("decided: %d %s", code, reply)
	}
	if code, _ := post("Sns.CallbackBlackListDelete", blackListDelete); code != 200 {
		t.Errorf("default command without a sink: %d", code)
	}
	if e := <-got; e != "com.tencentcloud.im.C2C.CallbackAfterSendMsg "+afterSend {
		t.Errorf("archive got %s", e)
	}
	if code := p.terminate(t); code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, p.log())
	}
	if len(got) != 0 {
		t.Errorf("archive got more: %s", <-got)
	}
}

// spoolSink records what a sink took, by body, with the CloudEvent ids it came with.
type spoolSink struct {
	*httptest.Server
	mu    sync.Mutex
	taken map[string][]string // body -> ids, one per delivery
	delay time.Duration
	down  bool
}

func newSpoolSink(t *testing.T) *spoolSink {
	s := &spoolSink{taken: map[string][]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		delay, down := s.delay, s.down
		s.mu.Unlock()
		time.Sleep(delay)
		if down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		s.mu.Lock()
		s.taken[string(b)] = append(s.taken[string(b)], r.Header.Get("Ce-Id"))
		s.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *spoolSink) set(down bool, delay time.Duration) {
	s.mu.Lock()
	s.down, s.delay = down, delay
	s.mu.Unlock()
}

func spoolBody(i int) string {
	return `{"CallbackCommand":"Sns.CallbackBlackListDelete","PairList":[{"From_Account":"a","To_Account":"u` + itoa(int64(i)) + `"}]}`
}

// loadUntilKilled posts distinct callbacks from 16 connections and SIGKILLs the receiver once
// killAfter of them got 200 OK; it returns the bodies that got 200 OK.
func loadUntilKilled(t *testing.T, p *process, addr string, killAfter int) map[string]bool {
	t.Helper()
	var mu sync.Mutex
	ok := map[string]bool{}
	var killed sync.Once
	var n atomic.Int64
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for range 16 {
		wg.Go(func() {
			for {
				i := int(n.Add(1))
				if i > 20*killAfter {
					return
				}
				body := spoolBody(i)
				resp, err := client.Post("http://"+addr+"/im/callback?SdkAppid=1400000001&CallbackCommand=Sns.CallbackBlackListDelete",
					"application/json", strings.NewReader(body))
				if err != nil {
					return // killed
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					continue
				}
				mu.Lock()
				ok[body] = true
				enough := len(ok) >= killAfter
				mu.Unlock()
				if enough {
					killed.Do(func() { _ = p.cmd.Process.Signal(syscall.SIGKILL) })
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-p.exitCode:
	case <-time.After(10 * time.Second):
		t.Fatal("receiver not killed")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ok) < killAfter {
		t.Fatalf("only %d callbacks answered OK before the load ended", len(ok))
	}
	return ok
}

// checkAllArrived waits until every body that got 200 OK reached the sink, then checks that
// none arrived more often than allowed and every arrival carried the body's id.
func checkAllArrived(t *testing.T, s *spoolSink, ok map[string]bool, maxDuplicates int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.mu.Lock()
		missing := 0
		for b := range ok {
			if len(s.taken[b]) == 0 {
				missing++
			}
		}
		s.mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d callbacks answered OK never reached the sink", missing, len(ok))
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	dups := 0
	for b, ids := range s.taken {
		want := receiver.EventID("1400000001", "Sns.CallbackBlackListDelete", []byte(b))
		for _, id := range ids {
			if id != want {
				t.Errorf("body %s arrived with id %s, want %s", b, id, want)
			}
		}
		dups += len(ids) - 1
	}
	if dups > maxDuplicates {
		t.Errorf("%d duplicate deliveries, at most %d allowed (events delivered but not yet marked done at the kill)", dups, maxDuplicates)
	}
	t.Logf("%d callbacks answered OK all arrived; %d duplicates", len(ok), dups)
}

// TestProcessSIGKILLSinkDown: the sink is down while the receiver takes callbacks; SIGKILL;
// a receiver started on the same spool delivers every callback that got 200 OK, once.
func TestProcessSIGKILLSinkDown(t *testing.T) {
	s := newSpoolSink(t)
	s.set(true, 0)
	dir := t.TempDir()
	p := startProcess(t, nil, "--sink="+s.URL, "--spool-dir="+dir, "--spool-max-bytes=64Mi")
	ok := loadUntilKilled(t, p, p.addr(t), 400)
	s.set(false, 0)
	again := startProcess(t, nil, "--sink="+s.URL, "--spool-dir="+dir, "--spool-max-bytes=64Mi")
	again.addr(t)
	checkAllArrived(t, s, ok, 0)
	if code := again.terminate(t); code != 0 {
		t.Fatalf("exit %d after delivering the spool:\n%s", code, again.log())
	}
	if !strings.Contains(again.log(), `"msg":"spool opened; events found there are delivered first"`) {
		t.Errorf("no start line about the spool:\n%s", again.log())
	}
}

// TestProcessSIGKILLSlowSink: the sink is slow, so events are being delivered when the
// receiver is SIGKILLed; after a restart on the same spool every callback that got 200 OK
// has arrived, and only events between delivery and removal at the kill twice: those in
// delivery (one per worker) and those whose done-mark was not written yet (as many again
// is far more than a millisecond of deliveries).
func TestProcessSIGKILLSlowSink(t *testing.T) {
	s := newSpoolSink(t)
	s.set(false, 20*time.Millisecond)
	dir := t.TempDir()
	const workers = 8
	p := startProcess(t, nil, "--sink="+s.URL, "--spool-dir="+dir, "--spool-max-bytes=64Mi", "--workers="+itoa(workers))
	ok := loadUntilKilled(t, p, p.addr(t), 600)
	s.set(false, 0)
	again := startProcess(t, nil, "--sink="+s.URL, "--spool-dir="+dir, "--spool-max-bytes=64Mi", "--workers="+itoa(workers))
	again.addr(t)
	checkAllArrived(t, s, ok, 2*workers)
	if code := again.terminate(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, again.log())
	}
}

// metric reads one sample from the process's /metrics.
func (p *process) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.admin.Load().(string) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("%s not in /metrics", name)
	return 0
}

// TestProcessSinkOutage: without a dead-letter sink, the sink is down far longer than retries
// and backoff last; the receiver keeps accepting, holds one event per worker in memory and
// the rest on disk, fails nothing, and delivers everything once the sink is back, then exits 0.
func TestProcessSinkOutage(t *testing.T) {
	s := newSpoolSink(t)
	s.set(true, 0)
	const workers = 8
	// Linear backoff from 1 ms keeps the delays of a test-long outage short, so the held events
	// notice the sink's return within a fraction of a second.
	// No dead-letter sink: the outage must not fail the events (with one they would go there
	// after their retries).
	p := startProcess(t, nil, "--sink="+s.URL, "--spool-dir="+t.TempDir(),
		"--spool-max-bytes=64Mi", "--workers="+itoa(workers), "--backoff-policy=linear")
	addr := p.addr(t)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	send := func(from, to int) {
		var wg sync.WaitGroup
		var next atomic.Int64
		next.Store(int64(from))
		for range 16 {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < to; i = int(next.Add(1)) - 1 {
					resp, err := client.Post("http://"+addr+"/im/callback?SdkAppid=1400000001&CallbackCommand=Sns.CallbackBlackListDelete",
						"application/json", strings.NewReader(spoolBody(i)))
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Errorf("callback %d: %d", i, resp.StatusCode)
					}
				}
			})
		}
		wg.Wait()
	}
	const n = 4000
	send(0, n)
	deadline := time.Now().Add(10 * time.Second)
	for p.metric(t, "imcallback_deliveries_held") != workers {
		if time.Now().After(deadline) {
			t.Fatalf("workers do not hold their events: %v held", p.metric(t, "imcallback_deliveries_held"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := p.metric(t, "imcallback_spool_events"); got != n {
		t.Errorf("imcallback_spool_events = %v during the outage, want %d", got, n)
	}
	// In memory: the events the workers hold; the backlog waits on disk.
	if got := p.metric(t, "imcallback_deliveries_in_flight"); got != workers {
		t.Errorf("imcallback_deliveries_in_flight = %v, want %d (one per worker)", got, workers)
	}
	if got := p.metric(t, "imcallback_queue_depth"); got != n-workers {
		t.Errorf("imcallback_queue_depth = %v, want %d waiting in the spool", got, n-workers)
	}
	for _, m := range []string{`imcallback_events_total{result="dead_lettered"}`, `imcallback_events_total{result="failed"}`} {
		if got := p.metric(t, m); got != 0 {
			t.Errorf("%s = %v during the outage", m, got)
		}
	}
	s.set(false, 0)
	ok := map[string]bool{}
	for i := range n {
		ok[spoolBody(i)] = true
	}
	checkAllArrived(t, s, ok, 0)
	// Scraped before, the receiver waits for a scrape after its drain, as the manager makes.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case code := <-p.exitCode:
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, p.log())
			}
			return
		case <-time.After(50 * time.Millisecond):
			if resp, err := http.Get("http://" + p.admin.Load().(string) + "/metrics"); err == nil {
				resp.Body.Close()
			}
		}
	}
}

// TestDrainOnly: --drain-only on a spool that a killed receiver left (its sink down then)
// keeps holding the events while the sink is down, as a serving receiver would; a SIGTERM
// ends it with exit 1, leaving them in the spool for the next attempt; once the sink is back
// it delivers every one and exits 0 by itself. Without --spool-dir it is a configuration
// error.
func TestDrainOnly(t *testing.T) {
	s := newSpoolSink(t)
	s.set(true, 0)
	dir := t.TempDir()
	p := startProcess(t, nil, "--sink="+s.URL, "--spool-dir="+dir, "--spool-max-bytes=64Mi")
	ok := loadUntilKilled(t, p, p.addr(t), 200)

	down := startProcess(t, nil, "--drain-only", "--sink="+s.URL, "--spool-dir="+dir, "--spool-max-bytes=64Mi", "--shutdown-timeout=2s")
	select {
	case code := <-down.exitCode:
		t.Fatalf("drain with the sink down exited %d instead of holding the events:\n%s", code, down.log())
	case <-time.After(4 * time.Second):
	}
	if code := down.terminate(t); code != 1 {
		t.Fatalf("drain stopped with events left: exit %d, want 1:\n%s", code, down.log())
	}

	s.set(false, 0)
	again := startProcess(t, nil, "--drain-only", "--sink="+s.URL, "--spool-dir="+dir, "--spool-max-bytes=64Mi")
	select {
	case code := <-again.exitCode:
		if code != 0 {
			t.Fatalf("drain with the sink up: exit %d, want 0:\n%s", code, again.log())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("drain did not exit once the spool was empty:\n%s", again.log())
	}
	checkAllArrived(t, s, ok, 0)

	empty := startProcess(t, nil, "--drain-only", "--sink="+s.URL)
	if code := <-empty.exitCode; code != 2 {
		t.Errorf("--drain-only without --spool-dir: exit %d, want 2:\n%s", code, empty.log())
	}
}
