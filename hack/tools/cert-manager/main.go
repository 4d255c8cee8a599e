// Command cert-manager-controller runs cert-manager's controller for the local cluster from
// the public packages of github.com/cert-manager/cert-manager (its cmd/* modules are not on
// the module proxy): the Issuer and ClusterIssuer controllers, the certificate controllers,
// the CertificateRequest approver, the SelfSigned and CA issuers, ingress-shim and
// gateway-shim. No ACME, Vault or Venafi, no webhook, no cainjector, and so nothing that
// reaches outside the cluster.
//
// Without the webhook nothing is defaulted or validated on admission: whoever writes a
// Certificate or an Issuer writes the fields the webhook would have defaulted.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/cert-manager/cert-manager/pkg/controller"
	logf "github.com/cert-manager/cert-manager/pkg/logs"

	// The controllers this binary runs register themselves with controller.Known.
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificate-shim/gateways"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificate-shim/ingresses"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// The issuer types the Issuer and ClusterIssuer controllers set up.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
)

// wanted are the controllers run; each must be registered (main fails otherwise), and no
// other registered one runs.
var wanted = []string{
	"issuers", "clusterissuers",
	"certificates-trigger", "certificates-issuing", "certificates-key-manager",
	"certificates-request-manager", "certificates-readiness", "certificates-revision-manager",
	"certificaterequests-approver",
	"certificaterequests-issuer-selfsigned", "certificaterequests-issuer-ca",
	"ingress-shim", "gateway-shim",
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file (in-cluster configuration when empty)")
	clusterNS := flag.String("cluster-resource-namespace", "cert-manager", "namespace of the Secrets ClusterIssuers refer to")
	gatewayAPI := flag.Bool("enable-gateway-api", true, "run gateway-shim (needs the Gateway API CRDs)")
	healthAddr := flag.String("health-addr", ":9403", "address of /livez and /readyz")
	metricsAddr := flag.String("metrics-addr", ":9402", "address of /metrics (Prometheus), empty for none")
	workers := flag.Int("workers", 5, "workers per controller")
	klog.InitFlags(nil)
	flag.Parse()
	logf.InitLogs()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, klog.Background(), "cert-manager")
	if err := run(ctx, *kubeconfig, *clusterNS, *gatewayAPI, *healthAddr, *metricsAddr, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "cert-manager-controller:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, kubeconfig, clusterNS string, gatewayAPI bool, healthAddr, metricsAddr string, workers int) error {
	log := logf.FromContext(ctx)
	factory, err := controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		IssuerOptions:      controller.IssuerOptions{ClusterResourceNamespace: clusterNS},
		// As cert-manager's flags default them: certificates own nothing, requests back
		// off from 1h to 32h after a failure.
		CertificateOptions: controller.CertificateOptions{
			CopiedAnnotationPrefixes:                 []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"},
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
		IngressShimOptions: controller.IngressShimOptions{
			DefaultIssuerKind:  "Issuer",
			DefaultIssuerGroup: "cert-manager.io",
		},
		SchedulerOptions: controller.SchedulerOptions{MaxConcurrentChallenges: 60},
		ConfigOptions:    controller.ConfigOptions{EnableGatewayAPI: gatewayAPI},
	})
	if err != nil {
		return fmt.Errorf("building the controller context: %w", err)
	}
	cctx, err := factory.Build()
	if err != nil {
		return fmt.Errorf("building the controller context: %w", err)
	}

	known := controller.Known()
	var names []string
	for n := range known {
		names = append(names, n)
	}
	sort.Strings(names)
	enabled := map[string]bool{}
	for _, n := range wanted {
		if n == "gateway-shim" && !gatewayAPI {
			continue
		}
		if known[n] == nil {
			return fmt.Errorf("controller %q is not registered (registered: %v)", n, names)
		}
		enabled[n] = true
	}

	g, gctx := errgroup.WithContext(ctx)
	serve := func(addr string, h http.Handler) error {
		if addr == "" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		g.Go(func() error {
			<-gctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx) //nolint:contextcheck // the group's context is done
		})
		g.Go(func() error {
			if err := srv.Serve(ln); err != http.ErrServerClosed {
				return err
			}
			return nil
		})
		return nil
	}
	health := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }
	health.HandleFunc("/livez", ok)
	health.HandleFunc("/readyz", ok)
	if err := serve(healthAddr, health); err != nil {
		return fmt.Errorf("health listener: %w", err)
	}
	if metricsAddr != "" {
		ln, err := net.Listen("tcp", metricsAddr)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		srv := cctx.Metrics.NewServer(ln)
		g.Go(func() error {
			<-gctx.Done()
			return srv.Close()
		})
		g.Go(func() error {
			if err := srv.Serve(ln); err != http.ErrServerClosed {
				return err
			}
			return nil
		})
	}

	for _, n := range names {
		if !enabled[n] {
			continue
		}
		iface, err := known[n](factory)
		if err != nil {
			return fmt.Errorf("controller %s: %w", n, err)
		}
		log.Info("starting controller", "controller", n)
		g.Go(func() error { return iface.Run(workers, gctx) })
	}
	cctx.SharedInformerFactory.Start(gctx.Done())
	cctx.KubeSharedInformerFactory.Start(gctx.Done())
	cctx.HTTP01ResourceMetadataInformersFactory.Start(gctx.Done())
	if gatewayAPI {
		cctx.GWShared.Start(gctx.Done())
	}
	err = g.Wait()
	if gatewayAPI {
		cctx.GWShared.Shutdown()
	}
	cctx.HTTP01ResourceMetadataInformersFactory.Shutdown()
	cctx.KubeSharedInformerFactory.Shutdown()
	cctx.SharedInformerFactory.Shutdown()
	return err
}
