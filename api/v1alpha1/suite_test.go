package v1alpha1_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/imcallback/callback-operator/internal/testenv"
)

// One API server for the package; every test works in a namespace of its own.
var (
	env       *testenv.Env
	cfg       *rest.Config
	k8sClient client.Client
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run the tests with `make test`, which builds kube-apiserver and etcd")
		return 1
	}
	var err error
	if env, err = testenv.Start(filepath.Join("..", "..")); err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}()
	cfg, k8sClient = env.Config, env.Client
	return m.Run()
}

// newNamespace creates a namespace for one test and deletes it when the test ends.
func newNamespace(t *testing.T) string { return env.Namespace(t, "api-test-") }
