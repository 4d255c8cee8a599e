package controllers

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cbv1 "github.com/imcallback/callback-operator/api/v1alpha1"
	"github.com/imcallback/callback-operator/internal/testenv"
)

var (
	certFrom = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	certTo   = time.Date(2030, 4, 1, 0, 0, 0, 0, time.UTC)
)

func keyPair(t *testing.T, hosts ...string) (crt, key []byte) {
	t.Helper()
	crt, key, err := testenv.SelfSignedCert(hosts, certFrom, certTo)
	if err != nil {
		t.Fatal(err)
	}
	return crt, key
}

func tlsSecret(typ corev1.SecretType, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "im-callback-tls", Namespace: "chat", ResourceVersion: "7"}, Type: typ, Data: data}
}

// TestTLSVerdict: what the receiver would load is checked before it runs; what it cannot
// load is a reason and a message that says what to put where.
func TestTLSVerdict(t *testing.T) {
	crt, key := keyPair(t, "im.example.com", "blacklist.chat.svc")
	otherCrt, _ := keyPair(t, "elsewhere.example.com")
	cases := []struct {
		name     string
		secret   *corev1.Secret
		reason   string // "" when usable
		mentions string
	}{
		{"a kubernetes.io/tls Secret", tlsSecret(corev1.SecretTypeTLS, map[string][]byte{"tls.crt": crt, "tls.key": key}), "", ""},
		{"an Opaque Secret with the same keys", tlsSecret(corev1.SecretTypeOpaque, map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": crt}), "", ""},
		{"no keys at all", tlsSecret(corev1.SecretTypeOpaque, map[string][]byte{"token": []byte("x")}), cbv1.ReasonTLSSecretInvalid, "has no tls.crt and no tls.key"},
		{"no certificate", tlsSecret(corev1.SecretTypeOpaque, map[string][]byte{"tls.key": key}), cbv1.ReasonTLSSecretInvalid, "no certificate in tls.crt"},
		{"an empty key", tlsSecret(corev1.SecretTypeOpaque, map[string][]byte{"tls.crt": crt, "tls.key": {}}), cbv1.ReasonTLSSecretInvalid, "no private key in tls.key"},
		{"not PEM", tlsSecret(corev1.SecretTypeOpaque, map[string][]byte{"tls.crt": []byte("hello"), "tls.key": key}), cbv1.ReasonTLSSecretInvalid, "does not hold a usable key pair"},
		{"key and certificate swapped", tlsSecret(corev1.SecretTypeOpaque, map[string][]byte{"tls.crt": key, "tls.key": crt}), cbv1.ReasonTLSSecretInvalid, "does not hold a usable key pair"},
		{"a key of another certificate", tlsSecret(corev1.SecretTypeTLS, map[string][]byte{"tls.crt": otherCrt, "tls.key": key}), cbv1.ReasonTLSSecretInvalid, "private key does not match public key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := verdictOf(c.secret)
			if v.resourceVersion != "7" {
				t.Errorf("resourceVersion %q", v.resourceVersion)
			}
			if c.reason == "" {
				if v.err != nil || v.cert == nil {
					t.Fatalf("refused: %+v", v.err)
				}
				want := &Certificate{Secret: "im-callback-tls", Subject: "CN=im.example.com", DNSNames: []string{"im.example.com", "blacklist.chat.svc"}, NotBefore: certFrom, NotAfter: certTo}
				if !reflect.DeepEqual(v.cert, want) {
					t.Fatalf("certificate %+v, want %+v", v.cert, want)
				}
				return
			}
			if v.cert != nil || v.err == nil || v.err.Reason != c.reason {
				t.Fatalf("verdict %+v %+v, want reason %s", v.cert, v.err, c.reason)
			}
			for _, s := range []string{c.mentions, "im-callback-tls", "keeps serving its last good certificate"} {
				if !strings.Contains(v.err.Message, s) {
					t.Errorf("message %q does not say %q", v.err.Message, s)
				}
			}
			if strings.Contains(v.err.Message, "PRIVATE KEY") || strings.Contains(v.err.Message, string(key[40:80])) {
				t.Errorf("the message shows the key: %q", v.err.Message)
			}
		})
	}
}

func TestCertificateValidity(t *testing.T) {
	c := &Certificate{Secret: "s", Subject: "CN=x", NotBefore: certFrom, NotAfter: certTo}
	cases := []struct {
		name    string
		now     time.Time
		reason  string
		recheck time.Duration
	}{
		{"before", certFrom.Add(-time.Hour), cbv1.ReasonTLSCertificateNotYetValid, time.Hour + time.Second},
		{"within", certTo.Add(-24 * time.Hour), "", 24*time.Hour + time.Second},
		{"after", certTo.Add(time.Second), cbv1.ReasonTLSCertificateExpired, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := validity(c, tc.now)
			if (p == nil) != (tc.reason == "") || (p != nil && p.Reason != tc.reason) {
				t.Errorf("validity %+v, want %q", p, tc.reason)
			}
			if got := nextValidityChange(c, tc.now); got != tc.recheck {
				t.Errorf("recheck after %v, want %v", got, tc.recheck)
			}
		})
	}
	if nextValidityChange(nil, certFrom) != 0 {
		t.Error("a recheck without a certificate")
	}
}
