package controllers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
)

// Certificate is what status tells of the certificate the receiver serves.
type Certificate struct {
	Secret              string
	Subject             string
	DNSNames            []string
	NotBefore, NotAfter time.Time
}

func (c *Certificate) describe() string {
	s := "subject " + c.Subject
	if len(c.DNSNames) > 0 {
		s += ", DNS names " + strings.Join(c.DNSNames, ", ")
	}
	return s
}

// tlsCache checks spec.tls's Secret, as tokenCache checks the token's: only the Secrets'
// metadata is cached (a watch that triggers reconciles); the value is read from the API
// server when the Secret's resourceVersion changed, and only the verdict is kept.
type tlsCache struct {
	meta   client.Reader // the manager's cache of Secret metadata
	secret client.Reader // the API server

	mu       sync.Mutex
	verdicts map[types.NamespacedName]tlsVerdict
}

type tlsVerdict struct {
	resourceVersion string
	cert            *Certificate
	err             *Problem
}

func newTLSCache(meta, secret client.Reader) *tlsCache {
	return &tlsCache{meta: meta, secret: secret, verdicts: map[types.NamespacedName]tlsVerdict{}}
}

// check returns the certificate of cr's spec.tls (nil without spec.tls) and, when it cannot
// be served as it should, a *Problem: with no certificate the Secret is unusable (missing,
// incomplete, unparsable); with one, it is usable but outside its validity at now.
func (t *tlsCache) check(ctx context.Context, cr *cbv1.CallbackReceiver, now time.Time) (*Certificate, *Problem, error) {
	if cr.Spec.TLS == nil {
		return nil, nil, nil
	}
	key := types.NamespacedName{Namespace: cr.Namespace, Name: cr.Spec.TLS.SecretName}
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := t.meta.Get(ctx, key, m); err != nil {
		if apierrors.IsNotFound(err) {
			t.forget(key)
			return nil, tlsNotFound(key), nil
		}
		return nil, nil, err
	}
	t.mu.Lock()
	v, ok := t.verdicts[key]
	t.mu.Unlock()
	if !ok || v.resourceVersion != m.ResourceVersion {
		secret := &corev1.Secret{}
		if err := t.secret.Get(ctx, key, secret); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, tlsNotFound(key), nil
			}
			return nil, nil, err
		}
		v = verdictOf(secret)
		t.mu.Lock()
		t.verdicts[key] = v
		t.mu.Unlock()
	}
	if v.err != nil {
		return nil, v.err, nil
	}
	return v.cert, validity(v.cert, now), nil
}

func (t *tlsCache) forget(k types.NamespacedName) {
	t.mu.Lock()
	delete(t.verdicts, k)
	t.mu.Unlock()
}

// tlsWait is what every unusable-Secret message ends with.
const tlsWait = " A new receiver waits for it; a running one keeps serving its last good certificate."

func tlsNotFound(k types.NamespacedName) *Problem {
	return &Problem{cbv1.ReasonTLSSecretNotFound, fmt.Sprintf("Secret %s with the receiver's TLS certificate does not exist in namespace %s: create it (kubectl create secret tls %s --cert=tls.crt --key=tls.key, or a cert-manager Certificate with secretName %s), or fix spec.tls.secretName.", k.Name, k.Namespace, k.Name, k.Name) + tlsWait}
}

// verdictOf checks what the receiver will load: a PEM certificate chain and its private key,
// which must match. The Secret's type is not checked: an Opaque Secret with these two keys
// (as some secret stores write) works as well as a kubernetes.io/tls one.
func verdictOf(s *corev1.Secret) tlsVerdict {
	v := tlsVerdict{resourceVersion: s.ResourceVersion}
	invalid := func(format string, a ...any) tlsVerdict {
		v.err = &Problem{cbv1.ReasonTLSSecretInvalid, fmt.Sprintf(format, a...) + tlsWait}
		return v
	}
	crt, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	switch {
	case len(crt) == 0 && len(key) == 0:
		return invalid("Secret %s has no %s and no %s: spec.tls needs a kubernetes.io/tls Secret (kubectl create secret tls, or a cert-manager Certificate) with the certificate in %s and its private key in %s.", s.Name, corev1.TLSCertKey, corev1.TLSPrivateKeyKey, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	case len(crt) == 0:
		return invalid("Secret %s has no certificate in %s: put the PEM certificate (the chain, leaf first) there.", s.Name, corev1.TLSCertKey)
	case len(key) == 0:
		return invalid("Secret %s has no private key in %s: put the certificate's PEM private key there.", s.Name, corev1.TLSPrivateKeyKey)
	}
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return invalid("Secret %s does not hold a usable key pair (%v): %s must be the PEM certificate and %s its PEM private key.", s.Name, err, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return invalid("Secret %s: the certificate in %s does not parse (%v).", s.Name, corev1.TLSCertKey, err)
	}
	v.cert = &Certificate{Secret: s.Name, Subject: leaf.Subject.String(), DNSNames: leaf.DNSNames, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}
	return v
}

// validity is the problem of a certificate used outside its validity; the receiver serves it
// all the same (Go loads it), so it does not hold the receiver back.
func validity(c *Certificate, now time.Time) *Problem {
	switch {
	case now.After(c.NotAfter):
		return &Problem{cbv1.ReasonTLSCertificateExpired, fmt.Sprintf("The certificate in Secret %s (%s) expired at %s: renew it (with cert-manager: kubectl describe certificate); IM refuses an expired certificate. The receiver serves the renewed one without a restart.", c.Secret, c.describe(), c.NotAfter.UTC().Format(time.RFC3339))}
	case now.Before(c.NotBefore):
		return &Problem{cbv1.ReasonTLSCertificateNotYetValid, fmt.Sprintf("The certificate in Secret %s (%s) is valid only from %s: check the clock of whoever issued it, or wait.", c.Secret, c.describe(), c.NotBefore.UTC().Format(time.RFC3339))}
	}
	return nil
}

// nextValidityChange is when the certificate's validity at now changes (it begins or ends),
// so that the condition is recomputed then; zero when it never will.
func nextValidityChange(c *Certificate, now time.Time) time.Duration {
	switch {
	case c == nil:
		return 0
	case now.Before(c.NotBefore):
		return c.NotBefore.Sub(now) + time.Second
	case now.Before(c.NotAfter):
		return c.NotAfter.Sub(now) + time.Second
	}
	return 0
}
