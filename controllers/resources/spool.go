package resources

import (
	"strconv"

	"k8s.io/apimachinery/pkg/api/resource"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/receiver/contract"
)

// Where the receiver keeps its spool: an emptyDir, the one writable place of a read-only
// root filesystem, which outlives the container (a crash, an OOM kill) but not the pod.
const (
	SpoolVolumeName = "spool"
	SpoolMountPath  = "/var/spool/imcallback"
)

// DefaultSpoolSizeLimit applies when spec.spool.sizeLimit is not set (the schema sets it).
var DefaultSpoolSizeLimit = resource.MustParse("1Gi")

// SpoolEnabled tells whether the resource's receivers run with a spool (the default).
func SpoolEnabled(cr *cbv1.CallbackReceiver) bool {
	return cr.Spec.Spool == nil || cr.Spec.Spool.Type != cbv1.SpoolNone
}

func spoolSizeLimit(cr *cbv1.CallbackReceiver) resource.Quantity {
	if s := cr.Spec.Spool; s != nil && s.SizeLimit != nil {
		return *s.SizeLimit
	}
	return DefaultSpoolSizeLimit
}

// SpoolMaxBytes is the receiver's --spool-max-bytes for an emptyDir of the given size: it
// leaves 1% (at least 2 MiB) for the lock file and the directory's own blocks, so that the
// kubelet never evicts the pod for the spool's sake.
func SpoolMaxBytes(sizeLimit resource.Quantity) int64 {
	limit := sizeLimit.Value()
	return limit - max(limit/100, 2<<20)
}

func spoolArgs(cr *cbv1.CallbackReceiver) []string {
	if !SpoolEnabled(cr) {
		return nil
	}
	return []string{
		contract.Arg(contract.FlagSpoolDir, SpoolMountPath),
		contract.Arg(contract.FlagSpoolMaxBytes, strconv.FormatInt(SpoolMaxBytes(spoolSizeLimit(cr)), 10)),
	}
}

func spoolVolume(cr *cbv1.CallbackReceiver) (*corev1ac.VolumeApplyConfiguration, *corev1ac.VolumeMountApplyConfiguration) {
	if !SpoolEnabled(cr) {
		return nil, nil
	}
	// On the node's disk, not medium Memory: a spool in RAM would be lost with the pod's
	// memory and count against its limit.
	v := corev1ac.Volume().
		WithName(SpoolVolumeName).
		WithEmptyDir(corev1ac.EmptyDirVolumeSource().WithSizeLimit(canonicalQuantity(spoolSizeLimit(cr))))
	m := corev1ac.VolumeMount().WithName(SpoolVolumeName).WithMountPath(SpoolMountPath)
	return v, m
}

// canonicalQuantity re-parses q so that it compares equal with what the API server stores.
func canonicalQuantity(q resource.Quantity) resource.Quantity { return resource.MustParse(q.String()) }
