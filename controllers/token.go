package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/receiver/authtoken"
)

// tokenCache computes the checksum of a token Secret's value for the pod template. Only the
// Secrets' metadata is cached (a watch that triggers reconciles); the value is read from the
// API server when the Secret's resourceVersion changed, and never kept.
type tokenCache struct {
	meta   client.Reader // the manager's cache of Secret metadata
	secret client.Reader // the API server

	mu   sync.Mutex
	sums map[tokenKey]tokenSum
}

type tokenKey struct {
	secret types.NamespacedName
	key    string
}

type tokenSum struct {
	resourceVersion string
	sum             string
	err             *Problem
}

func newTokenCache(meta, secret client.Reader) *tokenCache {
	return &tokenCache{meta: meta, secret: secret, sums: map[tokenKey]tokenSum{}}
}

// checksum returns the checksum of cr's token, "" without spec.auth, or a *Problem when
// the Secret or its key is missing or empty.
func (t *tokenCache) checksum(ctx context.Context, cr *cbv1.CallbackReceiver) (string, error) {
	if cr.Spec.Auth == nil {
		return "", nil
	}
	ref := cr.Spec.Auth.TokenSecretRef
	k := tokenKey{secret: types.NamespacedName{Namespace: cr.Namespace, Name: ref.Name}, key: ref.Key}

	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := t.meta.Get(ctx, k.secret, m); err != nil {
		if apierrors.IsNotFound(err) {
			t.forget(k)
			return "", notFound(k)
		}
		return "", err
	}
	t.mu.Lock()
	s, ok := t.sums[k]
	t.mu.Unlock()
	if !ok || s.resourceVersion != m.ResourceVersion {
		secret := &corev1.Secret{}
		if err := t.secret.Get(ctx, k.secret, secret); err != nil {
			if apierrors.IsNotFound(err) {
				return "", notFound(k)
			}
			return "", err
		}
		s = sum(k, secret)
		t.mu.Lock()
		t.sums[k] = s
		t.mu.Unlock()
	}
	if s.err != nil {
		return "", s.err
	}
	return s.sum, nil
}

func (t *tokenCache) forget(k tokenKey) {
	t.mu.Lock()
	delete(t.sums, k)
	t.mu.Unlock()
}

func notFound(k tokenKey) *Problem {
	return &Problem{cbv1.ReasonTokenSecretNotFound, fmt.Sprintf("Secret %s with the callback token does not exist in namespace %s: create it (kubectl create secret generic %s --from-literal=%s=<token from the IM console>) or fix spec.auth.tokenSecretRef.", k.secret.Name, k.secret.Namespace, k.secret.Name, k.key)}
}

// sum hashes the token with the Secret's name, so equal tokens of two Secrets do not give
// equal annotations. Only the checksum leaves this function.
func sum(k tokenKey, s *corev1.Secret) tokenSum {
	out := tokenSum{resourceVersion: s.ResourceVersion}
	v, ok := s.Data[k.key]
	if !ok {
		out.err = &Problem{cbv1.ReasonTokenKeyNotFound, fmt.Sprintf("Secret %s has no key %q: add the IM console's callback token under that key, or fix spec.auth.tokenSecretRef.key.", k.secret.Name, k.key)}
		return out
	}
	// The receiver reads this value with the same function: a value it would refuse at start
	// (blank) is refused here, before a Deployment is made to run it.
	token, err := authtoken.Parse(string(v))
	if err != nil {
		out.err = &Problem{cbv1.ReasonTokenEmpty, fmt.Sprintf("Secret %s key %q is empty or only white space: put the IM console's callback token there.", k.secret.Name, k.key)}
		return out
	}
	h := sha256.New()
	_, _ = fmt.Fprintf(h, "callback-operator token\x00%s\x00%s\x00", k.secret.Namespace, k.secret.Name)
	h.Write([]byte(token))
	out.sum = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return out
}
