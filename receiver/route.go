package receiver

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/imcallback/callback-operator/receiver/catalog"
	"github.com/imcallback/callback-operator/receiver/contract"
)

// Route delivers the after-callbacks of Commands to Sink instead of Config.Sink, with the
// same delivery settings and dead-letter sink (the --route flag).
type Route struct {
	Commands []string
	// Sink is an absolute http(s) URL.
	Sink string
}

// route is one delivery target: the default sink (Config.Sink) or a Route's, with its own
// counters of imcallback_route_events_total.
type route struct {
	url                             *url.URL
	label                           string // the sink label: the URL without credentials or query
	delivered, deadLettered, failed prometheus.Counter
	// health wakes the events held through the sink's outage when it takes one (outage.go).
	health targetHealth
	// pace bounds the attempts in flight to what the sink keeps up with (pacer.go).
	pace *pacer
	held atomic.Int64 // events held through the sink's outage
	lane int          // the Queue lane of the sink's events
}

// dispatch is what the receiver does with a command it handles: deliver it (route) or have
// it decided (decision). Commands without a dispatch are answered OK and counted ignored.
type dispatch struct {
	route     *route
	decision  *decisionService
	eventType string
}

// routing is the Receiver's part that knows where each command goes.
type routing struct {
	dispatch     map[string]*dispatch
	defaultRoute *route // nil without Config.Sink
	routes       []*route
}

// routeOf returns what to do with command, nil when it is not handled.
func (r *Receiver) routeOf(command string) *dispatch { return r.dispatch[command] }

// targetOf returns where an accepted event of command is delivered. It is looked up at
// delivery time, so an event replayed from a spool goes where the current flags route it;
// nil when they route it nowhere.
func (r *Receiver) targetOf(command string) *route {
	if d := r.dispatch[command]; d != nil && d.route != nil {
		return d.route
	}
	return nil
}

// defaultRouteCommands returns the commands delivered to Sink: Commands when given, else
// DefaultCommand unless a route or a decision names it; none without a Sink (then only
// routed and decided commands are handled).
func (c *Config) defaultRouteCommands() []string {
	if len(c.Commands) > 0 {
		return c.Commands
	}
	if c.Sink == "" {
		return nil
	}
	for _, rt := range c.Routes {
		for _, cmd := range rt.Commands {
			if cmd == DefaultCommand {
				return nil
			}
		}
	}
	for _, d := range c.Decisions {
		for _, cmd := range d.Commands {
			if cmd == DefaultCommand {
				return nil
			}
		}
	}
	return []string{DefaultCommand}
}

// validateRouting reports the problems of the routing fields: command names, a command
// named in more than one place, the URLs, when a sink is required, and the decision settings.
func (c *Config) validateRouting(add func(format string, args ...any)) {
	// where names the first flag that claimed each command.
	where := map[string]string{}
	claim := func(flag, cmd string) {
		switch {
		case cmd == "" || strings.TrimSpace(cmd) != cmd:
			add("%s: %q is not a command name (no empty names or surrounding spaces)", flag, cmd)
			return
		case strings.ContainsAny(cmd, ",="):
			add("%s: %q is not a command name (no commas or equals signs)", flag, cmd)
			return
		case !validHeaderValue(cmd):
			add("%s: %q contains control characters", flag, cmd)
			return
		}
		if prev, ok := where[cmd]; ok {
			if prev == flag {
				add("command %q is listed twice in %s", cmd, flag)
			} else {
				add("command %q is named by both %s and %s: a command goes to one place", cmd, prev, flag)
			}
			return
		}
		where[cmd] = flag
	}
	for _, cmd := range c.Commands {
		claim("--"+contract.FlagCommands, cmd)
	}
	for i, rt := range c.Routes {
		flag := "--" + contract.FlagRoute
		if len(rt.Commands) == 0 {
			add("%s #%d names no command", flag, i+1)
		}
		for _, cmd := range rt.Commands {
			claim(flag, cmd)
		}
		if err := checkSinkURL(fmt.Sprintf("%s #%d (%s)", flag, i+1, strings.Join(rt.Commands, ",")), rt.Sink, true); err != nil {
			add("%s", err)
		}
	}
	for i, d := range c.Decisions {
		flag := "--" + contract.FlagDecision
		if len(d.Commands) == 0 {
			add("%s #%d names no command", flag, i+1)
		}
		for _, cmd := range d.Commands {
			claim(flag, cmd)
		}
		if err := checkSinkURL(fmt.Sprintf("%s #%d (%s)", flag, i+1, strings.Join(d.Commands, ",")), d.URL, true); err != nil {
			add("%s", err)
		}
	}

	// A sink is needed for what goes to it: explicit --commands, or the default command when
	// nothing else is configured.
	if c.Sink == "" {
		switch {
		case len(c.Commands) > 0:
			add("sink is required for --%s %s (an absolute http or https URL)", contract.FlagCommands, strings.Join(c.Commands, ","))
		case len(c.Routes) == 0 && len(c.Decisions) == 0:
			add("sink is required (an absolute http or https URL)")
		}
	}

	if c.DecisionTimeout < 0 {
		add("%s must not be negative, got %s", contract.FlagDecisionTimeout, c.DecisionTimeout)
	}
	switch c.DecisionFailure {
	case "", contract.DecisionFailureAllow, contract.DecisionFailureReject:
	default:
		add("%s must be %q or %q, got %q", contract.FlagDecisionFailure, contract.DecisionFailureAllow, contract.DecisionFailureReject, c.DecisionFailure)
	}
}

// setUpRouting builds the dispatch table of a validated, defaulted configuration.
func (r *Receiver) setUpRouting() error {
	cfg := &r.cfg
	r.dispatch = make(map[string]*dispatch)
	routes := map[string]*route{} // by sink URL, so routes to one sink share its counters
	newRoute := func(raw string) (*route, error) {
		if rt, ok := routes[raw]; ok {
			return rt, nil
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, err
		}
		rt := &route{url: u, label: sinkLabel(u), pace: newPacer(cfg.Workers), lane: len(r.routes)}
		rt.delivered, rt.deadLettered, rt.failed = r.metrics.routeCounters(rt.label)
		routes[raw] = rt
		r.routes = append(r.routes, rt)
		return rt, nil
	}
	add := func(cmd string, d *dispatch) {
		d.eventType = EventTypePrefix + cmd
		r.dispatch[cmd] = d
	}
	if cfg.Sink != "" {
		rt, err := newRoute(cfg.Sink)
		if err != nil {
			return err
		}
		r.defaultRoute = rt
		for _, cmd := range cfg.Commands {
			add(cmd, &dispatch{route: rt})
		}
	}
	for _, spec := range cfg.Routes {
		rt, err := newRoute(spec.Sink)
		if err != nil {
			return err
		}
		for _, cmd := range spec.Commands {
			add(cmd, &dispatch{route: rt})
		}
	}
	for _, spec := range cfg.Decisions {
		ds, err := r.newDecisionService(spec.URL)
		if err != nil {
			return err
		}
		for _, cmd := range spec.Commands {
			add(cmd, &dispatch{decision: ds})
		}
	}
	r.eventTypes = make(map[string]string, len(r.dispatch))
	for cmd, d := range r.dispatch {
		r.eventTypes[cmd] = d.eventType
	}
	return nil
}

// sinkLabel is a sink's value of the sink label: scheme, host and path, so that credentials
// and query parameters never reach the metrics.
func sinkLabel(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// logRouting logs where each handled command goes, and warns about commands that are in no
// catalogue (likely a typo, which would match nothing) and about before-callbacks that are
// forwarded (answered OK without a decision) or after-callbacks that are decided (IM ignores
// the answer).
func (r *Receiver) logRouting() {
	for _, rt := range r.routes {
		var cmds []string
		for cmd, d := range r.dispatch {
			if d.route == rt {
				cmds = append(cmds, cmd)
			}
		}
		r.log.Info("route", slog.String("sink", rt.url.Redacted()), slog.Any("commands", slices.Sorted(slices.Values(cmds))))
	}
	for _, ds := range r.decisions {
		var cmds []string
		for cmd, d := range r.dispatch {
			if d.decision == ds {
				cmds = append(cmds, cmd)
			}
		}
		r.log.Info("decision service", slog.String("url", ds.url.Redacted()), slog.Any("commands", slices.Sorted(slices.Values(cmds))),
			slog.String("timeout", r.cfg.DecisionTimeout.String()), slog.String("onFailure", r.cfg.DecisionFailure))
	}
	for _, cmd := range slices.Sorted(maps.Keys(r.dispatch)) {
		d := r.dispatch[cmd]
		switch {
		case !catalog.Known(cmd):
			attrs := []any{slog.String("command", cmd)}
			if s, ok := catalog.Suggest(cmd); ok {
				attrs = append(attrs, slog.String("didYouMean", s))
			}
			r.log.Warn("command is in no catalogue of IM callbacks; check its spelling (commands are case-sensitive)", attrs...)
		case d.route != nil && catalog.IsBefore(cmd):
			r.log.Warn("before-callback forwarded as an event: it is answered OK without a decision; use --decision to decide it", slog.String("command", cmd))
		case d.decision != nil && !catalog.IsBefore(cmd):
			r.log.Warn("after-callback sent to a decision service: IM ignores the answer; use --route to forward it", slog.String("command", cmd))
		}
	}
}

// routeList is the repeatable --route / --decision flag: CMD[,CMD...]=URL per use.
type routeList[T any] struct {
	list *[]T
	make func(commands []string, url string) T
	show func(T) string
}

func (l routeList[T]) String() string {
	if l.list == nil {
		return ""
	}
	var parts []string
	for _, v := range *l.list {
		parts = append(parts, l.show(v))
	}
	return strings.Join(parts, " ")
}

func (l routeList[T]) Set(s string) error {
	cmds, u, err := parseRouteValue(s)
	if err != nil {
		return err
	}
	*l.list = append(*l.list, l.make(cmds, u))
	return nil
}

func routesFlag(list *[]Route) routeList[Route] {
	return routeList[Route]{list: list,
		make: func(c []string, u string) Route { return Route{Commands: c, Sink: u} },
		show: func(r Route) string { return contract.RouteValue(r.Commands, r.Sink) }}
}

func decisionsFlag(list *[]Decision) routeList[Decision] {
	return routeList[Decision]{list: list,
		make: func(c []string, u string) Decision { return Decision{Commands: c, URL: u} },
		show: func(d Decision) string { return contract.RouteValue(d.Commands, d.URL) }}
}

// parseRouteValue splits CMD[,CMD...]=URL at its first "=" (commands have none; URLs may).
func parseRouteValue(s string) ([]string, string, error) {
	list, u, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(u) == "" {
		return nil, "", errors.New("want CMD[,CMD...]=URL, such as C2C.CallbackBeforeSendMsg=http://moderation.chat.svc/decide")
	}
	var cmds []string
	for _, c := range strings.Split(list, ",") {
		if c = strings.TrimSpace(c); c != "" {
			cmds = append(cmds, c)
		}
	}
	if len(cmds) == 0 {
		return nil, "", errors.New("must name at least one command before the '='")
	}
	return cmds, strings.TrimSpace(u), nil
}
