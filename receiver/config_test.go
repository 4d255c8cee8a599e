package receiver

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.SdkAppID, c.Path, c.Sink = 1400000001, "/im/callback", "http://sink.chat.svc.cluster.local/events"
		return c
	}
	v := valid()
	if err := v.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	zero := Config{SdkAppID: 1, Path: "/p", Sink: "https://s"}
	if err := zero.Validate(); err != nil {
		t.Fatalf("a config relying on New's defaults: %v", err)
	}
	for _, tc := range []struct {
		mutate func(*Config)
		want   string
	}{
		{func(c *Config) { c.SdkAppID = 0 }, "sdkappid is required"},
		{func(c *Config) { c.Path = "" }, "path is required"},
		{func(c *Config) { c.Path = "im/callback" }, `path "im/callback" must be absolute`},
		{func(c *Config) { c.Path = "/im?x=1" }, "must not contain a query"},
		{func(c *Config) { c.Commands = []string{"a", "a"} }, `"a" is listed twice`},
		{func(c *Config) { c.Commands = []string{" a"} }, "is not a command name"},
		{func(c *Config) { c.Sink = "" }, "sink is required"},
		{func(c *Config) { c.Sink = "/events" }, `sink "/events" must be an absolute http or https URL`},
		{func(c *Config) { c.Sink = "ftp://x" }, "must be an absolute http or https URL"},
		{func(c *Config) { c.DeadLetterSink = "dlq" }, "dead-letter-sink"},
		{func(c *Config) { c.Retry = -1 }, "retry must be >= 0"},
		{func(c *Config) { c.BackoffPolicy = "fibonacci" }, `backoff-policy must be "exponential" or "linear"`},
		{func(c *Config) { c.BackoffDelay = -time.Second }, "backoff-delay must not be negative"},
		{func(c *Config) { c.ShutdownDelay = 30 * time.Second }, "shutdown-delay (30s) must be shorter than shutdown-timeout (25s)"},
		{func(c *Config) { c.QueueSize = -1 }, "queue-size must be > 0"},
		{func(c *Config) { c.SpoolMaxBytes = -1 }, "spool-max-bytes must be > 0"},
		{func(c *Config) { c.SpoolDir, c.SpoolMaxBytes = "/s", 1<<20 }, "spool-max-bytes (1048576) must be at least twice max-body-bytes (1048576)"},
		{func(c *Config) { c.TLSCertFile = "c" }, "tls-cert-file and tls-key-file must be given together"},
		{func(c *Config) { c.Token = " \n" }, "token must not be blank"},
		{func(c *Config) { c.Token = "xxxxyyyy\n" }, "surrounding white space"},
	} {
		c := valid()
		tc.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want it to say %q", err, tc.want)
		}
		if _, err := New(c); err == nil {
			t.Errorf("New accepted a config Validate refuses (%q)", tc.want)
		}
	}
	// Every problem at once.
	if err := (&Config{}).Validate(); err == nil || strings.Count(err.Error(), ";") < 2 {
		t.Errorf("Validate() = %v, want all problems listed", err)
	}
}
