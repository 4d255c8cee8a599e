# callback-operator Makefile. `make help` lists the targets.

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# Image holding both binaries (manager and receiver): by default the one a manager built from
# this checkout runs receivers from (internal/version.Image).
IMG ?= ghcr.io/imcallback/callback-operator:$(VERSION)

# Pinned tool versions: each builds with Go 1.26.
CONTROLLER_GEN_VERSION ?= v0.23.0
KUSTOMIZE_VERSION ?= v5.8.2
GOLANGCI_LINT_VERSION ?= v2.15.0
# Kubernetes version of envtest and the local cluster: hack/control-plane.sh and hack/node.sh
# build it (and containerd, CoreDNS) from Go modules into ~/.cache/callback-operator.
K8S_VERSION ?= v1.37.2
export K8S_VERSION
# Where `make image` writes the operator's image (IMG), as `docker save` would.
IMAGE_ARCHIVE ?= $(LOCALBIN)/image.tar
# Debian packages of the local cluster's node: runc, the CNI plugins, nft/iptables, conntrack,
# and the CA bundle copied into images (file that shows each is installed : package).
NODE_PACKAGES := /usr/sbin/runc:runc /usr/lib/cni/bridge:containernetworking-plugins \
	/usr/sbin/nft:nftables /usr/sbin/iptables:iptables /usr/sbin/conntrack:conntrack \
	/etc/ssl/certs/ca-certificates.crt:ca-certificates /usr/bin/nsenter:util-linux \
	/usr/sbin/ip:iproute2 /usr/sbin/sysctl:procps

# How long `make test` fuzzes the receiver's request path.
FUZZTIME ?= 15s

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
# Built from the tools modules hack/tools/helm and hack/tools/prometheus into the cache.
HELM ?= $(LOCALBIN)/helm
PROMTOOL ?= $(LOCALBIN)/promtool
# kubectl: the one in PATH, else the one hack/control-plane.sh builds.
KUBECTL ?= $(shell command -v kubectl 2>/dev/null || echo "$$(hack/control-plane.sh)/kubectl")
# More flags for `make run`, such as RUN_FLAGS=--zap-log-level=debug.
RUN_FLAGS ?=

GO_LDFLAGS := -s -w -X github.com/imcallback/callback-operator/internal/version.Version=$(VERSION)
# Generated files, checked for staleness by `make verify-generated`.
GENERATED := api/v1alpha1/zz_generated.deepcopy.go config/crd/bases config/rbac/role.yaml \
	charts/callback-operator/files config/prometheus/prometheusrule.yaml

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD and RBAC manifests from the markers (descriptions as prose for kubectl explain).
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/...;./controllers/..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	go run ./hack/crd-prose config/crd/bases/*.yaml
	hack/chart-sync.sh

.PHONY: generate
generate: controller-gen ## Generate deepcopy code from the markers.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: verify-generated
verify-generated: ## Fail when generated files are stale (they are regenerated in place).
	@before=$$(find $(GENERATED) -type f -exec sha256sum {} + | sort); \
	$(MAKE) --no-print-directory manifests generate >/dev/null; \
	after=$$(find $(GENERATED) -type f -exec sha256sum {} + | sort); \
	if [ "$$before" != "$$after" ]; then \
	  echo "generated files were stale; they are regenerated now, review and commit them:"; \
	  diff <(echo "$$before") <(echo "$$after") || true; exit 1; fi; \
	echo "generated files are up to date"

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...
	cd test/chart && $(GOLANGCI_LINT) run ./...

.PHONY: control-plane
control-plane: ## Build (once, cached) kube-apiserver, kube-controller-manager, kubectl and etcd.
	@hack/control-plane.sh >/dev/null

.PHONY: node
node: ## Build (once, cached) kubelet, kube-proxy, kube-scheduler, containerd, ctr, the runc shim and CoreDNS.
	@nice -n 10 hack/node.sh >/dev/null

.PHONY: local-provisioner
local-provisioner: ## Build (once, cached) the local cluster's storage provisioner (hack/tools/local-provisioner).
	@nice -n 10 hack/local-provisioner.sh >/dev/null

.PHONY: nats
nats: ## Build (once, cached) nats-server, the JetStream cluster of the local cluster and of the process-level tests.
	@nice -n 10 hack/nats.sh >/dev/null

.PHONY: ingress-addons
ingress-addons: ## Build (once, cached) Traefik and cert-manager's controller for the local cluster's ingress add-on.
	@nice -n 10 hack/traefik.sh >/dev/null
	@nice -n 10 hack/cert-manager.sh >/dev/null

.PHONY: node-packages
node-packages: ## Install Debian's runc, CNI plugins, nftables, iptables and conntrack when missing (apt-get, root).
	@missing=""; for f in $(NODE_PACKAGES); do [ -e "$${f%%:*}" ] || missing="$$missing $${f##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "the local cluster's node needs these Debian packages:$$missing; apt-get is not available here: install them with this system's package manager" >&2; exit 1; fi; \
	  if [ "$$(id -u)" != 0 ]; then echo "installing$$missing needs root (apt-get)" >&2; exit 1; fi; \
	  echo "installing$$missing (apt-get)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends $$missing >/dev/null 2>&1 || \
	    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } || \
	    { echo "apt-get could not install$$missing" >&2; exit 1; }; \
	fi

# The cached binaries the tests and the local cluster use.
ASSETS_ENV = KUBEBUILDER_ASSETS="$$(hack/control-plane.sh)" LOCALCLUSTER_NODE_ASSETS="$$(hack/node.sh)" \
	LOCALCLUSTER_NATS_ASSETS="$$(hack/nats.sh)" LOCALCLUSTER_TRAEFIK="$$(hack/traefik.sh)" LOCALCLUSTER_CERT_MANAGER="$$(hack/cert-manager.sh)"

.PHONY: test
test: verify-generated vet lint control-plane node nats ingress-addons node-packages local-provisioner test-chart test-alerts ## Everything: generation check, vet, lint, unit, envtest and end-to-end suites with -race, fuzzing.
	$(ASSETS_ENV) go test -race -count=1 -timeout 40m ./...
	go test -run='^$$' -fuzz=FuzzHandler -fuzztime=$(FUZZTIME) ./receiver
	go test -run='^$$' -fuzz=FuzzTypedChecks -fuzztime=$(FUZZTIME) ./receiver
	go test -run='^$$' -fuzz=FuzzAnswerErrorCode -fuzztime=$(FUZZTIME) ./receiver

.PHONY: bench
bench: build control-plane ## Benchmarks: receiver (with and without spool) against bare net/http and an ideal forwarder, decisions, abuse, handler allocations, controller at scale.
	hack/bench-receiver.sh
	hack/bench-lanes.sh
	hack/bench-decisions.sh
	hack/bench-abuse.sh
	go test -run='^$$' -bench=. -benchmem ./receiver/...
	go test -run='^$$' -bench=AppendWhileWaking -benchtime=20000x -cpu=1,2 ./receiver/spool
	LOCALCLUSTER_NATS_ASSETS="$$(hack/nats.sh)" go test -run='^$$' -bench=PublishR3 -benchtime=2000x ./internal/natstest
	KUBEBUILDER_ASSETS="$$(hack/control-plane.sh)" go run ./hack/bench-controller --manager=bin/manager

.PHONY: bench-spool-stores
bench-spool-stores: ## The spool's workload on receiver/spool, bbolt and Pebble (why the spool is its own segment log).
	cd hack/spoolbench && go run . -dir /var/tmp/imcallback-spoolbench

.PHONY: chart-sync
chart-sync: ## Copy the CRDs, the manager's rules, the alerts and the dashboard from config/ into the chart (make manifests runs it).
	hack/chart-sync.sh

.PHONY: test-chart
# test/chart runs without -race: its tests start no goroutines of their own, and compiling the
# race-instrumented Helm SDK and kustomize took most of this target's ~9 minutes.
test-chart: helm promtool build ## The chart against config/ (its own module, test/chart), helm lint, the Argo CD health check, alert and dashboard queries on a real Prometheus.
	$(HELM) lint --strict charts/callback-operator
	cd test/chart && go vet ./... && \
	  PROMETHEUS=$(LOCALBIN)/prometheus RECEIVER=$(LOCALBIN)/receiver go test -count=1 ./...

.PHONY: test-alerts
test-alerts: promtool ## promtool: check the alert rules, run their unit tests (config/prometheus/*_test.yaml).
	$(PROMTOOL) check rules config/prometheus/alerts.yaml
	$(PROMTOOL) test rules config/prometheus/*_test.yaml

##@ Build

.PHONY: build
build: ## Build bin/manager and bin/receiver.
	CGO_ENABLED=0 go build -trimpath -ldflags '$(GO_LDFLAGS)' -o $(LOCALBIN)/manager ./cmd/manager
	CGO_ENABLED=0 go build -trimpath -ldflags '$(GO_LDFLAGS)' -o $(LOCALBIN)/receiver ./cmd/receiver

.PHONY: run
run: manifests generate install ## Run the manager against the cluster of the current kubeconfig (receivers run IMG).
	go run -ldflags '$(GO_LDFLAGS)' ./cmd/manager --leader-elect=false --metrics-bind-address=0 --health-probe-bind-address=127.0.0.1:8081 $(RUN_FLAGS)

.PHONY: image
image: build ## Write the operator's image (IMG) to bin/image.tar without Docker (docker load / ctr images import read it).
	go run ./hack/image --out $(IMAGE_ARCHIVE) --operator $(IMG) --bin-dir $(LOCALBIN)

# The chart's version: VERSION without its v when it is SemVer, else 0.0.0-VERSION.
CHART_VERSION ?= $(shell v='$(VERSION)'; v=$${v#v}; if echo "$$v" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+'; then echo "$$v"; else echo "0.0.0-$$v"; fi)

.PHONY: helm-package
helm-package: helm ## Package the chart (version CHART_VERSION, appVersion VERSION: the image tag it installs) into bin/.
	$(HELM) package charts/callback-operator --version $(CHART_VERSION) --app-version $(VERSION) -d $(LOCALBIN)

.PHONY: docker-build
docker-build: ## Build the image with both binaries (needs a Docker engine).
	docker build --build-arg VERSION=$(VERSION) -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the image.
	docker push $(IMG)

##@ Deployment

.PHONY: install
install: manifests kustomize ## Install the CRD into the cluster of the current kubeconfig.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: manifests kustomize ## Remove the CRD (and every CallbackReceiver) from the cluster.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: deploy
deploy: manifests kustomize ## Deploy the operator (image IMG) to the cluster of the current kubeconfig.
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: kustomize ## Remove the operator from the cluster.
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found -f -

##@ Local cluster (hack/dev: a real single-node cluster in network namespaces of its own)

# State of `make dev-up` (kubeconfig, logs of every daemon); ignored by git.
DEV_DIR ?= $(CURDIR)/.dev
# More flags for hack/dev, such as DEV_FLAGS=--listen=127.0.0.1:8080 (see `go doc ./hack/dev`).
DEV_FLAGS ?=
# Flags for the end-to-end tests, such as E2E_FLAGS='-run TestSamples'.
E2E_FLAGS ?=
DEV_NEEDS := image dev-tools control-plane node ingress-addons node-packages local-provisioner

.PHONY: dev-tools dev dev-up dev-down test-e2e test-helm
dev-tools: ## Build the local cluster's tools: bin/dev, bin/demosink, bin/moderator.
	CGO_ENABLED=0 go build -o $(LOCALBIN)/dev ./hack/dev
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o $(LOCALBIN)/demosink ./hack/demosink
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o $(LOCALBIN)/moderator ./hack/moderator

dev: $(DEV_NEEDS) ## Run the operator and config/samples on a local cluster (root); Ctrl-C tears it all down.
	$(ASSETS_ENV) $(LOCALBIN)/dev run --dir=$(DEV_DIR) --image=$(IMG) --image-archive=$(IMAGE_ARCHIVE) $(DEV_FLAGS)

dev-up: $(DEV_NEEDS) ## Like dev, in the background: returns once Ready; kubeconfig at .dev/kubeconfig.
	$(ASSETS_ENV) $(LOCALBIN)/dev up --dir=$(DEV_DIR) --image=$(IMG) --image-archive=$(IMAGE_ARCHIVE) $(DEV_FLAGS)

dev-down: dev-tools ## Stop what dev-up started, leaving nothing behind (cleans up after a killed run too).
	$(LOCALBIN)/dev down --dir=$(DEV_DIR)

test-helm: helm control-plane node node-packages local-provisioner ## The chart installed, upgraded and uninstalled with helm on a local cluster of its own (root).
	$(ASSETS_ENV) HELM=$(HELM) go test -race -count=1 -timeout 20m ./test/helm/...

test-e2e: control-plane node nats ingress-addons node-packages local-provisioner ## End-to-end tests on a local cluster (root), with -race.
	$(ASSETS_ENV) go test -race -count=1 -timeout 30m $(E2E_FLAGS) ./test/e2e/...

##@ Tools

.PHONY: controller-gen kustomize golangci-lint helm promtool
helm: ## Build (once, cached) helm from hack/tools/helm and link it into bin/.
	@mkdir -p $(LOCALBIN) && dir="$$(nice -n 10 hack/helm.sh)" && ln -sf "$$dir/helm" $(HELM)
promtool: ## Build (once, cached) promtool and prometheus from hack/tools/prometheus and link them into bin/.
	@mkdir -p $(LOCALBIN) && dir="$$(nice -n 10 hack/prometheus.sh)" && ln -sf "$$dir/promtool" $(PROMTOOL) && ln -sf "$$dir/prometheus" $(LOCALBIN)/prometheus
controller-gen: $(CONTROLLER_GEN) ## Install controller-gen into bin/.
kustomize: $(KUSTOMIZE) ## Install kustomize into bin/.
golangci-lint: $(GOLANGCI_LINT) ## Install golangci-lint into bin/.

$(CONTROLLER_GEN):
	$(call go-install-tool,$@,sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_GEN_VERSION))
$(KUSTOMIZE):
	$(call go-install-tool,$@,sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))
$(GOLANGCI_LINT):
	$(call go-install-tool,$@,github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))

# go-install-tool installs package $(2) at version $(3) as $(1) (a versioned file name, so a
# changed pin reinstalls), and links the plain name to it.
define go-install-tool
@set -e; pkg=$(2)@$(3); echo "installing $$pkg"; tmp=$$(mktemp -d); \
GOBIN=$$tmp GOTOOLCHAIN=local go install $$pkg; \
mkdir -p $(LOCALBIN); mv $$tmp/$$(basename $$(echo $(2) | sed 's|/v[0-9]*$$||')) $(1); rm -rf $$tmp; \
ln -sf $$(basename $(1)) $(LOCALBIN)/$$(basename $$(echo $(2) | sed 's|/v[0-9]*$$||'))
endef
