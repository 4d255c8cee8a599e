package receiver

import (
	"flag"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestRoutingConfig: where each command goes, and every way to name a command twice or to
// leave the default route without a sink.
func TestRoutingConfig(t *testing.T) {
	const (
		afterSend = "C2C.CallbackAfterSendMsg"
		before    = "C2C.CallbackBeforeSendMsg"
	)
	base := func() Config {
		c := DefaultConfig()
		c.SdkAppID, c.Path, c.Sink = 1400000001, "/im/callback", "http://sink.example/events"
		return c
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		err    string   // a Validate error containing this, or "" for valid
		forSit []string // valid: the commands of the default route
	}{
		{name: "defaults", mutate: func(*Config) {}, forSit: []string{DefaultCommand}},
		{name: "a route of another command keeps the default", mutate: func(c *Config) {
			c.Routes = []Route{{Commands: []string{afterSend}, Sink: "http://archive"}}
		}, forSit: []string{DefaultCommand}},
		{name: "a route of the default command takes it from the default route", mutate: func(c *Config) {
			c.Routes = []Route{{Commands: []string{CmdFriendAdd, DefaultCommand}, Sink: "http://friends"}}
		}, forSit: nil},
		{name: "a decision of the default command takes it from the default route", mutate: func(c *Config) {
			c.Decisions = []Decision{{Commands: []string{DefaultCommand}, URL: "http://decide"}}
		}, forSit: nil},
		{name: "explicit commands", mutate: func(c *Config) {
			c.Commands = []string{CmdFriendAdd}
			c.Routes = []Route{{Commands: []string{DefaultCommand}, Sink: "http://b"}}
		}, forSit: []string{CmdFriendAdd}},
		{name: "no sink, only decisions", mutate: func(c *Config) {
			c.Sink = ""
			c.Decisions = []Decision{{Commands: []string{before}, URL: "http://decide"}}
		}, forSit: nil},
		{name: "no sink, only routes", mutate: func(c *Config) {
			c.Sink = ""
			c.Routes = []Route{{Commands: []string{afterSend}, Sink: "http://archive"}}
		}, forSit: nil},

		{name: "explicit command also routed", mutate: func(c *Config) {
			c.Commands = []string{afterSend, CmdFriendAdd}
			c.Routes = []Route{{Commands: []string{afterSend}, Sink: "http://archive"}}
		}, err: `command "C2C.CallbackAfterSendMsg" is named by both --commands and --route: a command goes to one place`},
		{name: "explicit default command also decided", mutate: func(c *Config) {
			c.Commands = []string{DefaultCommand}
			c.Decisions = []Decision{{Commands: []string{DefaultCommand}, URL: "http://d"}}
		}, err: `command "Sns.CallbackBlackListDelete" is named by both --commands and --decision`},
		{name: "routed and decided", mutate: func(c *Config) {
			c.Routes = []Route{{Commands: []string{before}, Sink: "http://archive"}}
			c.Decisions = []Decision{{Commands: []string{before}, URL: "http://d"}}
		}, err: `command "C2C.CallbackBeforeSendMsg" is named by both --route and --decision`},
		{name: "two routes of one command", mutate: func(c *Config) {
			c.Routes = []Route{{Commands: []string{afterSend}, Sink: "http://a"}, {Commands: []string{afterSend}, Sink: "http://b"}}
		}, err: `command "C2C.CallbackAfterSendMsg" is listed twice in --route`},
		{name: "a command twice in one decision", mutate: func(c *Config) {
			c.Decisions = []Decision{{Commands: []string{before, before}, URL: "http://d"}}
		}, err: `command "C2C.CallbackBeforeSendMsg" is listed twice in --decision`},
		{name: "route without commands", mutate: func(c *Config) {
			c.Routes = []Route{{Sink: "http://a"}}
		}, err: "--route #1 names no command"},
		{name: "route with a relative sink", mutate: func(c *Config) {
			c.Routes = []Route{{Commands: []string{afterSend}, Sink: "/archive"}}
		}, err: `--route #1 (C2C.CallbackAfterSendMsg) "/archive" must be an absolute http or https URL`},
		{name: "decision without URL", mutate: func(c *Config) {
			c.Decisions = []Decision{{Commands: []string{before}}}
		}, err: "--decision #1 (C2C.CallbackBeforeSendMsg) is required"},
		{name: "command with a comma", mutate: func(c *Config) {
			c.Decisions = []Decision{{Commands: []string{"a,b"}, URL: "http://d"}}
		}, err: `"a,b" is not a command name`},
		{name: "no sink at all", mutate: func(c *Config) { c.Sink = "" }, err: "sink is required (an absolute http or https URL)"},
		{name: "no sink for explicit commands", mutate: func(c *Config) {
			c.Sink = ""
			c.Commands = []string{CmdFriendAdd}
			c.Decisions = []Decision{{Commands: []string{before}, URL: "http://d"}}
		}, err: "sink is required for --commands Sns.CallbackFriendAdd"},
		{name: "unknown failure policy", mutate: func(c *Config) { c.DecisionFailure = "deny" }, err: `decision-failure must be "allow" or "reject", got "deny"`},
		{name: "negative decision timeout", mutate: func(c *Config) { c.DecisionTimeout = -time.Second }, err: "decision-timeout must not be negative"},
		{name: "decision timeout of 1.5s", mutate: func(c *Config) { c.DecisionTimeout = 1500 * time.Millisecond }, forSit: []string{DefaultCommand}},
		{name: "decision timeout over 1.5s", mutate: func(c *Config) { c.DecisionTimeout = 1501 * time.Millisecond },
			err: "decision-timeout must be at most 1.5s, inside IM's 2-second wait"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.mutate(&c)
			err := c.Validate()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Validate() = %v, want it to say %q", err, tc.err)
				}
				if _, err := New(c); err == nil {
					t.Fatal("New accepted what Validate refuses")
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			if got := c.withDefaults().Commands; !slices.Equal(got, tc.forSit) {
				t.Errorf("default route commands = %v, want %v", got, tc.forSit)
			}
			r, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			for _, cmd := range tc.forSit {
				if d := r.routeOf(cmd); d == nil || d.route != r.defaultRoute {
					t.Errorf("%s is not on the default route", cmd)
				}
			}
			for _, rt := range c.Routes {
				for _, cmd := range rt.Commands {
					if d := r.routeOf(cmd); d == nil || d.route == nil || d.route.url.String() != rt.Sink {
						t.Errorf("%s is not routed to %s", cmd, rt.Sink)
					}
				}
			}
			for _, dc := range c.Decisions {
				for _, cmd := range dc.Commands {
					if d := r.routeOf(cmd); d == nil || d.decision == nil || d.decision.url.String() != dc.URL {
						t.Errorf("%s is not decided by %s", cmd, dc.URL)
					}
				}
			}
		})
	}
}

// TestRouteFlags: --route and --decision repeat, split at the first "=", and write what a
// library user would set.
func TestRouteFlags(t *testing.T) {
	cfg, err := ParseFlags([]string{
		"--route", "C2C.CallbackAfterSendMsg, Group.CallbackAfterSendMsg=http://archive.chat.svc/events?x=1&y=2",
		"--route=Sns.CallbackFriendAdd=http://friends",
		"--decision=C2C.CallbackBeforeSendMsg,Group.CallbackBeforeSendMsg=https://moderation/decide",
		"--decision-timeout=700ms", "--decision-failure=reject",
	})
	if err != nil {
		t.Fatal(err)
	}
	wantRoutes := []Route{
		{Commands: []string{"C2C.CallbackAfterSendMsg", "Group.CallbackAfterSendMsg"}, Sink: "http://archive.chat.svc/events?x=1&y=2"},
		{Commands: []string{"Sns.CallbackFriendAdd"}, Sink: "http://friends"},
	}
	wantDecisions := []Decision{{Commands: []string{"C2C.CallbackBeforeSendMsg", "Group.CallbackBeforeSendMsg"}, URL: "https://moderation/decide"}}
	if !slices.EqualFunc(cfg.Routes, wantRoutes, func(a, b Route) bool { return a.Sink == b.Sink && slices.Equal(a.Commands, b.Commands) }) {
		t.Errorf("routes %+v, want %+v", cfg.Routes, wantRoutes)
	}
	if !slices.EqualFunc(cfg.Decisions, wantDecisions, func(a, b Decision) bool { return a.URL == b.URL && slices.Equal(a.Commands, b.Commands) }) {
		t.Errorf("decisions %+v, want %+v", cfg.Decisions, wantDecisions)
	}
	if cfg.DecisionTimeout != 700*time.Millisecond || cfg.DecisionFailure != DecisionFailureReject {
		t.Errorf("decision settings %s %s", cfg.DecisionTimeout, cfg.DecisionFailure)
	}
	for _, bad := range []string{"C2C.CallbackAfterSendMsg", "=http://a", " , =http://a", "C2C.CallbackAfterSendMsg=", "C2C.CallbackAfterSendMsg= "} {
		if _, err := ParseFlags([]string{"--route", bad}); err == nil {
			t.Errorf("--route %q parsed", bad)
		}
		if _, err := ParseFlags([]string{"--decision", bad}); err == nil {
			t.Errorf("--decision %q parsed", bad)
		}
	}
	// The defaults print nothing for the repeatable flags, and a parsed value prints back.
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := DefaultConfig()
	c.RegisterFlags(fs)
	if v := fs.Lookup("route").DefValue; v != "" {
		t.Errorf("--route default %q", v)
	}
	if err := fs.Parse([]string{"--route=a,b=http://x"}); err != nil {
		t.Fatal(err)
	}
	if v := fs.Lookup("route").Value.String(); v != "a,b=http://x" {
		t.Errorf("--route prints %q", v)
	}
}

// TestRoutesDeliverToTheirSinks: after-callbacks of two routed commands arrive at two sinks,
// the default command at the default sink, each byte for byte with its own type; a route
// whose sink fails dead-letters to the shared dead-letter sink. Counted per sink.
func TestRoutesDeliverToTheirSinks(t *testing.T) {
	def, friends, archive, dls := newSink(t, nil), newSink(t, nil), newSink(t, nil), newSink(t, nil)
	broken := newSink(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadRequest) })
	cfg := testConfig(def.URL)
	cfg.DeadLetterSink = dls.URL
	cfg.Routes = []Route{
		{Commands: []string{CmdFriendAdd, CmdFriendDelete}, Sink: friends.URL + "/friends"},
		{Commands: []string{CmdC2CAfterSendMsg, CmdGroupAfterSendMsg}, Sink: archive.URL + "/archive"},
		{Commands: []string{CmdBlackListAdd}, Sink: broken.URL},
	}
	rr := start(t, cfg)
	for _, c := range []struct{ cmd, body string }{
		{CmdBlackListDelete, blackListDeleteBody},
		{CmdFriendAdd, friendAddBody},
		{CmdFriendDelete, friendDeleteBody},
		{CmdC2CAfterSendMsg, c2cAfterBody},
		{CmdGroupAfterSendMsg, groupAfterBody},
		{CmdBlackListAdd, blackListAddBody},
		{"Group.CallbackAfterNewMemberJoin", `{"CallbackCommand":"Group.CallbackAfterNewMemberJoin"}`},
	} {
		if code, reply := post(t, rr.url, signedQuery(c.cmd), c.body); code != 200 || reply != replyOK {
			t.Fatalf("%s: %d %s", c.cmd, code, reply)
		}
	}
	eventually(t, "every event delivered or dead-lettered", func() bool {
		c := countsOf(rr.Receiver)
		return c.delivered == 5 && c.deadLettered == 1
	})
	if err := rr.stop(t); err != nil {
		t.Fatal(err)
	}
	expect := func(name string, s *sink, path string, want map[string]string) {
		t.Helper()
		got := s.got()
		if len(got) != len(want) {
			t.Errorf("%s sink got %d events, want %d", name, len(got), len(want))
		}
		for _, r := range got {
			typ := r.header.Get("Ce-Type")
			cmd := strings.TrimPrefix(typ, EventTypePrefix)
			if body, ok := want[cmd]; !ok || string(r.body) != body {
				t.Errorf("%s sink got %s: %s", name, typ, r.body)
			}
			if r.path != path {
				t.Errorf("%s sink got %s at %q, want %q", name, typ, r.path, path)
			}
		}
	}
	expect("default", def, "/", map[string]string{CmdBlackListDelete: blackListDeleteBody})
	expect("friends", friends, "/friends", map[string]string{CmdFriendAdd: friendAddBody, CmdFriendDelete: friendDeleteBody})
	expect("archive", archive, "/archive", map[string]string{CmdC2CAfterSendMsg: c2cAfterBody, CmdGroupAfterSendMsg: groupAfterBody})
	expect("dead-letter", dls, "/", map[string]string{CmdBlackListAdd: blackListAddBody})
	if d := dls.got(); len(d) == 1 && d[0].header.Get("Ce-Deadletterreason") != "sink responded 400 Bad Request" {
		t.Errorf("dead-letter reason %q", d[0].header.Get("Ce-Deadletterreason"))
	}
	if c := countsOf(rr.Receiver); c.accepted != 6 || c.ignored != 1 || c.pairs != 3+1+1+2 {
		t.Errorf("counters %+v", c)
	}
	m := rr.metrics
	for _, tc := range []struct {
		sink, result string
		want         float64
	}{
		{def.URL, ResultDelivered, 1},
		{friends.URL + "/friends", ResultDelivered, 2},
		{archive.URL + "/archive", ResultDelivered, 2},
		{broken.URL, ResultDeadLettered, 1},
		{broken.URL, ResultDelivered, 0},
		{def.URL, ResultFailed, 0},
	} {
		if got := testutil.ToFloat64(m.routeEvents.WithLabelValues(tc.sink, tc.result)); got != tc.want {
			t.Errorf("imcallback_route_events_total{sink=%q,result=%q} = %v, want %v", tc.sink, tc.result, got, tc.want)
		}
	}
	if n := testutil.CollectAndCount(m.routeEvents); n != 4*3 {
		t.Errorf("imcallback_route_events_total has %d series, want 3 per sink (12)", n)
	}
}

// TestRouteLabelHidesCredentials: the sink label never carries userinfo or a query.
func TestRouteLabelHidesCredentials(t *testing.T) {
	cfg := testConfig("https://user:secret@sink.example:8443/events?token=abc")
	r := newReceiver(t, cfg)
	if got := r.defaultRoute.label; got != "https://sink.example:8443/events" {
		t.Errorf("label %q", got)
	}
}

// TestRoutingStartLog: the start log says where each command goes and flags the likely
// mistakes: a command in no catalogue (with the likely intended one), a forwarded
// before-callback, a decided after-callback.
func TestRoutingStartLog(t *testing.T) {
	var logs logBuffer
	cfg := testConfig(newSink(t, nil).URL)
	cfg.Logger = jsonLogger(&logs)
	cfg.Commands = []string{"Sns.CallbackBlacklistDelete", CmdPrevFriendAdd}
	cfg.Decisions = []Decision{{Commands: []string{CmdC2CBeforeSendMsg, CmdC2CAfterSendMsg}, URL: "http://decide.example/"}}
	rr := start(t, cfg)
	if err := rr.stop(t); err != nil {
		t.Fatal(err)
	}
	text := logs.String()
	for _, want := range []string{
		`"msg":"route"`,
		`"msg":"decision service","url":"http://decide.example/","commands":["C2C.CallbackAfterSendMsg","C2C.CallbackBeforeSendMsg"]`,
		`"command":"Sns.CallbackBlacklistDelete","didYouMean":"Sns.CallbackBlackListDelete"`,
		`before-callback forwarded as an event: it is answered OK without a decision; use --decision to decide it","command":"Sns.CallbackPrevFriendAdd"`,
		`after-callback sent to a decision service: IM ignores the answer; use --route to forward it","command":"C2C.CallbackAfterSendMsg"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("start log lacks %s:\n%s", want, text)
		}
	}
	if strings.Contains(text, `"command":"C2C.CallbackBeforeSendMsg"`) {
		t.Errorf("a decided before-callback is no mistake:\n%s", text)
	}
}
