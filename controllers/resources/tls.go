package resources

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/receiver/contract"
)

// Where the receiver finds spec.tls's Secret: mounted as a volume, never copied into the pod
// template, so that the kubelet's refresh of the volume brings a renewed certificate to the
// running receiver, which reloads it.
const (
	TLSVolumeName = "tls"
	TLSMountPath  = "/etc/imcallback/tls"
	TLSCertFile   = TLSMountPath + "/" + corev1.TLSCertKey
	TLSKeyFile    = TLSMountPath + "/" + corev1.TLSPrivateKeyKey

	// TLSFileMode lets the owner (root) and the pod's fsGroup (the receiver's group) read
	// the files, and nobody else: the private key is not world-readable.
	TLSFileMode = int32(0o440)
)

func tlsVolume(t *cbv1.TLSSpec) (*corev1ac.VolumeApplyConfiguration, *corev1ac.VolumeMountApplyConfiguration) {
	v := corev1ac.Volume().
		WithName(TLSVolumeName).
		WithSecret(corev1ac.SecretVolumeSource().
			WithSecretName(t.SecretName).
			WithDefaultMode(TLSFileMode))
	m := corev1ac.VolumeMount().
		WithName(TLSVolumeName).
		WithMountPath(TLSMountPath).
		WithReadOnly(true)
	return v, m
}

// ServesTLS tells whether the receiver of a Deployment this operator made serves HTTPS.
// While spec.tls's Secret is unusable the Deployment is left as it is, and the Service,
// the Ingress and status.url follow what it runs, not what the spec asks for.
func ServesTLS(d *appsv1.Deployment) bool { return TemplateServesTLS(d.Spec.Template) }

// TemplateServesTLS tells whether the receiver of a pod template this operator made serves
// HTTPS.
func TemplateServesTLS(t corev1.PodTemplateSpec) bool {
	for _, c := range t.Spec.Containers {
		if c.Name != ContainerName {
			continue
		}
		for _, a := range c.Args {
			if strings.HasPrefix(a, "--"+contract.FlagTLSCertFile+"=") {
				return true
			}
		}
	}
	return false
}
