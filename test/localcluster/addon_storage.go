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

// The cluster's default StorageClass, as kind ships one: a dynamic provisioner of
// directories on the node (hack/tools/local-provisioner, built by hack/local-provisioner.sh),
// all under the cluster's own directory, so that Stop removes every volume with it.
const (
	ProvisionerImage = "localhost/callback-operator/local-provisioner:v1"
	// StorageClassName is the default StorageClass's name, as kind names its own.
	StorageClassName = "standard"
	provisionerName  = "callback-operator.local/local-path"
)

var storageManifest = template.Must(template.New("storage").Parse(`
apiVersion: v1
kind: ServiceAccount
metadata: {name: local-provisioner, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "callback-operator:local-provisioner"}
rules:
- apiGroups: [""]
  resources: [persistentvolumes]
  verbs: [get, list, watch, create, delete, patch, update]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, list, watch, update]
- apiGroups: [storage.k8s.io]
  resources: [storageclasses]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch, update]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "callback-operator:local-provisioner"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "callback-operator:local-provisioner"}
subjects:
- {kind: ServiceAccount, name: local-provisioner, namespace: kube-system}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: {{.Class}}
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: {{.Provisioner}}
reclaimPolicy: Delete
# The directory is made on the node the scheduler chose for the claim's first pod.
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: local-provisioner
  namespace: kube-system
  labels: {app: local-provisioner}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector:
    matchLabels: {app: local-provisioner}
  template:
    metadata:
      labels: {app: local-provisioner}
    spec:
      serviceAccountName: local-provisioner
      priorityClassName: system-cluster-critical
      securityContext:
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: provisioner
        image: {{.Image}}
        imagePullPolicy: Never
        args: [--name={{.Provisioner}}, --root={{.Root}}]
        # Root: it makes and removes directories that pods of any user write into.
        securityContext:
          runAsUser: 0
          runAsGroup: 0
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL], add: [CHOWN, DAC_OVERRIDE, FOWNER]}
        resources:
          requests: {cpu: 10m, memory: 32Mi}
          limits: {memory: 128Mi}
        volumeMounts:
        - {name: storage, mountPath: {{.Root}}}
      volumes:
      - name: storage
        hostPath: {path: {{.Root}}, type: Directory}
`))

// StorageDir is the node's directory under which the provisioner makes volumes.
func (c *Cluster) StorageDir() string { return c.paths.join("storage") }

// installStorage builds (once, cached) and imports the provisioner's image and applies it
// with its default StorageClass.
func (c *Cluster) installStorage(ctx context.Context) error {
	dir, err := assets(ctx, c.repoRoot, "LOCALCLUSTER_PROVISIONER", "local-provisioner.sh")
	if err != nil {
		return err
	}
	bin := filepath.Join(dir, "local-provisioner")
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("local-provisioner missing (hack/local-provisioner.sh builds it): %w", err)
	}
	archive := c.paths.join("images", "local-provisioner.tar")
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		return err
	}
	spec := ociimage.Program(ProvisionerImage, bin)
	spec.User = "0:0"
	if err := ociimage.WriteArchive(archive, spec); err != nil {
		return fmt.Errorf("the provisioner's image: %w", err)
	}
	if err := c.ImportImages(ctx, archive); err != nil {
		return err
	}
	if err := os.MkdirAll(c.StorageDir(), 0o755); err != nil {
		return err
	}
	var b bytes.Buffer
	if err := storageManifest.Execute(&b, map[string]string{
		"Image": ProvisionerImage, "Class": StorageClassName, "Provisioner": provisionerName, "Root": c.StorageDir(),
	}); err != nil {
		return err
	}
	return c.Apply(ctx, b.Bytes())
}

// waitStorage waits for the provisioner to run.
func (c *Cluster) waitStorage(ctx context.Context) error {
	return c.WaitDeployment(ctx, "kube-system", "local-provisioner", 2*time.Minute)
}
