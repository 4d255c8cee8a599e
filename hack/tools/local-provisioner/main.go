// Command local-provisioner is the local cluster's dynamic provisioner: for every claim of
// its StorageClass it makes a directory under --root on the node the claim's pod was
// scheduled to and a hostPath PersistentVolume bound to that node; when the volume is
// released it deletes the directory. It is what kind's local-path provisioner does, without
// helper pods: it runs on the node itself with --root mounted at the same path, so it
// creates and removes the directories directly.
//
// It is a tools module of its own (hack/tools/local-provisioner/go.mod), built by
// hack/local-provisioner.sh, so that its Kubernetes libraries never move the operator's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

func main() {
	name := flag.String("name", "callback-operator.local/local-path", "provisioner name (the StorageClass's provisioner field)")
	root := flag.String("root", "", "directory on the node under which volumes are made (mounted at the same path in this pod)")
	flag.Parse()
	if !filepath.IsAbs(*root) {
		fmt.Fprintln(os.Stderr, "local-provisioner: --root must be an absolute path")
		os.Exit(2)
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "local-provisioner:", err)
		os.Exit(1)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "local-provisioner:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	pc := controller.NewProvisionController(ctx, cs, *name, &dirProvisioner{root: filepath.Clean(*root)},
		controller.LeaderElection(false), // one replica on one node
		controller.MetricsPort(0),
	)
	klog.InfoS("local-provisioner running", "name", *name, "root", *root)
	pc.Run(ctx)
}

// dirProvisioner makes one directory per volume, named after the PersistentVolume.
type dirProvisioner struct{ root string }

func (p *dirProvisioner) Provision(_ context.Context, o controller.ProvisionOptions) (*corev1.PersistentVolume, controller.ProvisioningState, error) {
	if o.SelectedNodeName == "" {
		// The StorageClass binds on first consumer: the scheduler chooses the node first.
		return nil, controller.ProvisioningFinished, errors.New("no node selected: the StorageClass must use volumeBindingMode WaitForFirstConsumer")
	}
	for _, m := range o.PVC.Spec.AccessModes {
		if m != corev1.ReadWriteOnce && m != corev1.ReadWriteOncePod {
			return nil, controller.ProvisioningFinished, fmt.Errorf("access mode %s is not supported: a directory on one node is ReadWriteOnce", m)
		}
	}
	dir := filepath.Join(p.root, o.PVName)
	if err := os.Mkdir(dir, 0o777); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, controller.ProvisioningInBackground, err
	}
	// Mode 0777 despite the umask: the pods run as users of their own, and a hostPath
	// volume gets no fsGroup ownership change.
	if err := os.Chmod(dir, 0o777); err != nil {
		return nil, controller.ProvisioningInBackground, err
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if o.StorageClass.ReclaimPolicy != nil {
		reclaim = *o.StorageClass.ReclaimPolicy
	}
	hostPathType := corev1.HostPathDirectory
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: o.PVName},
		Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			AccessModes:                   o.PVC.Spec.AccessModes,
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: o.PVC.Spec.Resources.Requests[corev1.ResourceStorage]},
			MountOptions:                  o.StorageClass.MountOptions,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{o.SelectedNodeName},
				}}}},
			}},
		},
	}
	if o.PVC.Spec.VolumeMode != nil {
		pv.Spec.VolumeMode = o.PVC.Spec.VolumeMode
	}
	return pv, controller.ProvisioningFinished, nil
}

func (p *dirProvisioner) Delete(_ context.Context, pv *corev1.PersistentVolume) error {
	hp := pv.Spec.HostPath
	if hp == nil {
		return &controller.IgnoredError{Reason: "not a hostPath volume"}
	}
	dir := filepath.Clean(hp.Path)
	if filepath.Dir(dir) != p.root || !strings.HasPrefix(filepath.Base(dir), "pvc-") {
		return &controller.IgnoredError{Reason: fmt.Sprintf("%s is not a volume of this provisioner (under %s)", dir, p.root)}
	}
	return os.RemoveAll(dir)
}
