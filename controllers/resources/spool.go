package resources

import (
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/receiver/contract"
)

// Where the receiver keeps its spool: a claim of the StatefulSet (type
// PersistentVolumeClaim), which outlives the pod, or an emptyDir (type EmptyDir), which
// outlives the container (a crash, an OOM kill) but not the pod. Either is the one writable
// place of a read-only root filesystem.
const (
	SpoolVolumeName = "spool"
	SpoolMountPath  = "/var/spool/imcallback"
)

// DefaultSpoolSizeLimit applies when spec.spool.sizeLimit is not set (the schema sets it);
// DefaultSpoolSize when spec.spool.size is not.
var (
	DefaultSpoolSizeLimit = resource.MustParse("1Gi")
	DefaultSpoolSize      = resource.MustParse("1Gi")
)

// DefaultDrainTimeout is an EmptyDir pod's drain when spec.spool.drainTimeout is not set:
// the receiver's own default shutdown timeout.
const DefaultDrainTimeout = contract.DefaultShutdownTimeout

// SpoolTypeOf is spec.spool.type with its default.
func SpoolTypeOf(cr *cbv1.CallbackReceiver) cbv1.SpoolType {
	if s := cr.Spec.Spool; s != nil && s.Type != "" {
		return s.Type
	}
	return cbv1.SpoolPersistentVolumeClaim
}

// SpoolEnabled tells whether the resource's receivers run with a spool (the default).
func SpoolEnabled(cr *cbv1.CallbackReceiver) bool { return SpoolTypeOf(cr) != cbv1.SpoolNone }

// SpoolOnClaim tells whether the receivers keep their spool on claims, and so run as a
// StatefulSet.
func SpoolOnClaim(cr *cbv1.CallbackReceiver) bool {
	return SpoolTypeOf(cr) == cbv1.SpoolPersistentVolumeClaim
}

// StorageClassName is spec.spool.storageClassName; nil for the cluster's default.
func StorageClassName(cr *cbv1.CallbackReceiver) *string {
	if s := cr.Spec.Spool; s != nil {
		return s.StorageClassName
	}
	return nil
}

func spoolSizeLimit(cr *cbv1.CallbackReceiver) resource.Quantity {
	if s := cr.Spec.Spool; s != nil && s.SizeLimit != nil {
		return *s.SizeLimit
	}
	return DefaultSpoolSizeLimit
}

// SpoolSize is what each claim requests.
func SpoolSize(cr *cbv1.CallbackReceiver) resource.Quantity {
	if s := cr.Spec.Spool; s != nil && s.Size != nil {
		return *s.Size
	}
	return DefaultSpoolSize
}

// SpoolMaxBytes is the receiver's --spool-max-bytes for an emptyDir of the given size: it
// leaves 1% (at least 2 MiB) for the lock file and the directory's own blocks, so that the
// kubelet never evicts the pod for the spool's sake.
func SpoolMaxBytes(sizeLimit resource.Quantity) int64 {
	limit := sizeLimit.Value()
	return limit - max(limit/100, 2<<20)
}

// ClaimSpoolMaxBytes is --spool-max-bytes on a claim of the given size: a file system on a
// volume keeps some of it for itself (ext4's metadata and journal take a few percent of a
// small volume), so 5% (at least 8 MiB) is left free.
func ClaimSpoolMaxBytes(size resource.Quantity) int64 {
	s := size.Value()
	return s - max(s/20, 8<<20)
}

// DrainTimeout is how long a terminating pod delivers its backlog: spec.spool.drainTimeout
// for EmptyDir, else the receiver's default shutdown timeout (a claim keeps what is left).
func DrainTimeout(cr *cbv1.CallbackReceiver) time.Duration {
	if s := cr.Spec.Spool; s != nil && s.DrainTimeout != nil && SpoolTypeOf(cr) == cbv1.SpoolEmptyDir {
		return s.DrainTimeout.Duration
	}
	return DefaultDrainTimeout
}

// GracePeriodFor leaves the receiver its drain and 10 s for the final scrape and exit
// before the kubelet kills it.
func GracePeriodFor(cr *cbv1.CallbackReceiver) int64 {
	return int64(DrainTimeout(cr)/time.Second) + 10
}

func spoolArgs(cr *cbv1.CallbackReceiver) []string {
	var args []string
	switch SpoolTypeOf(cr) {
	case cbv1.SpoolNone:
		return nil
	case cbv1.SpoolPersistentVolumeClaim:
		args = []string{
			contract.Arg(contract.FlagSpoolDir, SpoolMountPath),
			contract.Arg(contract.FlagSpoolMaxBytes, strconv.FormatInt(ClaimSpoolMaxBytes(SpoolSize(cr)), 10)),
		}
	default:
		args = []string{
			contract.Arg(contract.FlagSpoolDir, SpoolMountPath),
			contract.Arg(contract.FlagSpoolMaxBytes, strconv.FormatInt(SpoolMaxBytes(spoolSizeLimit(cr)), 10)),
		}
		if d := DrainTimeout(cr); d != DefaultDrainTimeout {
			args = append(args, contract.Arg(contract.FlagShutdownTimeout, d.String()))
		}
	}
	return args
}

// spoolVolume is the pod's spool volume (nil on a claim: the StatefulSet's template makes
// it) and the container's mount of it.
func spoolVolume(cr *cbv1.CallbackReceiver) (*corev1ac.VolumeApplyConfiguration, *corev1ac.VolumeMountApplyConfiguration) {
	if !SpoolEnabled(cr) {
		return nil, nil
	}
	m := corev1ac.VolumeMount().WithName(SpoolVolumeName).WithMountPath(SpoolMountPath)
	if SpoolOnClaim(cr) {
		return nil, m
	}
	// On the node's disk, not medium Memory: a spool in RAM would be lost with the pod's
	// memory and count against its limit.
	v := corev1ac.Volume().
		WithName(SpoolVolumeName).
		WithEmptyDir(corev1ac.EmptyDirVolumeSource().WithSizeLimit(canonicalQuantity(spoolSizeLimit(cr))))
	return v, m
}

// canonicalQuantity re-parses q so that it compares equal with what the API server stores.
func canonicalQuantity(q resource.Quantity) resource.Quantity { return resource.MustParse(q.String()) }
