package controllers_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/imcallback/callback-operator/controllers"
	"github.com/imcallback/callback-operator/controllers/counts"
	"github.com/imcallback/callback-operator/internal/testenv"
)

// One API server for the package (envtest: a real kube-apiserver and etcd). Each test has
// its own namespace and runs its own manager, whose cache sees only that namespace, so
// tests run in parallel and can stop and restart their manager.
var (
	env       *testenv.Env
	cfg       *rest.Config
	k8sClient client.Client
	scheme    *runtime.Scheme
)

const testImage = "ghcr.io/imcallback/callback-operator:test"

// testSinkGVK is a CRD of the tests' own, an Addressable with status.address.url.
var testSinkGVK = schema.GroupVersionKind{Group: "sinks.test.imcallback.dev", Version: "v1", Kind: "TestSink"}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds kube-apiserver and etcd")
		return 1
	}
	if testing.Verbose() {
		logf.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(os.Stderr)))
	} else {
		// Failures speak through assertions; a stopping manager's "context canceled" is noise.
		logf.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	}
	gatewayCRDs, err := testenv.GatewayAPICRDs()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if env, err = testenv.StartWith("..", []string{gatewayCRDs}, testSinkCRD()); err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	cfg, k8sClient, scheme = env.Config, env.Client, env.Scheme
	return m.Run()
}

// managerOptions tune a test's manager.
type managerOptions struct {
	scrapeInterval time.Duration
	adminPort      int
	// dial, when set, is how the scraper reaches pod addresses.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// allowImageOverride is the manager's --allow-image-override.
	allowImageOverride bool
	// config, when set, is the identity the manager acts as; the admin's by default.
	config *rest.Config
	// gatewayAPIRecheck is how often the manager looks for the Gateway API CRDs.
	gatewayAPIRecheck time.Duration
}

// startManager runs the operator's controllers, as cmd/manager wires them, for one
// namespace. The returned function stops it and waits until it has stopped; it also runs
// when the test ends.
func startManager(t *testing.T, ns string, o managerOptions) (stop func()) {
	t.Helper()
	if o.scrapeInterval == 0 {
		o.scrapeInterval = 200 * time.Millisecond
	}
	restConfig := cfg
	if o.config != nil {
		restConfig = o.config
	}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controllers.CacheOptions(ns),
		Controller:             controllerConfig(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := (&controllers.CallbackReceiverReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("callback-operator"),
		Image:     testImage,

		AllowImageOverride: o.allowImageOverride,
		Namespaces:         []string{ns},
		GatewayAPIRecheck:  o.gatewayAPIRecheck,
	}).SetupWithManager(mgr, 2); err != nil {
		t.Fatal(err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if o.dial != nil {
		transport.DialContext = o.dial
	}
	if err := (&counts.Reconciler{
		Client:    mgr.GetClient(),
		HTTP:      &http.Client{Timeout: time.Second, Transport: transport},
		Interval:  o.scrapeInterval,
		AdminPort: o.adminPort,
		Workers:   2,
	}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// newNamespace creates a namespace for one test and deletes it when the test ends.
func newNamespace(t *testing.T) string { return env.Namespace(t, "ctrl-test-") }

func testSinkCRD() *apiextensionsv1.CustomResourceDefinition {
	preserve := true
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "testsinks." + testSinkGVK.Group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: testSinkGVK.Group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "testsinks", Singular: "testsink", Kind: testSinkGVK.Kind, ListKind: testSinkGVK.Kind + "List"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: testSinkGVK.Version, Served: true, Storage: true,
				Subresources: &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: &preserve,
				}},
			}},
		},
	}
}

// controllerConfig lets each test run a manager of its own in this one process.
func controllerConfig() config.Controller {
	return config.Controller{SkipNameValidation: ptr.To(true)}
}

func init() {
	// Every Eventually in this package polls quickly and gives the manager time on a
	// loaded machine.
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
}
