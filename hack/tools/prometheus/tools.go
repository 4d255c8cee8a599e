//go:build tools

// Package tools pins github.com/prometheus/prometheus for hack/prometheus.sh, which builds
// its cmd/promtool and cmd/prometheus.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
