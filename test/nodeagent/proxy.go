package nodeagent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// The agent's stand-in for kube-proxy and cluster DNS. Each Service's ClusterIP is an
// address on the slot's bridge (so the host and every pod reach it), where a userspace proxy,
// like kube-proxy's old userspace mode, forwards each TCP connection to a ready endpoint
// from the Service's EndpointSlices. Names resolve through each pod's /etc/hosts
// (/etc/netns/<netns>/hosts, bind-mounted by `ip netns exec`), rewritten in place when
// Services or endpoints change.

type proxyPort struct {
	svc      types.NamespacedName
	portName string
	ln       net.Listener
	next     atomic.Uint64
}

type proxier struct {
	a *Agent

	mu     sync.Mutex
	ports  map[string]*proxyPort // by clusterIP:port
	warned map[string]bool
}

func newProxier(a *Agent) *proxier {
	return &proxier{a: a, ports: map[string]*proxyPort{}, warned: map[string]bool{}}
}

// sync makes the listeners and bridge addresses match the Services.
func (p *proxier) sync() error {
	svcs, err := p.a.services.List(labels.Everything())
	if err != nil {
		return err
	}
	type want struct {
		svc      types.NamespacedName
		portName string
	}
	wanted := map[string]want{}
	addrs := map[netip.Addr]bool{}
	for _, svc := range svcs {
		ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil || !ip.Is4() || !p.a.net.slot.ServiceCIDR().Contains(ip) {
			if svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != corev1.ClusterIPNone {
				p.warnOnce(svc.Namespace+"/"+svc.Name+"/ip", "service %s/%s: ClusterIP %s is outside this node's Service range %s; not proxied",
					svc.Namespace, svc.Name, svc.Spec.ClusterIP, p.a.net.slot.ServiceCIDR())
			}
			continue
		}
		addrs[ip] = true
		for _, sp := range svc.Spec.Ports {
			if protocolOf(sp) != corev1.ProtocolTCP {
				p.warnOnce(fmt.Sprintf("%s/%s/%d", svc.Namespace, svc.Name, sp.Port), "service %s/%s port %d/%s: only TCP is proxied",
					svc.Namespace, svc.Name, sp.Port, sp.Protocol)
				continue
			}
			wanted[net.JoinHostPort(ip.String(), strconv.Itoa(int(sp.Port)))] = want{
				svc: types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}, portName: sp.Name,
			}
		}
	}
	var errs []error
	if err := p.a.net.setServiceAddrs(addrs); err != nil {
		errs = append(errs, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, pp := range p.ports {
		if w, ok := wanted[addr]; !ok || w.svc != pp.svc || w.portName != pp.portName {
			pp.ln.Close()
			delete(p.ports, addr)
		}
	}
	for addr, w := range wanted {
		if _, ok := p.ports[addr]; ok {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s port %q: %w", w.svc, w.portName, err))
			continue
		}
		pp := &proxyPort{svc: w.svc, portName: w.portName, ln: ln}
		p.ports[addr] = pp
		go p.serve(pp)
	}
	return errors.Join(errs...)
}

func (p *proxier) warnOnce(key, format string, args ...any) {
	p.mu.Lock()
	seen := p.warned[key]
	p.warned[key] = true
	p.mu.Unlock()
	if !seen {
		p.a.logf(format, args...)
	}
}

func (p *proxier) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, pp := range p.ports {
		pp.ln.Close()
		delete(p.ports, addr)
	}
}

func (p *proxier) serve(pp *proxyPort) {
	for {
		conn, err := pp.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go p.forward(pp, conn)
	}
}

// endpoints lists the addresses a connection to the Service port may go to: the ready
// endpoints, or if there are none, the serving terminating ones (as kube-proxy does).
func (p *proxier) endpoints(svc types.NamespacedName, portName string) []string {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name})
	slices, err := p.a.slices.EndpointSlices(svc.Namespace).List(sel)
	if err != nil {
		return nil
	}
	var ready, terminating []string
	seen := map[string]bool{}
	for _, s := range slices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		var port int32
		found := false
		for _, sp := range s.Ports {
			if sp.Port != nil && ptrString(sp.Name) == portName {
				port, found = *sp.Port, true
			}
		}
		if !found {
			continue
		}
		for _, ep := range s.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			addr := net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(port)))
			if seen[addr] {
				continue
			}
			seen[addr] = true
			c := ep.Conditions
			switch {
			case c.Ready == nil || *c.Ready:
				ready = append(ready, addr)
			case c.Serving != nil && *c.Serving && c.Terminating != nil && *c.Terminating:
				terminating = append(terminating, addr)
			}
		}
	}
	if len(ready) == 0 {
		ready = terminating
	}
	sort.Strings(ready)
	return ready
}

func ptrString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (p *proxier) forward(pp *proxyPort, in net.Conn) {
	defer in.Close()
	eps := p.endpoints(pp.svc, pp.portName)
	if len(eps) == 0 {
		return // like kube-proxy's REJECT: the connection closes at once
	}
	start := int(pp.next.Add(1))
	var out net.Conn
	for i := range eps {
		c, err := net.DialTimeout("tcp", eps[(start+i)%len(eps)], 2*time.Second)
		if err == nil {
			out = c
			break
		}
	}
	if out == nil {
		return
	}
	defer out.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	<-done
}

// hostsFile is the /etc/hosts a pod sees: itself, then every Service by its DNS names
// (<svc>.<ns>.svc.cluster.local, <svc>.<ns>.svc, <svc>.<ns>, and <svc> in the pod's own
// namespace); a headless Service's name lists its ready endpoints.
func (a *Agent) hostsFile(namespace, podName string, podIP netip.Addr) []byte {
	var b strings.Builder
	b.WriteString("# Kubernetes-managed hosts file (callback-operator node agent).\n")
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	fmt.Fprintf(&b, "%s\t%s\n", podIP, podName)
	svcs, _ := a.services.List(labels.Everything())
	sort.Slice(svcs, func(i, j int) bool {
		if svcs[i].Namespace != svcs[j].Namespace {
			return svcs[i].Namespace < svcs[j].Namespace
		}
		return svcs[i].Name < svcs[j].Name
	})
	for _, svc := range svcs {
		names := fmt.Sprintf("%[1]s.%[2]s.svc.cluster.local %[1]s.%[2]s.svc %[1]s.%[2]s", svc.Name, svc.Namespace)
		if svc.Namespace == namespace {
			names += " " + svc.Name
		}
		switch svc.Spec.ClusterIP {
		case "":
		case corev1.ClusterIPNone:
			for _, ep := range a.proxy.endpoints(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}, headlessPortName(svc)) {
				host, _, _ := net.SplitHostPort(ep)
				fmt.Fprintf(&b, "%s\t%s\n", host, names)
			}
		default:
			fmt.Fprintf(&b, "%s\t%s\n", svc.Spec.ClusterIP, names)
		}
	}
	return []byte(b.String())
}

func headlessPortName(svc *corev1.Service) string {
	if len(svc.Spec.Ports) > 0 {
		return svc.Spec.Ports[0].Name
	}
	return ""
}

// writeHosts rewrites a pod's hosts file in place when its content changed: in place,
// because the pod's processes see the file through a bind mount of its inode.
func writeHosts(sb *sandbox, content []byte) error {
	path := filepath.Join(sb.EtcDir, "hosts")
	if old, err := os.ReadFile(path); err == nil && string(old) == string(content) {
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(content, 0); err != nil {
		return err
	}
	return f.Truncate(int64(len(content)))
}
