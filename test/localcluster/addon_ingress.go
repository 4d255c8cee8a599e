package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/imcallback/callback-operator/internal/ociimage"
)

// The ingress add-on: Traefik as the ingress controller (IngressClass traefik) and the
// Gateway API implementation (GatewayClass traefik, Gateway ingress/public with one HTTPS
// listener), and cert-manager with a self-signed root and the CA ClusterIssuer local-ca that
// issues the Ingresses' and the Gateway's certificates. InstallIngress installs it on a
// running cluster; nothing of it runs unless asked for.
const (
	// IngressClassName is Traefik's IngressClass.
	IngressClassName = "traefik"
	// GatewayClassName is Traefik's GatewayClass.
	GatewayClassName = "traefik"
	// IngressNamespace holds Traefik and the Gateway.
	IngressNamespace = "ingress"
	// GatewayName is the Gateway in IngressNamespace; GatewayListener its HTTPS listener,
	// for the names under GatewayDomain (a wildcard certificate cert-manager issues).
	GatewayName     = "public"
	GatewayListener = "https"
	GatewayDomain   = "gateway.callbacks.test"
	// CertManagerNamespace holds cert-manager and the root CA's Secret.
	CertManagerNamespace = "cert-manager"
	// CAIssuer is the ClusterIssuer of the local CA; an Ingress annotated
	// cert-manager.io/cluster-issuer: local-ca gets its certificate from it.
	CAIssuer = "local-ca"
	// TraefikHTTPSPort is the port of Traefik's Service that serves HTTPS (Ingresses and the
	// Gateway's listener); TraefikHTTPPort serves plain HTTP for the Ingresses.
	TraefikHTTPSPort = 443
	TraefikHTTPPort  = 80
)

// IngressOptions say how to install the ingress add-on.
type IngressOptions struct {
	// TraefikDir holds the traefik binary; default $LOCALCLUSTER_TRAEFIK, else what
	// hack/traefik.sh prints (building it once).
	TraefikDir string
	// CertManagerDir holds cert-manager-controller and crds/; default
	// $LOCALCLUSTER_CERT_MANAGER, else what hack/cert-manager.sh prints.
	CertManagerDir string
	// Listen is the host address forwarded to Traefik's HTTPS port; default 127.0.0.1:0.
	Listen string
}

// Ingress is the installed add-on.
type Ingress struct {
	// HTTPSAddr is the host address forwarded to Traefik's HTTPS entry point (Ingresses
	// and the Gateway's listener): `curl --resolve <host>:<port>:127.0.0.1`.
	HTTPSAddr netip.AddrPort
	// ServiceIP is the ClusterIP of Traefik's Service (ports 80 and 443), inside the node.
	ServiceIP netip.Addr
	// CACert is the local CA's certificate (PEM), the only root a client needs.
	CACert []byte
	// TraefikVersion and CertManagerVersion are the versions installed.
	TraefikVersion, CertManagerVersion string
}

var (
	gatewayGVR       = schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}
	clusterIssuerGVR = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "clusterissuers"}
	certificateGVR   = schema.GroupVersionResource{Group: "cert-manager.io", Version: "v1", Resource: "certificates"}
)

// InstallIngress installs Traefik, cert-manager, the Gateway API CRDs (sigs.k8s.io/gateway-api
// of the operator's go.mod, standard channel), the IngressClass, the GatewayClass, the
// Gateway and the CA, and waits until the Gateway is Programmed and the CA issues.
func (c *Cluster) InstallIngress(ctx context.Context, o IngressOptions) (*Ingress, error) {
	start := time.Now()
	var err error
	if o.TraefikDir == "" {
		if o.TraefikDir, err = assets(ctx, c.repoRoot, "LOCALCLUSTER_TRAEFIK", "traefik.sh"); err != nil {
			return nil, err
		}
	}
	if o.CertManagerDir == "" {
		if o.CertManagerDir, err = assets(ctx, c.repoRoot, "LOCALCLUSTER_CERT_MANAGER", "cert-manager.sh"); err != nil {
			return nil, err
		}
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	in := &Ingress{
		TraefikVersion:     markerValue(o.TraefikDir, "traefik"),
		CertManagerVersion: markerValue(o.CertManagerDir, "cert-manager"),
	}
	traefikImage := "localhost/callback-operator/traefik:" + in.TraefikVersion
	certManagerImage := "localhost/callback-operator/cert-manager-controller:" + in.CertManagerVersion

	// Images, from the cached binaries.
	dir := c.paths.join("images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	archive := filepath.Join(dir, "ingress.tar")
	if err := ociimage.WriteArchive(archive,
		ociimage.Program(traefikImage, filepath.Join(o.TraefikDir, "traefik")),
		ociimage.Program(certManagerImage, filepath.Join(o.CertManagerDir, "cert-manager-controller")),
	); err != nil {
		return nil, fmt.Errorf("ingress images: %w", err)
	}
	if err := c.ImportImages(ctx, archive); err != nil {
		return nil, err
	}

	// CRDs: the Gateway API's (standard channel) and cert-manager's, server-side.
	gwCRDs, err := gatewayAPICRDs(ctx, c.repoRoot)
	if err != nil {
		return nil, err
	}
	cmCRDs, err := filepath.Glob(filepath.Join(o.CertManagerDir, "crds", "*.yaml"))
	if err != nil || len(cmCRDs) == 0 {
		return nil, fmt.Errorf("no cert-manager CRDs in %s/crds", o.CertManagerDir)
	}
	var crds bytes.Buffer
	for _, f := range append(gwCRDs, cmCRDs...) {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		crds.WriteString("\n---\n")
		crds.Write(b)
	}
	if err := c.Apply(ctx, crds.Bytes()); err != nil {
		return nil, fmt.Errorf("applying the Gateway API and cert-manager CRDs: %w", err)
	}
	if err := c.waitCRDs(ctx); err != nil {
		return nil, err
	}

	var b bytes.Buffer
	if err := ingressManifest.Execute(&b, map[string]string{
		"TraefikImage": traefikImage, "CertManagerImage": certManagerImage,
		"NS": IngressNamespace, "CMNS": CertManagerNamespace,
		"Class": IngressClassName, "GatewayClass": GatewayClassName, "Gateway": GatewayName,
		"Listener": GatewayListener, "Domain": GatewayDomain, "Issuer": CAIssuer,
	}); err != nil {
		return nil, err
	}
	if err := c.Apply(ctx, b.Bytes()); err != nil {
		return nil, fmt.Errorf("applying the ingress add-on: %w", err)
	}
	for _, d := range [][2]string{{CertManagerNamespace, "cert-manager"}, {IngressNamespace, "traefik"}} {
		if err := c.WaitDeployment(ctx, d[0], d[1], 3*time.Minute); err != nil {
			return nil, err
		}
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	if err := waitCondition(ctx, dyn.Resource(clusterIssuerGVR), CAIssuer, "Ready", 2*time.Minute); err != nil {
		return nil, fmt.Errorf("ClusterIssuer %s: %w (log: kubectl logs -n %s deploy/cert-manager)", CAIssuer, err, CertManagerNamespace)
	}
	if err := waitCondition(ctx, dyn.Resource(certificateGVR).Namespace(IngressNamespace), GatewayName+"-tls", "Ready", 2*time.Minute); err != nil {
		return nil, fmt.Errorf("the Gateway's certificate (gateway-shim): %w", err)
	}
	if err := waitCondition(ctx, dyn.Resource(gatewayGVR).Namespace(IngressNamespace), GatewayName, "Programmed", 2*time.Minute); err != nil {
		return nil, fmt.Errorf("the Gateway %s/%s: %w (log: kubectl logs -n %s deploy/traefik)", IngressNamespace, GatewayName, err, IngressNamespace)
	}
	sec, err := c.Client.CoreV1().Secrets(CertManagerNamespace).Get(ctx, CAIssuer, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("the local CA's Secret: %w", err)
	}
	if in.CACert = sec.Data["tls.crt"]; len(in.CACert) == 0 {
		return nil, fmt.Errorf("the local CA's Secret %s/%s has no tls.crt", CertManagerNamespace, CAIssuer)
	}
	svc, err := c.Client.CoreV1().Services(IngressNamespace).Get(ctx, "traefik", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if in.ServiceIP, err = netip.ParseAddr(svc.Spec.ClusterIP); err != nil {
		return nil, fmt.Errorf("the Service of Traefik has no ClusterIP: %w", err)
	}
	if in.HTTPSAddr, err = c.Forward(o.Listen, netip.AddrPortFrom(in.ServiceIP, TraefikHTTPSPort)); err != nil {
		return nil, fmt.Errorf("forwarding %s to Traefik: %w", o.Listen, err)
	}
	c.logf("local cluster: Traefik %s and cert-manager %s installed after %s; HTTPS on the host at %s",
		in.TraefikVersion, in.CertManagerVersion, time.Since(start).Round(time.Millisecond), in.HTTPSAddr)
	return in, nil
}

// markerValue is key's value in a cache directory's marker, "unknown" without one.
func markerValue(dir, key string) string {
	b, _ := os.ReadFile(filepath.Join(dir, ".complete"))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v
		}
	}
	return "unknown"
}

// gatewayAPICRDs are the standard channel's CRD files of the operator's sigs.k8s.io/gateway-api.
func gatewayAPICRDs(ctx context.Context, repoRoot string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", "sigs.k8s.io/gateway-api")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download sigs.k8s.io/gateway-api: %w", err)
	}
	var m struct{ Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		return nil, fmt.Errorf("go mod download sigs.k8s.io/gateway-api: no module directory (%s): %w", m.Error, err)
	}
	files, err := filepath.Glob(filepath.Join(m.Dir, "config", "crd", "standard", "gateway.networking.k8s.io_*.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no Gateway API CRDs in %s/config/crd/standard", m.Dir)
	}
	sort.Strings(files)
	return files, nil
}

// waitCondition waits until the object's status condition typ is True.
func waitCondition(ctx context.Context, r dynamic.ResourceInterface, name, typ string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "not found"
	for {
		obj, err := r.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			last = typ + " not reported"
			conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
			for _, x := range conds {
				m, _ := x.(map[string]any)
				if m["type"] != typ {
					continue
				}
				if m["status"] == "True" {
					return nil
				}
				last = fmt.Sprintf("%s=%v %v: %v", typ, m["status"], m["reason"], m["message"])
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not %s after %s: %s: %w", name, typ, timeout, last, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// The add-on's objects. Traefik: entry points web (:8000) and websecure (:8443, TLS) behind
// the Service's ports 80 and 443, the Ingress provider for class traefik and the Gateway
// provider (a listener's port is the entry point's), nothing that calls home. cert-manager:
// the controller of hack/tools/cert-manager, no webhook, so every object below spells out
// what the webhook would default.
var ingressManifest = template.Must(template.New("ingress").Parse(`
apiVersion: v1
kind: Namespace
metadata: {name: {{.NS}}, labels: {pod-security.kubernetes.io/enforce: restricted}}
---
apiVersion: v1
kind: Namespace
metadata: {name: {{.CMNS}}, labels: {pod-security.kubernetes.io/enforce: restricted}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: traefik, namespace: {{.NS}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: traefik}
rules:
- apiGroups: [""]
  resources: [services, secrets, configmaps, nodes, namespaces]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses, ingressclasses]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses/status]
  verbs: [update]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gatewayclasses, gateways, httproutes, grpcroutes, referencegrants, backendtlspolicies, tcproutes, tlsroutes]
  verbs: [get, list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gatewayclasses/status, gateways/status, httproutes/status, grpcroutes/status, backendtlspolicies/status, tcproutes/status, tlsroutes/status]
  verbs: [update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: traefik}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: traefik}
subjects:
- {kind: ServiceAccount, name: traefik, namespace: {{.NS}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: traefik, namespace: {{.NS}}, labels: {app.kubernetes.io/name: traefik}}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: traefik}
  template:
    metadata:
      labels: {app.kubernetes.io/name: traefik}
    spec:
      serviceAccountName: traefik
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: traefik
        image: {{.TraefikImage}}
        imagePullPolicy: Never
        args:
        - --global.checkNewVersion=false
        - --global.sendAnonymousUsage=false
        - --log.level=INFO
        - --entryPoints.web.address=:8000
        - --entryPoints.websecure.address=:8443
        - --entryPoints.websecure.http.tls=true
        - --entryPoints.traefik.address=:9000
        - --ping=true
        - --ping.entryPoint=traefik
        - --providers.kubernetesingress=true
        - --providers.kubernetesingress.ingressClass={{.Class}}
        - --providers.kubernetesingress.ingressEndpoint.publishedService={{.NS}}/traefik
        - --providers.kubernetesgateway=true
        - --providers.kubernetesgateway.statusAddress.service.name=traefik
        - --providers.kubernetesgateway.statusAddress.service.namespace={{.NS}}
        ports:
        - {name: web, containerPort: 8000}
        - {name: websecure, containerPort: 8443}
        - {name: traefik, containerPort: 9000}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        readinessProbe:
          httpGet: {path: /ping, port: 9000}
          periodSeconds: 2
        livenessProbe:
          httpGet: {path: /ping, port: 9000}
          periodSeconds: 10
        resources:
          requests: {cpu: 50m, memory: 64Mi}
          limits: {memory: 256Mi}
        volumeMounts:
        - {name: tmp, mountPath: /tmp}
      volumes:
      - name: tmp
        emptyDir: {}
---
apiVersion: v1
kind: Service
metadata: {name: traefik, namespace: {{.NS}}, labels: {app.kubernetes.io/name: traefik}}
spec:
  selector: {app.kubernetes.io/name: traefik}
  ports:
  - {name: web, port: 80, targetPort: web}
  - {name: websecure, port: 443, targetPort: websecure}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: {{.Class}}}
spec:
  controller: traefik.io/ingress-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: {{.GatewayClass}}}
spec:
  controllerName: traefik.io/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: {{.Gateway}}
  namespace: {{.NS}}
  annotations:
    # gateway-shim: a certificate for the listener's hostname, from the local CA.
    cert-manager.io/cluster-issuer: {{.Issuer}}
spec:
  gatewayClassName: {{.GatewayClass}}
  listeners:
  - name: {{.Listener}}
    # Traefik binds a listener to the entry point of its port: websecure.
    port: 8443
    protocol: HTTPS
    hostname: "*.{{.Domain}}"
    tls:
      mode: Terminate
      certificateRefs:
      - {group: "", kind: Secret, name: {{.Gateway}}-tls}
    allowedRoutes:
      namespaces: {from: All}
      kinds:
      - {group: gateway.networking.k8s.io, kind: HTTPRoute}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: cert-manager, namespace: {{.CMNS}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: cert-manager-controller}
rules:
- apiGroups: [cert-manager.io]
  resources: [certificates, certificaterequests, issuers, clusterissuers]
  verbs: [get, list, watch, create, update, patch, delete, deletecollection]
- apiGroups: [cert-manager.io]
  resources: [certificates/status, certificaterequests/status, issuers/status, clusterissuers/status, certificates/finalizers, certificaterequests/finalizers]
  verbs: [update, patch]
- apiGroups: [cert-manager.io]
  resources: [signers]
  verbs: [approve]
- apiGroups: [acme.cert-manager.io]
  resources: [orders, challenges]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [""]
  resources: [pods, services]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [get, list, watch]
- apiGroups: [gateway.networking.k8s.io]
  resources: [gateways, httproutes, listenersets]
  verbs: [get, list, watch]
- apiGroups: [certificates.k8s.io]
  resources: [certificatesigningrequests]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: cert-manager-controller}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cert-manager-controller}
subjects:
- {kind: ServiceAccount, name: cert-manager, namespace: {{.CMNS}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cert-manager, namespace: {{.CMNS}}, labels: {app.kubernetes.io/name: cert-manager}}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: cert-manager}
  template:
    metadata:
      labels: {app.kubernetes.io/name: cert-manager}
    spec:
      serviceAccountName: cert-manager
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: controller
        image: {{.CertManagerImage}}
        imagePullPolicy: Never
        args: [--cluster-resource-namespace={{.CMNS}}, --v=2]
        ports:
        - {name: metrics, containerPort: 9402}
        - {name: health, containerPort: 9403}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        readinessProbe:
          httpGet: {path: /readyz, port: health}
          periodSeconds: 2
        livenessProbe:
          httpGet: {path: /livez, port: health}
          periodSeconds: 10
        resources:
          requests: {cpu: 20m, memory: 64Mi}
          limits: {memory: 256Mi}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: selfsigned}
spec:
  selfSigned: {}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: {{.Issuer}}, namespace: {{.CMNS}}}
spec:
  isCA: true
  commonName: callback-operator local CA
  secretName: {{.Issuer}}
  duration: 8760h
  renewBefore: 720h
  privateKey: {algorithm: ECDSA, size: 256, encoding: PKCS1, rotationPolicy: Always}
  usages: [cert sign, crl sign, digital signature]
  issuerRef: {group: cert-manager.io, kind: ClusterIssuer, name: selfsigned}
---
apiVersion: cert-manager.io/v1
kind: ClusterIssuer
metadata: {name: {{.Issuer}}}
spec:
  ca: {secretName: {{.Issuer}}}
`))
