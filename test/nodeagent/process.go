package nodeagent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// credentials are the user and groups a container runs as, from its securityContext and the
// pod's, as a container runtime applies them. Our "images" have no /etc/passwd, so without
// runAsUser a container runs as root, and without runAsGroup with group 0.
type credentials struct {
	uid, gid        int64
	groups          []int64
	noNewPrivileges bool
}

func containerCredentials(pod *corev1.Pod, c *corev1.Container) (*credentials, error) {
	psc := pod.Spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	sc := c.SecurityContext
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	cr := &credentials{}
	switch {
	case sc.RunAsUser != nil:
		cr.uid = *sc.RunAsUser
	case psc.RunAsUser != nil:
		cr.uid = *psc.RunAsUser
	}
	switch {
	case sc.RunAsGroup != nil:
		cr.gid = *sc.RunAsGroup
	case psc.RunAsGroup != nil:
		cr.gid = *psc.RunAsGroup
	}
	nonRoot := psc.RunAsNonRoot
	if sc.RunAsNonRoot != nil {
		nonRoot = sc.RunAsNonRoot
	}
	if nonRoot != nil && *nonRoot && cr.uid == 0 {
		if sc.RunAsUser != nil || psc.RunAsUser != nil {
			return nil, &ConfigError{Message: fmt.Sprintf("container's runAsUser breaks non-root policy (pod: %q, container: %s)", pod.Namespace+"/"+pod.Name, c.Name)}
		}
		return nil, &ConfigError{Message: fmt.Sprintf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", pod.Namespace+"/"+pod.Name, c.Name)}
	}
	cr.groups = append(cr.groups, psc.SupplementalGroups...)
	if psc.FSGroup != nil {
		cr.groups = append(cr.groups, *psc.FSGroup)
	}
	cr.noNewPrivileges = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
	return cr, nil
}

// commandLine is the host command that runs argv in the pod's network namespace (with its
// /etc/netns files bind-mounted over /etc) as the container's user.
func commandLine(netns string, cr *credentials, argv []string) []string {
	out := []string{"ip", "netns", "exec", netns}
	if cr != nil && (cr.uid != 0 || cr.gid != 0 || len(cr.groups) > 0 || cr.noNewPrivileges) {
		out = append(out, "setpriv",
			"--reuid", strconv.FormatInt(cr.uid, 10), "--regid", strconv.FormatInt(cr.gid, 10))
		if len(cr.groups) == 0 {
			out = append(out, "--clear-groups")
		} else {
			gs := make([]string, len(cr.groups))
			for i, g := range cr.groups {
				gs[i] = strconv.FormatInt(g, 10)
			}
			out = append(out, "--groups", strings.Join(gs, ","))
		}
		if cr.noNewPrivileges {
			out = append(out, "--no-new-privs")
		}
		out = append(out, "--")
	}
	return append(out, argv...)
}

// process is one run of a container: a process group on the host.
type process struct {
	cmd      *exec.Cmd
	started  time.Time
	done     chan struct{}
	exitCode int32
	signal   syscall.Signal
	finished time.Time
}

func startProcess(argv, env []string, dir string, log *os.File) (*process, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout = log
	cmd.Stderr = log
	// Own process group, so the whole container is signaled and a Ctrl-C on the terminal
	// reaches the agent only; killed with the agent if it dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, started: time.Now(), done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.finished = time.Now()
		p.exitCode = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.signal = ws.Signal()
				p.exitCode = 128 + int32(ws.Signal())
			} else {
				p.exitCode = int32(ee.ExitCode())
			}
		} else if err != nil {
			p.exitCode = 128
		}
		// Like a container runtime, kill whatever the main process left behind.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// kill signals the process group.
func (p *process) kill(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-p.pid(), sig)
	}
}
