package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SpoolType is where a receiver keeps accepted callbacks until they are delivered.
// +kubebuilder:validation:Enum=PersistentVolumeClaim;EmptyDir;None
type SpoolType string

const (
	// SpoolPersistentVolumeClaim keeps them on a PersistentVolumeClaim per pod: the
	// receivers run as a StatefulSet, and a pod replaced by a rollout, a deletion, an
	// eviction or a node drain comes back with the same claim and delivers its backlog
	// first. The claims of ordinals removed by a scale-down are drained by the operator,
	// then deleted.
	SpoolPersistentVolumeClaim SpoolType = "PersistentVolumeClaim"
	// SpoolEmptyDir keeps them on an emptyDir volume of the pod: a container restart in the
	// same pod (a crash, an OOM kill, a liveness kill) delivers them; a terminating pod
	// delivers what it holds for at most drainTimeout, and what is left then is lost with
	// the pod, as is everything on a node that is lost.
	SpoolEmptyDir SpoolType = "EmptyDir"
	// SpoolNone keeps them in memory only: a receiver killed without warning loses what it
	// had accepted and not yet delivered.
	SpoolNone SpoolType = "None"
)

// SpoolSpec configures the durable spool: every accepted callback is written to disk and
// synced before its OK, and stays there until delivered, dead-lettered or failed.
// +kubebuilder:validation:XValidation:rule="!has(self.storageClassName) || !has(self.type) || self.type == 'PersistentVolumeClaim'",message="spool.storageClassName applies only to type PersistentVolumeClaim"
// +kubebuilder:validation:XValidation:rule="!has(self.size) || !has(self.type) || self.type == 'PersistentVolumeClaim'",message="spool.size applies only to type PersistentVolumeClaim (an emptyDir's is sizeLimit)"
// +kubebuilder:validation:XValidation:rule="!has(self.drainTimeout) || (has(self.type) && self.type == 'EmptyDir')",message="spool.drainTimeout applies only to type EmptyDir (a claim outlives its pod, so its pods need no drain)"
type SpoolSpec struct {
	// Type is PersistentVolumeClaim (the default: a claim per receiver pod, which outlives
	// the pod), EmptyDir (durable across container restarts in the pod only; a terminating
	// pod delivers its backlog for drainTimeout at most) or None (an in-memory queue: faster
	// by a disk sync per batch, but a killed receiver loses what it accepted).
	// +optional
	// +kubebuilder:default=PersistentVolumeClaim
	Type SpoolType `json:"type,omitempty"`

	// StorageClassName of the receivers' claims (type PersistentVolumeClaim). By default the
	// cluster's default StorageClass; without one the resource is not Ready and says so.
	// Changing it affects only claims made afterwards (a StatefulSet's claims are not
	// rewritten).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	StorageClassName *string `json:"storageClassName,omitempty"`

	// Size each receiver pod's claim requests (type PersistentVolumeClaim), access mode
	// ReadWriteOnce. The receiver keeps its spool files within it and answers 503 when it is
	// full. Default 1Gi; at least 64Mi. Changing it affects only claims made afterwards.
	// +optional
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('64Mi')) >= 0",message="spool.size must be at least 64Mi, such as 1Gi"
	Size *resource.Quantity `json:"size,omitempty"`

	// SizeLimit of the emptyDir volume (type EmptyDir; ephemeral storage, counted against
	// the node's disk). The receiver keeps its spool files within it and answers 503 when it
	// is full, which happens only when the sink has not taken events for long. Default 1Gi;
	// at least 64Mi.
	// +optional
	// +kubebuilder:default="1Gi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('64Mi')) >= 0",message="spool.sizeLimit must be at least 64Mi, such as 1Gi"
	SizeLimit *resource.Quantity `json:"sizeLimit,omitempty"`

	// DrainTimeout bounds how long a terminating receiver pod keeps delivering its backlog
	// (type EmptyDir): a sink that comes back within it receives everything; what is still
	// held after it is lost with the pod's emptyDir (and logged whole). The pod's
	// termination grace period follows it. Default 25s; between 5s and 1h.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) >= duration('5s') && duration(self) <= duration('1h')",message="spool.drainTimeout must be a duration between 5s and 1h, such as 5m"
	DrainTimeout *metav1.Duration `json:"drainTimeout,omitempty"`
}

// SpoolStatus is what the receiver pods' spools hold, as last read from their metrics.
type SpoolStatus struct {
	// Events accepted and not yet delivered, dead-lettered or failed, summed over the pods.
	// +optional
	Events int64 `json:"events"`
	// Bytes the spools hold, summed over the pods.
	// +optional
	Bytes int64 `json:"bytes"`
	// FullPods is the number of pods whose spool is at least 90% full: a full spool answers
	// callbacks with 503 until the sink takes events again.
	// +optional
	FullPods int32 `json:"fullPods"`
}

// StrandedSpool is a spool that no receiver pod serves any more: the claim of an ordinal a
// scale-down removed, or the pods of the Deployment a move to a StatefulSet replaces. The
// operator delivers what it holds, then removes it.
type StrandedSpool struct {
	// Name of the claim, or of the Deployment whose pods still deliver.
	// +required
	Name string `json:"name"`
	// Kind is PersistentVolumeClaim or Deployment.
	// +required
	Kind string `json:"kind"`
	// State is Draining (a drain Job delivers it), Reused (a scale-up took it back),
	// Failed (the drain Job failed: see its logs) or Waiting (for the sink, its pods still
	// holding events).
	// +required
	State string `json:"state"`
	// Message says what happens and what to look at.
	// +optional
	Message string `json:"message,omitempty"`
}
