// Command nodeagent runs the callback-operator's local node agent (test/nodeagent) on its
// own, against the cluster of a kubeconfig: it registers a Node and runs the pods bound to
// it as local processes, one network namespace each. `make dev` and the end-to-end tests
// run the same agent in-process through test/localcluster; this command is for trying the
// agent against a control plane started some other way. Needs root.
//
//	nodeagent --kubeconfig=/path/kubeconfig \
//	  --image ghcr.io/imcallback/callback-operator=/work/main/bin \
//	  --image gcr.io/knative-releases/knative.dev/eventing/cmd/event_display=/work/main/bin/demosink
//
// The cluster's Service range (--service-cluster-ip-range) should be the range the agent
// prints: Services outside it are not proxied.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/imcallback/callback-operator/test/nodeagent"
)

func main() {
	images := nodeagent.ImageMap{}
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster (an admin user)")
	nodeName := flag.String("node-name", "local-node", "name of the Node to register")
	logDir := flag.String("log-dir", ".dev/logs", "directory for the containers' output, <namespace>_<pod>_<container>.log")
	shutdownGrace := flag.Duration("shutdown-grace", 5*time.Second, "longest grace period for pods when the agent stops")
	flag.Var(images, "image", "image=path: run containers of this image (repository, or full reference) from this directory (command[0] looked up by base name) or program (the entrypoint); repeatable")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	if *kubeconfig == "" {
		log.Fatal("--kubeconfig (or KUBECONFIG) is required")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("reading %s: %v", *kubeconfig, err)
	}
	slot, err := nodeagent.AcquireSlot(log.Printf)
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := slot.Release(); err != nil {
			log.Printf("cleaning up: %v", err)
		}
	}()
	log.Printf("slot %d: pod addresses %s, Service addresses %s (the API server's --service-cluster-ip-range should be this)",
		slot.Index, slot.PodCIDR(), slot.ServiceCIDR())
	agent, err := nodeagent.New(nodeagent.Options{
		Config: cfg, Slot: slot, NodeName: *nodeName, Images: images, LogDir: *logDir,
		ShutdownGrace: *shutdownGrace, Logf: log.Printf,
	})
	if err != nil {
		log.Print(err)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, nil); err != nil {
		log.Print(err)
		stop()
		_ = slot.Release()
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, "node agent stopped; its pods' processes, namespaces and links are gone")
}
