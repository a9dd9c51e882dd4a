# The two commands a new user needs: `make demo` and `make test`.
SHELL := bash
CLUSTER := e2e/cluster
KUBECTL := $(CLUSTER) kubectl

.PHONY: test lint unit cluster demo demo-down chart crds down bench

## make test: formatting, lints, unit tests, then the integration tests against
## the local control plane (started by e2e/cluster, built on first use), and the
## scenarios on its real nodes with the image built here (e2e/image).
test: lint
	$(CLUSTER) up
	e2e/image build
	cargo test --workspace --all-targets --no-fail-fast

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## make unit: the tests that need no cluster.
unit:
	cargo test --workspace --lib --bins

cluster:
	$(CLUSTER) up

## make demo: the local cluster, the image built here, the Helm chart installed on
## the real nodes, the home's peers (mosquitto, S3, sticks, simulated gateways),
## every example object waited for until Ready (see e2e/demo, docs/demo.md).
## make demo-down undoes it.
demo:
	e2e/demo up

demo-down:
	e2e/demo down

## make chart: after `make crds` or a chart change, refresh the chart's copy of the
## CRDs and the kustomize base rendered from it (a test checks they are in step).
chart:
	charts/sync

## make crds: regenerate crds/ from the Rust types, and the chart's copy with them.
crds:
	cargo run -q -p homelab-api --bin crdgen
	charts/sync

down:
	$(CLUSTER) down

## make bench: memory, binary size, latency, 1,000 objects, steady-state writes and
## failover against the local cluster; target/bench/results.json and docs/bench.svg
## (see e2e/bench/run). Not part of make test.
bench:
	e2e/bench/run
