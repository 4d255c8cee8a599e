package nodeagent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probeUserAgent is what the kubelet sends as User-Agent.
const probeUserAgent = "kube-probe/1.37"

func probeDefaults(pr *corev1.Probe) (period, timeout time.Duration, success, failure int32) {
	period, timeout, success, failure = 10*time.Second, time.Second, 1, 3
	if pr.PeriodSeconds > 0 {
		period = time.Duration(pr.PeriodSeconds) * time.Second
	}
	if pr.TimeoutSeconds > 0 {
		timeout = time.Duration(pr.TimeoutSeconds) * time.Second
	}
	if pr.SuccessThreshold > 0 {
		success = pr.SuccessThreshold
	}
	if pr.FailureThreshold > 0 {
		failure = pr.FailureThreshold
	}
	return
}

// runProbes runs the container's startup probe, then its readiness and liveness probes, as
// the kubelet's prober does, until ctx ends. A failed startup or liveness probe asks for a
// restart on restart.
func (c *container) runProbes(ctx context.Context, p *process, restart chan<- string) {
	spec := c.spec
	if spec.StartupProbe != nil {
		ok := c.probeLoop(ctx, p, spec.StartupProbe, true, func(ok bool, _ string, successes, failures int32) bool {
			_, _, st, ft := probeDefaults(spec.StartupProbe)
			if ok && successes >= st {
				c.w.mu.Lock()
				c.started = true
				c.w.mu.Unlock()
				c.w.notify()
				return false
			}
			if !ok && failures >= ft {
				select {
				case restart <- "failed its startup probe":
				default:
				}
				return false
			}
			return true
		})
		if !ok {
			return
		}
		c.w.mu.Lock()
		started := c.started
		c.w.mu.Unlock()
		if !started {
			return
		}
	}
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		if spec.ReadinessProbe == nil {
			c.w.mu.Lock()
			c.ready = true
			c.w.mu.Unlock()
			c.w.notify()
			return
		}
		_, _, st, ft := probeDefaults(spec.ReadinessProbe)
		c.probeLoop(ctx, p, spec.ReadinessProbe, false, func(ok bool, msg string, successes, failures int32) bool {
			c.w.mu.Lock()
			was := c.ready
			if ok && successes >= st {
				c.ready = true
			}
			if !ok && failures >= ft {
				c.ready = false
			}
			now := c.ready
			c.w.mu.Unlock()
			if was != now {
				c.w.logf("container %s ready=%v %s", c.spec.Name, now, msg)
				c.w.notify()
			}
			return true
		})
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		if spec.LivenessProbe == nil {
			return
		}
		_, _, _, ft := probeDefaults(spec.LivenessProbe)
		c.probeLoop(ctx, p, spec.LivenessProbe, true, func(ok bool, msg string, _, failures int32) bool {
			if !ok && failures >= ft {
				c.w.logf("container %s failed its liveness probe: %s", c.spec.Name, msg)
				select {
				case restart <- "failed its liveness probe":
				default:
				}
				return false
			}
			return true
		})
	}()
	<-done
	<-done
}

// probeLoop probes every period after the initial delay, counting consecutive successes
// and failures, until handle returns false (then it reports true) or ctx ends (then false).
//
// The kubelet's probe workers tick every period from the pod's admission, so a container's
// first probe comes at some point within one period after it started (or after the initial
// delay). Within that range readiness is probed at once, so pods get Ready as early as a
// kubelet could make them, and liveness and startup probes one period later, so a container
// is never killed earlier than a kubelet could kill it.
func (c *container) probeLoop(ctx context.Context, p *process, pr *corev1.Probe, late bool, handle func(ok bool, msg string, successes, failures int32) bool) bool {
	period, timeout, _, _ := probeDefaults(pr)
	first := time.Duration(pr.InitialDelaySeconds) * time.Second
	if late {
		first = max(first, period)
	}
	if !sleepCtx(ctx, first) {
		return false
	}
	var successes, failures int32
	for {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := c.probe(pctx, p, pr.ProbeHandler)
		cancel()
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			successes, failures = successes+1, 0
		} else {
			successes, failures = 0, failures+1
		}
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if !handle(err == nil, msg, successes, failures) {
			return true
		}
		if !sleepCtx(ctx, period) {
			return false
		}
	}
}

// probe runs one check against the container.
func (c *container) probe(ctx context.Context, p *process, h corev1.ProbeHandler) error {
	switch {
	case h.HTTPGet != nil:
		return c.httpGet(ctx, h.HTTPGet)
	case h.TCPSocket != nil:
		addr, err := c.address(h.TCPSocket.Host, h.TCPSocket.Port)
		if err != nil {
			return err
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	case h.Exec != nil:
		return c.exec(ctx, h.Exec.Command)
	case h.GRPC != nil:
		addr := net.JoinHostPort(c.podIP(), strconv.Itoa(int(h.GRPC.Port)))
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUserAgent(probeUserAgent))
		if err != nil {
			return err
		}
		defer conn.Close()
		service := ""
		if h.GRPC.Service != nil {
			service = *h.GRPC.Service
		}
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			return err
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("service unhealthy (responded with %q)", resp.Status)
		}
		return nil
	}
	return fmt.Errorf("probe has no handler")
}

func (c *container) podIP() string {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if c.w.sb == nil {
		return ""
	}
	return c.w.sb.IP.String()
}

// address resolves a probe's host and (possibly named) port.
func (c *container) address(host string, port intstr.IntOrString) (string, error) {
	if host == "" {
		host = c.podIP()
	}
	n := port.IntValue()
	if port.Type == intstr.String {
		n = 0
		for _, cp := range c.spec.Ports {
			if cp.Name == port.StrVal {
				n = int(cp.ContainerPort)
			}
		}
		if n == 0 {
			return "", fmt.Errorf("container %s has no port named %q", c.spec.Name, port.StrVal)
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), nil
}

var probeTransport = &http.Transport{
	TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // the kubelet does not verify probe targets either
	DisableKeepAlives: true,
}

func (c *container) httpGet(ctx context.Context, g *corev1.HTTPGetAction) error {
	addr, err := c.address(g.Host, g.Port)
	if err != nil {
		return err
	}
	scheme := "http"
	if g.Scheme == corev1.URISchemeHTTPS {
		scheme = "https"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", probeUserAgent)
	req.Header.Set("Accept", "*/*")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	client := &http.Client{Transport: probeTransport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}

// exec runs a command in the container's network namespace as its user.
func (c *container) exec(ctx context.Context, command []string) error {
	if len(command) == 0 {
		return fmt.Errorf("exec: no command")
	}
	pod := c.w.podSnapshot()
	cr, err := containerCredentials(pod, c.spec)
	if err != nil {
		return err
	}
	c.w.mu.Lock()
	netns := ""
	if c.w.sb != nil {
		netns = c.w.sb.Netns
	}
	c.w.mu.Unlock()
	argv := commandLine(netns, cr, command)
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("command %q: %w: %s", strings.Join(command, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// runHandler runs a lifecycle hook (preStop).
func (c *container) runHandler(ctx context.Context, p *process, h *corev1.LifecycleHandler) error {
	switch {
	case h.Sleep != nil:
		sleepCtx(ctx, time.Duration(h.Sleep.Seconds)*time.Second)
		return nil
	case h.HTTPGet != nil:
		return c.httpGet(ctx, h.HTTPGet)
	case h.Exec != nil:
		return c.exec(ctx, h.Exec.Command)
	}
	return nil
}
