// Command manager runs the callback-operator controllers: it reconciles CallbackReceivers
// into receiver Deployments and Services and keeps their status, counts included, current.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/controllers"
	"github.com/imcallback/callback-operator/controllers/counts"
	"github.com/imcallback/callback-operator/internal/version"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(cbv1.AddToScheme(scheme))
	// HTTPRoutes are written when the Gateway API is installed; knowing the type costs
	// nothing when it is not.
	utilruntime.Must(gwv1.Install(scheme))
}

type options struct {
	metricsAddr, probeAddr  string
	pprofAddr               string
	metricsSecure           bool
	leaderElect             bool
	leaderElectionNamespace string
	receiverImage           string
	allowImageOverride      bool
	watchNamespaces         string
	clusterDomain           string
	workers                 int
	scrapeInterval          time.Duration
	scrapeTimeout           time.Duration
	scrapeWorkers           int
	qps                     float64
	burst                   int
	showVersion             bool
}

// defaultGCPercent keeps the heap within 1.5x of what is live instead of Go's 2x: the
// informer caches are most of the live heap, and reconciles make short-lived garbage on
// top. At 1,000 resources (hack/bench-controller) it takes the manager's peak RSS from
// ~108 to ~93 MiB for a few percent more CPU. GOGC in the environment overrides it, and
// GOMEMLIMIT (e.g. from the container's memory limit) works as usual.
const defaultGCPercent = 50

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGCPercent)
	}
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8443", "Address of the metrics endpoint; 0 turns it off.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "", "Address of net/http/pprof (/debug/pprof/), unauthenticated: keep it on localhost; empty turns it off.")
	flag.BoolVar(&o.metricsSecure, "metrics-secure", true, "Serve metrics over HTTPS, to callers the API server authenticates and authorizes.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of /healthz and /readyz.")
	flag.BoolVar(&o.leaderElect, "leader-elect", true, "Elect a leader, so that only one manager of several writes at a time.")
	flag.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease; the manager's own when in a cluster.")
	flag.StringVar(&o.receiverImage, "receiver-image", envOr("RECEIVER_IMAGE", version.Image()), "Image of the receiver pods (env RECEIVER_IMAGE); by default the operator's own image at this binary's version.")
	flag.BoolVar(&o.allowImageOverride, "allow-image-override", false, "Honour spec.image. Off by default: an image of one's choice could read the token Secret, so this gives everyone who may edit CallbackReceivers the Secrets they can reference.")
	flag.StringVar(&o.watchNamespaces, "watch-namespaces", os.Getenv("WATCH_NAMESPACES"), "Comma-separated namespaces whose CallbackReceivers this manager reconciles (env WATCH_NAMESPACES); empty for the whole cluster. With namespaces it reads and watches nothing outside them, so a Role in each (config/namespaced) is all the access it needs.")
	flag.StringVar(&o.clusterDomain, "cluster-domain", "cluster.local", "DNS domain of the cluster, for Service URLs.")
	flag.IntVar(&o.workers, "workers", 8, "CallbackReceivers reconciled at once.")
	flag.DurationVar(&o.scrapeInterval, "scrape-interval", 10*time.Second, "How often each receiver pod's counters are read.")
	flag.DurationVar(&o.scrapeTimeout, "scrape-timeout", 2*time.Second, "Timeout of one read of a receiver pod's counters.")
	flag.IntVar(&o.scrapeWorkers, "scrape-workers", 8, "CallbackReceivers whose pods are read at once.")
	flag.Float64Var(&o.qps, "kube-api-qps", 100, "Requests per second to the API server, sustained.")
	flag.IntVar(&o.burst, "kube-api-burst", 200, "Requests to the API server in a burst.")
	flag.BoolVar(&o.showVersion, "version", false, "Print the version and exit.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()

	if o.showVersion {
		fmt.Println(version.Version)
		return
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))
	if err := run(o); err != nil {
		ctrl.Log.Error(err, "manager stopped")
		os.Exit(1)
	}
}

func run(o options) error {
	log := ctrl.Log.WithName("setup")
	if o.receiverImage == "" {
		return errors.New("--receiver-image is empty: give the image receiver pods run, or leave it unset for " + version.Image())
	}
	if o.scrapeTimeout <= 0 || o.scrapeInterval <= 0 {
		return errors.New("--scrape-interval and --scrape-timeout must be positive")
	}

	var namespaces []string
	for _, ns := range strings.Split(o.watchNamespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			namespaces = append(namespaces, ns)
		}
	}

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = float32(o.qps), o.burst
	cfg.UserAgent = "callback-operator/" + version.Version

	metricsOpts := metricsserver.Options{
		BindAddress:   o.metricsAddr,
		SecureServing: o.metricsSecure,
		// HTTP/2 off: it is exposed to the HTTP/2 Stream Cancellation and Rapid Reset CVEs.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	}
	if o.metricsSecure {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOpts,
		HealthProbeBindAddress:  o.probeAddr,
		PprofBindAddress:        o.pprofAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "callback-operator.callbacks.imcallback.dev",
		LeaderElectionNamespace: o.leaderElectionNamespace,
		// A new leader starts at once when this one stops cleanly.
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controllers.CacheOptions(namespaces...),
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}

	if err := (&controllers.CallbackReceiverReconciler{
		Client:             mgr.GetClient(),
		APIReader:          mgr.GetAPIReader(),
		Recorder:           mgr.GetEventRecorder("callback-operator"),
		Image:              o.receiverImage,
		AllowImageOverride: o.allowImageOverride,
		ClusterDomain:      o.clusterDomain,
		Namespaces:         namespaces,
	}).SetupWithManager(mgr, o.workers); err != nil {
		return fmt.Errorf("setting up the CallbackReceiver controller: %w", err)
	}
	if err := (&counts.Reconciler{
		Client:   mgr.GetClient(),
		HTTP:     &http.Client{Timeout: o.scrapeTimeout, Transport: scrapeTransport()},
		Interval: o.scrapeInterval,
		Workers:  o.scrapeWorkers,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the counts controller: %w", err)
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	log.Info("starting manager", "version", version.Version, "receiverImage", o.receiverImage,
		"allowImageOverride", o.allowImageOverride, "watchNamespaces", namespaces)
	return mgr.Start(ctrl.SetupSignalHandler())
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// scrapeTransport reaches receiver pods directly, never through a proxy.
func scrapeTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.MaxIdleConnsPerHost = 1
	t.IdleConnTimeout = 30 * time.Second
	return t
}
