package localcluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
	"time"

	"github.com/imcallback/callback-operator/internal/ociimage"
)

// NATSOptions configure a NATS JetStream cluster on the local cluster, as users run it with
// the NATS Helm chart: a StatefulSet of servers routed to each other through a headless
// Service, JetStream on file storage, and a client Service.
type NATSOptions struct {
	// Namespace to install into (created if missing). Required.
	Namespace string
	// Name of the StatefulSet and the client Service (default "nats"); the headless Service
	// is Name-headless.
	Name string
	// Replicas is the number of servers (default 3: an R3 stream survives one lost server).
	Replicas int
	// SyncAlways sets JetStream's sync_interval to always: every acknowledged message is
	// fsynced before the PubAck. Off, JetStream syncs every 2 minutes and relies on the other
	// replicas for what a crash loses in between.
	SyncAlways bool
	// StorageClassName, when set, keeps each server's store on a PersistentVolumeClaim of
	// that class (as the NATS chart does); empty keeps it on an emptyDir, which a deleted pod
	// loses (the stream's other replicas then catch the new server up).
	StorageClassName string
}

// NATS is a running JetStream cluster.
type NATS struct {
	Namespace, Name string
	Replicas        int
	// URL is the client Service's in-cluster URL.
	URL string
	// Image is the server image the pods run.
	Image string
}

// PodName is the StatefulSet pod of server i.
func (n *NATS) PodName(i int) string { return fmt.Sprintf("%s-%d", n.Name, i) }

var natsManifest = template.Must(template.New("nats").Parse(`
apiVersion: v1
kind: ConfigMap
metadata: {name: {{.Name}}-config, namespace: {{.Namespace}}}
data:
  nats.conf: |
    server_name: $POD_NAME
    pid_file: /tmp/nats.pid
    listen: 0.0.0.0:4222
    http: 0.0.0.0:8222
    # As the NATS chart: clients are moved to the other servers over 30 s (the least
    # nats-server accepts) before a terminating server stops.
    lame_duck_grace_period: 10s
    lame_duck_duration: 30s
    jetstream {
      store_dir: /data
      max_memory_store: 32MB
      max_file_store: 512MB
{{- if .SyncAlways}}
      sync_interval: always
{{- end}}
    }
    cluster {
      name: {{.Name}}
      listen: 0.0.0.0:6222
      routes: [{{range $i, $r := .Routes}}{{if $i}}, {{end}}{{$r}}{{end}}]
      connect_retries: 120
    }
---
apiVersion: v1
kind: Service
metadata: {name: {{.Name}}-headless, namespace: {{.Namespace}}, labels: {app.kubernetes.io/name: {{.Name}}}}
spec:
  clusterIP: None
  # The servers find each other before they are ready (a JetStream cluster needs a quorum
  # to become ready at all).
  publishNotReadyAddresses: true
  selector: {app.kubernetes.io/name: {{.Name}}}
  ports:
  - {name: client, port: 4222}
  - {name: cluster, port: 6222}
  - {name: monitor, port: 8222}
---
apiVersion: v1
kind: Service
metadata: {name: {{.Name}}, namespace: {{.Namespace}}, labels: {app.kubernetes.io/name: {{.Name}}}}
spec:
  selector: {app.kubernetes.io/name: {{.Name}}}
  ports:
  - {name: client, port: 4222}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: {{.Name}}, namespace: {{.Namespace}}, labels: {app.kubernetes.io/name: {{.Name}}}}
spec:
  serviceName: {{.Name}}-headless
  replicas: {{.Replicas}}
  podManagementPolicy: Parallel
  selector:
    matchLabels: {app.kubernetes.io/name: {{.Name}}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: {{.Name}}}
    spec:
      enableServiceLinks: false
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 60
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: nats
        image: {{.Image}}
        imagePullPolicy: Never
        args: [--config, /etc/nats/nats.conf]
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        ports:
        - {name: client, containerPort: 4222}
        - {name: cluster, containerPort: 6222}
        - {name: monitor, containerPort: 8222}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        # As the NATS chart probes: started once JetStream is enabled, ready once the server
        # (not yet the meta leader) answers, alive while JetStream is.
        startupProbe:
          httpGet: {path: "/healthz?js-enabled-only=true", port: monitor}
          periodSeconds: 2
          failureThreshold: 90
        readinessProbe:
          httpGet: {path: "/healthz?js-server-only=true", port: monitor}
          periodSeconds: 2
        livenessProbe:
          httpGet: {path: "/healthz?js-enabled-only=true", port: monitor}
          periodSeconds: 10
          failureThreshold: 3
        lifecycle:
          preStop:
            exec: {command: [/nats-server, --signal, "ldm=/tmp/nats.pid"]}
        resources:
          requests: {cpu: 50m, memory: 64Mi}
          limits: {memory: 512Mi}
        volumeMounts:
        - {name: config, mountPath: /etc/nats, readOnly: true}
        - {name: data, mountPath: /data}
        - {name: tmp, mountPath: /tmp}
      volumes:
      - name: config
        configMap: {name: {{.Name}}-config}
      - name: tmp
        emptyDir: {medium: Memory, sizeLimit: 1Mi}
{{- if not .StorageClassName}}
      - name: data
        emptyDir: {sizeLimit: 1Gi}
{{- else}}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: {{.StorageClassName}}
      resources: {requests: {storage: 1Gi}}
{{- end}}
`))

// InstallNATS builds (once, cached: hack/nats.sh) nats-server, imports its image and runs a
// JetStream cluster, returning once every server is ready.
func (c *Cluster) InstallNATS(ctx context.Context, opts NATSOptions) (*NATS, error) {
	if opts.Namespace == "" {
		return nil, fmt.Errorf("NATS: a namespace is required")
	}
	if opts.Name == "" {
		opts.Name = "nats"
	}
	if opts.Replicas == 0 {
		opts.Replicas = 3
	}
	dir, err := assets(ctx, c.repoRoot, "LOCALCLUSTER_NATS_ASSETS", "nats.sh")
	if err != nil {
		return nil, fmt.Errorf("building nats-server: %w", err)
	}
	image := "localhost/callback-operator/nats:" + markerValue(dir, "nats-server")
	archive := c.paths.join("images", "nats.tar")
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return nil, err
	}
	if err := ociimage.WriteArchive(archive, ociimage.Program(image, filepath.Join(dir, "nats-server"))); err != nil {
		return nil, fmt.Errorf("NATS image: %w", err)
	}
	if err := c.ImportImages(ctx, archive); err != nil {
		return nil, err
	}
	n := &NATS{Namespace: opts.Namespace, Name: opts.Name, Replicas: opts.Replicas, Image: image,
		URL: fmt.Sprintf("nats://%s.%s.svc.cluster.local:4222", opts.Name, opts.Namespace)}
	routes := make([]string, opts.Replicas)
	for i := range routes {
		routes[i] = fmt.Sprintf("nats://%s.%s-headless.%s.svc.cluster.local:6222", n.PodName(i), opts.Name, opts.Namespace)
	}
	var b bytes.Buffer
	if err := natsManifest.Execute(&b, map[string]any{
		"Namespace": opts.Namespace, "Name": opts.Name, "Replicas": opts.Replicas, "Image": image,
		"SyncAlways": opts.SyncAlways, "StorageClassName": opts.StorageClassName, "Routes": routes,
	}); err != nil {
		return nil, err
	}
	ns := fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n---\n", opts.Namespace)
	if err := c.Apply(ctx, append([]byte(ns), b.Bytes()...)); err != nil {
		return nil, fmt.Errorf("NATS: %w", err)
	}
	if err := c.WaitStatefulSet(ctx, opts.Namespace, opts.Name, 3*time.Minute); err != nil {
		return nil, fmt.Errorf("NATS: %w", err)
	}
	return n, nil
}

// WaitStatefulSet waits until every replica of a StatefulSet is ready and current.
func (c *Cluster) WaitStatefulSet(ctx context.Context, ns, name string, timeout time.Duration) error {
	cmd := c.Kubectl(ctx, "rollout", "status", "statefulset/"+name, "-n", ns, "--timeout="+timeout.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("statefulset %s/%s not ready within %s: %w: %s", ns, name, timeout, err, out)
	}
	return nil
}
