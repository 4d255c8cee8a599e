// Package chart holds tests only: charts/callback-operator rendered with the Helm SDK against
// what kustomize builds from config/, value by value; helm lint; the copies `make chart-sync`
// keeps; the alerts' runbook links; and config/argocd's health.lua under Argo CD's sandbox.
package chart
