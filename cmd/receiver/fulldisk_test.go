package main

import (
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// smallFilesystem mounts a tmpfs of size bytes at a new directory (the tests run as root, as
// the local cluster's do).
func smallFilesystem(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test mounts a tmpfs: run it as root (the project's tests do)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

func adminStatus(t *testing.T, p *process, path string) int {
	t.Helper()
	resp, err := http.Get("http://" + p.admin.Load().(string) + path)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestProcessFullFilesystem: the spool's filesystem (a 1 MiB tmpfs) is smaller than
// --spool-max-bytes and fills while the sink is down: callbacks get 503 spool_full, /readyz
// fails while /healthz holds; killed and restarted on the still-full filesystem, the
// receiver starts (before, it exited 2 "invalid configuration" in a crash loop), delivers
// every callback answered OK, frees the space, and accepts again with /readyz back.
func TestProcessFullFilesystem(t *testing.T) {
	dir := smallFilesystem(t, "1m")
	s := newSpoolSink(t)
	s.set(true, 0)
	args := []string{"--sink=" + s.URL, "--spool-dir=" + dir, "--spool-max-bytes=16Mi", "--workers=4"}
	p := startProcess(t, nil, args...)
	addr := p.addr(t)
	ok := map[string]bool{}
	refused := 0
	for i := 0; i < 20000 && refused < 20; i++ {
		body := spoolBody(i) + strings.Repeat(" ", 400)
		resp, err := http.Post("http://"+addr+"/im/callback?SdkAppid=1400000001&CallbackCommand=Sns.CallbackBlackListDelete", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			ok[body] = true
		case http.StatusServiceUnavailable:
			if !strings.Contains(string(b), "spool is full") {
				t.Fatalf("503 %s, want the spool full", b)
			}
			refused++
		default:
			t.Fatalf("callback %d: %d %s", i, resp.StatusCode, b)
		}
	}
	if refused == 0 || len(ok) == 0 {
		t.Fatalf("%d accepted, %d refused: the filesystem never filled", len(ok), refused)
	}
	if got := p.metric(t, `imcallback_unavailable_total{reason="spool_full"}`); got != float64(refused) {
		t.Errorf("spool_full = %v, want %d", got, refused)
	}
	if got := adminStatus(t, p, "/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d while every callback is refused", got)
	}
	if got := adminStatus(t, p, "/healthz"); got != http.StatusOK {
		t.Errorf("/healthz = %d: a full filesystem is not cured by a restart", got)
	}
	t.Logf("%d callbacks accepted before the filesystem filled", len(ok))
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exitCode

	again := startProcess(t, nil, args...)
	addr = again.addr(t) // fails the test if it exits
	if got := adminStatus(t, again, "/healthz"); got != http.StatusOK {
		t.Errorf("/healthz = %d after the restart on a full filesystem", got)
	}
	s.set(false, 0)
	checkAllArrived(t, s, ok, 64)
	deadline := time.Now().Add(10 * time.Second)
	for sendCallback(t, addr, "SdkAppid=1400000001&CallbackCommand=Sns.CallbackBlackListDelete") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("no callback accepted after the backlog was delivered:\n%s", again.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := adminStatus(t, again, "/readyz"); got != http.StatusOK {
		t.Errorf("/readyz = %d once callbacks are accepted again", got)
	}
	if code := again.terminate(t); code != 0 {
		t.Errorf("exit %d:\n%s", code, again.log())
	}
}

// TestProcessDrainOnly: --drain-only on a spool a killed receiver left (its sink was down)
// delivers every callback that was answered OK, accepts nothing, and exits 0 once empty.
func TestProcessDrainOnly(t *testing.T) {
	s := newSpoolSink(t)
	s.set(true, 0)
	dir := t.TempDir()
	p := startProcess(t, nil, "--sink="+s.URL, "--spool-dir="+dir, "--spool-max-bytes=64Mi")
	ok := loadUntilKilled(t, p, p.addr(t), 300)
	s.set(false, 0)
	drain := startProcess(t, nil, "--sink="+s.URL, "--spool-dir="+dir, "--spool-max-bytes=64Mi", "--drain-only")
	select {
	case code := <-drain.exitCode:
		if code != 0 {
			t.Fatalf("drain-only exited %d:\n%s", code, drain.log())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("drain-only did not exit:\n%s", drain.log())
	}
	checkAllArrived(t, s, ok, 64)
	if strings.Contains(drain.log(), `"msg":"receiver starting"`) {
		t.Error("drain-only served callbacks")
	}
}
