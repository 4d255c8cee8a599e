// Package testenv boots the API server the envtest suites share: a real kube-apiserver and
// etcd (controller-runtime's envtest, binaries from hack/control-plane.sh) with the
// project's CRDs installed, and a client that knows the project's types.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// Env is a running API server.
type Env struct {
	Config *rest.Config
	Client client.Client
	Scheme *runtime.Scheme
	env    *envtest.Environment
}

// Start boots the API server and installs the CRDs of config/crd/bases (repoRoot is the
// path of the checkout from the calling package) and any extra ones.
func Start(repoRoot string, extra ...*apiextensionsv1.CustomResourceDefinition) (*Env, error) {
	return StartWith(repoRoot, nil, extra...)
}

// StartWith is Start that also installs the CRDs of crdPaths (files or directories, such as
// GatewayAPICRDs).
func StartWith(repoRoot string, crdPaths []string, extra ...*apiextensionsv1.CustomResourceDefinition) (*Env, error) {
	e := &Env{Scheme: runtime.NewScheme(), env: &envtest.Environment{
		CRDDirectoryPaths:     append([]string{filepath.Join(repoRoot, "config", "crd", "bases")}, crdPaths...),
		CRDs:                  extra,
		ErrorIfCRDPathMissing: true,
	}}
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cbv1.AddToScheme, gwv1.Install} {
		if err := add(e.Scheme); err != nil {
			return nil, err
		}
	}
	var err error
	if e.Config, err = e.env.Start(); err != nil {
		// A failed start (say, an invalid CRD) can leave etcd and kube-apiserver running.
		return nil, errors.Join(err, e.env.Stop())
	}
	if e.Client, err = client.New(e.Config, client.Options{Scheme: e.Scheme}); err != nil {
		return nil, errors.Join(err, e.env.Stop())
	}
	return e, nil
}

// GatewayAPICRDs is the directory of the Gateway API's standard-channel CRDs in the module
// cache, at the version go.mod requires: what a user installs, not a copy.
func GatewayAPICRDs() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", gatewayAPIModule).Output()
	if err != nil {
		return "", fmt.Errorf("locating %s: %w", gatewayAPIModule, err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard")
	if _, err := os.Stat(dir); err != nil {
		return "", err
	}
	return dir, nil
}

const gatewayAPIModule = "sigs.k8s.io/gateway-api"

// InstallCRDs installs the CRDs of paths into the running API server and waits until they
// are served.
func (e *Env) InstallCRDs(paths ...string) error {
	_, err := envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{Paths: paths, ErrorIfPathMissing: true})
	return err
}

// Stop stops the API server and etcd.
func (e *Env) Stop() error { return e.env.Stop() }

// Namespace creates a namespace for one test (its name starts with prefix) and deletes it
// when the test ends.
func (e *Env) Namespace(t testing.TB, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	if err := e.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	t.Cleanup(func() { _ = e.Client.Delete(context.Background(), ns) })
	return ns.Name
}

// User adds a user the API server authenticates (with no permissions until RBAC grants some)
// and returns a client configuration that acts as that user.
func (e *Env) User(name string, groups ...string) (*rest.Config, error) {
	u, err := e.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, err
	}
	return u.Config(), nil
}
