package v1alpha1

import "k8s.io/apimachinery/pkg/api/resource"

// SpoolType is where a receiver keeps accepted callbacks until they are delivered.
// +kubebuilder:validation:Enum=EmptyDir;None
type SpoolType string

const (
	// SpoolEmptyDir keeps them on an emptyDir volume of the pod: a container restart in the
	// same pod (a crash, an OOM kill, a liveness kill) delivers them; the pod's deletion or
	// its node's loss takes them with it.
	SpoolEmptyDir SpoolType = "EmptyDir"
	// SpoolNone keeps them in memory only: a receiver killed without warning loses what it
	// had accepted and not yet delivered.
	SpoolNone SpoolType = "None"
)

// SpoolSpec configures the durable spool: every accepted callback is written to disk and
// synced before its OK, and stays there until delivered, dead-lettered or failed.
type SpoolSpec struct {
	// Type is EmptyDir (the default: durable across container restarts in the pod) or None
	// (an in-memory queue: faster by a disk sync per batch, but a killed receiver loses what
	// it accepted).
	// +optional
	// +kubebuilder:default=EmptyDir
	Type SpoolType `json:"type,omitempty"`

	// SizeLimit of the emptyDir volume (ephemeral storage, counted against the node's disk).
	// The receiver keeps its spool files within it and answers 503 when it is full, which
	// happens only when the sink has not taken events for long. Default 1Gi; at least 64Mi.
	// +optional
	// +kubebuilder:default="1Gi"
	// +kubebuilder:validation:XValidation:rule="quantity(string(self)).compareTo(quantity('64Mi')) >= 0",message="spool.sizeLimit must be at least 64Mi, such as 1Gi"
	SizeLimit *resource.Quantity `json:"sizeLimit,omitempty"`
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
