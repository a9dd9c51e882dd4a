# The two commands a new user needs: `make demo` and `make test`.
SHELL := bash
CLUSTER := e2e/cluster
KUBECTL := $(CLUSTER) kubectl

.PHONY: test lint unit cluster demo crds down

## make test: formatting, lints, unit tests, then the integration tests against
## the local control plane (started by e2e/cluster, built on first use).
test: lint
	$(CLUSTER) up
	cargo test --workspace --all-targets --no-fail-fast

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## make unit: the tests that need no cluster.
unit:
	cargo test --workspace --lib --bins

cluster:
	$(CLUSTER) up

## make demo: a local cluster, the CRDs, the example home, and what it looks like.
demo: cluster
	$(KUBECTL) apply --server-side --field-manager=homelab-demo -f crds/
	$(KUBECTL) wait --for=condition=Established --timeout=60s -f crds/
	$(KUBECTL) create namespace home --dry-run=client -o yaml | $(KUBECTL) apply -f -
	$(KUBECTL) apply --server-side --field-manager=homelab-demo -n home -k deploy/examples/
	$(KUBECTL) get homelab -A

## make crds: regenerate crds/ from the Rust types.
crds:
	cargo run -q -p homelab-api --bin crdgen

down:
	$(CLUSTER) down
