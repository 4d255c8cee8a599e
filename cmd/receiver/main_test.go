package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
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
		cfg.ShutdownDelay != 5*time.Second || cfg.ShutdownTimeout != 25*time.Second || cfg.Token != "" || opts.version {
		t.Errorf("defaults differ from the contract: %+v", cfg)
	}
}

func TestFlagsAll(t *testing.T) {
	cfg, _, err := parseFlags(strings.Fields(`--sdkappid=7 --path=/cb --commands=Sns.CallbackFriendAdd,,Sns.CallbackFriendDelete
		--sink=https://sink.example/e --dead-letter-sink=http://dlq --retry=0 --backoff-policy=linear --backoff-delay=1s
		--delivery-timeout=3s --queue-size=5 --workers=2 --max-body-bytes=2Ki --max-body-bytes-in-flight=1Mi --replay-window-size=-1 --max-clock-skew=30s --listen=:1 --admin-listen=:2
		--tls-cert-file=c --tls-key-file=k --shutdown-delay=0s --shutdown-timeout=9s --log-level=debug`), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SdkAppID != 7 || cfg.Path != "/cb" || strings.Join(cfg.Commands, "|") != "Sns.CallbackFriendAdd|Sns.CallbackFriendDelete" ||
		cfg.Sink != "https://sink.example/e" || cfg.DeadLetterSink != "http://dlq" || cfg.Retry != 0 || cfg.BackoffPolicy != "linear" ||
		cfg.BackoffDelay != time.Second || cfg.DeliveryTimeout != 3*time.Second || cfg.QueueSize != 5 || cfg.Workers != 2 ||
		cfg.MaxBodyBytes != 2048 || cfg.MaxBodyBytesInFlight != 1<<20 || cfg.ReplayWindowSize != -1 || cfg.MaxClockSkew != 30*time.Second || cfg.Listen != ":1" || cfg.AdminListen != ":2" ||
		cfg.TLSCertFile != "c" || cfg.TLSKeyFile != "k" || cfg.ShutdownDelay != 0 || cfg.ShutdownTimeout != 9*time.Second {
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
			var l struct{ Msg, Listen string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "receiver starting" {
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
