package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"
)

// Where config/default installs the operator (its namespace and name prefix).
const (
	OperatorNamespace = "callback-operator-system"
	ManagerDeployment = "callback-operator-controller-manager"
)

// OperatorOptions say how to install the operator.
type OperatorOptions struct {
	// Image is the operator's image (IMG), imported into the node beforehand.
	Image string
	// ManagerArgs are appended to the manager container's arguments.
	ManagerArgs []string
}

// InstallOperator installs the operator the way a user does with `make deploy IMG=...`: the
// checkout's config/ with the image set on config/manager (a copy: the checkout is not
// edited), `kustomize build config/default`, applied. It waits until the CRD is served and
// the manager is available.
func (c *Cluster) InstallOperator(ctx context.Context, o OperatorOptions) error {
	start := time.Now()
	yamlDocs, err := c.OperatorManifests(o)
	if err != nil {
		return err
	}
	if err := c.Apply(ctx, yamlDocs); err != nil {
		return fmt.Errorf("applying config/default: %w", err)
	}
	if err := c.waitCRDs(ctx); err != nil {
		return err
	}
	if err := c.WaitDeployment(ctx, OperatorNamespace, ManagerDeployment, 2*time.Minute); err != nil {
		return err
	}
	c.logf("local cluster: operator %s installed and available after %s", o.Image, time.Since(start).Round(time.Millisecond))
	return nil
}

// OperatorManifests is what InstallOperator applies.
func (c *Cluster) OperatorManifests(o OperatorOptions) ([]byte, error) {
	dir, err := os.MkdirTemp(c.paths.dir, "operator-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := copyTree(filepath.Join(c.repoRoot, "config"), filepath.Join(dir, "config")); err != nil {
		return nil, err
	}
	// What `kustomize edit set image controller=IMG` does in config/manager.
	managerK := filepath.Join(dir, "config", "manager", "kustomization.yaml")
	var k types.Kustomization
	b, err := os.ReadFile(managerK)
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", managerK, err)
	}
	repo, tag := splitImage(o.Image)
	img := types.Image{Name: "controller", NewName: repo, NewTag: tag}
	replaced := false
	for i := range k.Images {
		if k.Images[i].Name == "controller" {
			k.Images[i], replaced = img, true
		}
	}
	if !replaced {
		k.Images = append(k.Images, img)
	}
	if b, err = yaml.Marshal(k); err != nil {
		return nil, err
	}
	if err := os.WriteFile(managerK, b, 0o644); err != nil {
		return nil, err
	}

	root := filepath.Join(dir, "config", "default")
	if len(o.ManagerArgs) > 0 {
		root = filepath.Join(dir, "overlay")
		var patch strings.Builder
		for _, a := range o.ManagerArgs {
			q, _ := yaml.Marshal(a)
			fmt.Fprintf(&patch, "- {op: add, path: /spec/template/spec/containers/0/args/-, value: %s}\n", strings.TrimSpace(string(q)))
		}
		overlay := types.Kustomization{
			TypeMeta:  types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
			Resources: []string{"../config/default"},
			Patches: []types.Patch{{
				Target: &types.Selector{ResId: resid.ResId{Gvk: resid.Gvk{Kind: "Deployment"}}, LabelSelector: "control-plane=controller-manager"},
				Patch:  patch.String(),
			}},
		}
		if b, err = yaml.Marshal(overlay); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(root, "kustomization.yaml"), b, 0o644); err != nil {
			return nil, err
		}
	}
	// As the kustomize command orders its output: namespaces and CRDs first.
	kopts := krusty.MakeDefaultOptions()
	kopts.Reorder = krusty.ReorderOptionLegacy
	res, err := krusty.MakeKustomizer(kopts).Run(filesys.MakeFsOnDisk(), root)
	if err != nil {
		return nil, fmt.Errorf("kustomize build config/default: %w", err)
	}
	return res.AsYaml()
}

// splitImage splits an image reference into repository and tag ("latest" if none).
func splitImage(ref string) (repo, tag string) {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i], ref[i+1:]
	}
	return ref, "latest"
}

func (c *Cluster) waitCRDs(ctx context.Context) error {
	cs, err := apiextensionsclient.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		list, err := cs.ApiextensionsV1().CustomResourceDefinitions().List(ctx, metav1.ListOptions{})
		if err == nil && allEstablished(list.Items) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the operator's CRDs are not established: %w", errors.Join(err, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func allEstablished(crds []apiextensionsv1.CustomResourceDefinition) bool {
	if len(crds) == 0 {
		return false
	}
	for _, crd := range crds {
		ok := false
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}
