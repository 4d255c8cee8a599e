//go:build tools

// Package tools pins helm.sh/helm/v4 for hack/helm.sh, which builds its cmd/helm.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
