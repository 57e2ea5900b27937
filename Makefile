# wbc: `make run` starts the local stack, `make test` runs every test and lint.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/wbc-target
CARGO ?= cargo
CHART_CRD := charts/wbc/templates/crds/writebehindcache.yaml
PIPELINE_ENV := charts/wbc/files/pipeline-env.yaml

.PHONY: run test lint fmt build deps clean chaos failpoints k8s-apiserver crds openapi contract chart-test bench bench-deps e2e chaos-k8s \
	kind-up kind-down e2e-kind chaos-kind

run:
	./scripts/run.sh

deps:
	./scripts/ensure-deps.sh

build:
	$(CARGO) build --workspace --all-targets --all-features

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	python3 observability/dashboard.py --check
	promtool check rules observability/prometheus/alerts.yaml
	cd observability/prometheus && promtool test rules alerts_test.yaml

test: deps bench-deps lint k8s-apiserver
	@# A test skips only where a person asked for it (WBC_SKIP_K8S_TESTS=1); it then prints SKIPPED: and
	@# records it here, and the run says how many were skipped.
	skipped=$$(mktemp) && WBC_SKIPPED_LOG=$$skipped $(CARGO) test --workspace --all-features -- --test-threads=4; \
		status=$$?; echo "skipped tests: $$(grep -c '^SKIPPED:' $$skipped)"; sed 's/^/  /' $$skipped; rm -f $$skipped; exit $$status
	@# Smoke run of the benchmarks (debug build, already built by the tests): it must complete and
	@# report; timings are never asserted.
	$(CARGO) build -p wbc-api -p wbc-worker -p wbc-bench
	out=$$(mktemp -d) && $(CARGO) run -q -p wbc-bench -- --quick --out $$out && test -s $$out/report.md && rm -rf $$out
	./scripts/e2e-local.sh
	./scripts/contract.sh
	./scripts/chart/test.sh
	@# The chart on this machine's own Kubernetes node: install, status, mode switches under load, a
	@# small pod-kill chaos, upgrade and uninstall (the first run also builds the node, ~5 minutes).
	WBC_CHAOS_DURATION=30 ./scripts/k8s/e2e.sh

fmt:
	$(CARGO) fmt --all

# kube-apiserver and etcd for the controller's tests, built once into ~/.cache/wbc-k8s (about 5 minutes
# cold). Where it cannot be built, the run fails; WBC_SKIP_K8S_TESTS=1 skips those tests on purpose.
k8s-apiserver:
	[ "$${WBC_SKIP_K8S_TESTS:-}" = 1 ] || ./scripts/k8s-apiserver.sh build

# Regenerates the CRD (manifests/ and the chart's copy) and the chart's list of pipeline variables from the
# Rust types; a test fails when they drift. Then scripts/chart/render.sh derives the chart's `cache` values,
# their schema and the README's table from the CRD.
crds:
	$(CARGO) run -q -p wbc-controller --bin crdgen > manifests/crd.yaml.tmp && mv manifests/crd.yaml.tmp manifests/crd.yaml
	$(CARGO) run -q -p wbc-controller --bin crdgen -- --chart > $(CHART_CRD).tmp && mv $(CHART_CRD).tmp $(CHART_CRD)
	$(CARGO) run -q -p wbc-controller --bin crdgen -- --pipeline-env > $(PIPELINE_ENV).tmp && mv $(PIPELINE_ENV).tmp $(PIPELINE_ENV)

# Regenerates api/openapi.json, the API's OpenAPI document (GET /openapi.json), from the Rust types and
# handlers; a test fails when the committed copy drifts.
openapi:
	$(CARGO) run -q -p wbc-api --bin openapi > api/openapi.json.tmp && mv api/openapi.json.tmp api/openapi.json

# The API contract's fuzzing at length: schemathesis against the local stack, as `make test` runs it but
# with 300 examples per operation and phase and up to 10 minutes (CONTRACT_SEED repeats a run).
contract:
	$(CARGO) build -p wbc-api -p wbc-worker
	CONTRACT_EXAMPLES=$(or $(EXAMPLES),300) CONTRACT_MAX_TIME=$(or $(MAX_TIME),600) ./scripts/contract.sh

# Kills and restarts workers, the API, PostgreSQL and Redis under load, then checks every
# acknowledged write. Sized by e.g. `make chaos DURATION=60 WORKERS=3 KEYS=500 WRITERS=16`;
# unset sizes take the test's defaults (20 s, 2 workers, 200 keys, 8 writers).
chaos: deps
	$(CARGO) build --all-features -p wbc-api --bin wbc-api
	CHAOS_DURATION_SECS=$(DURATION) CHAOS_WORKERS=$(WORKERS) CHAOS_KEYS=$(KEYS) CHAOS_WRITERS=$(WRITERS) \
		$(CARGO) test --all-features -p wbc-worker --test chaos -- --nocapture

# Crashes (abort) and fails (error) each named failpoint of the queue protocol in turn under a small
# load, then checks every guarantee and prints a table of points × outcomes; `make test` runs it too.
# `make failpoints ONLY=loss` runs the points whose name contains "loss".
failpoints: deps
	$(CARGO) build --all-features -p wbc-api -p wbc-worker
	FAILPOINTS_ONLY=$(ONLY) $(CARGO) test --all-features -p wbc-worker --test failpoints

# Benchmarks, each a ratio against a baseline measured in the same run (a few minutes; `make bench
# BENCH_ARGS=--quick` takes about one). Writes bench/results/report.md and its charts.
bench: deps bench-deps
	$(CARGO) build --release -p wbc-api -p wbc-worker -p wbc-bench
	$(CARGO) run -q --release -p wbc-bench -- $(BENCH_ARGS)

bench-deps:
	./scripts/ensure-deps.sh bench

clean:
	rm -rf .data

# The Helm chart's render-level tests (tests/chart) in their own venv (~/.cache/wbc-venv, made once);
# `scripts/chart/render.sh` regenerates the chart's generated files that they check.
chart-test:
	./scripts/chart/test.sh

# The end-to-end suite (tests/e2e) on this machine's own single-node Kubernetes, started and stopped
# by scripts/k8s/e2e.sh; `make e2e E2E_ARGS="-k switch"` picks tests.
e2e:
	./scripts/k8s/e2e.sh $(E2E_ARGS)

# Pod-kill chaos under load on the local node: `make chaos-k8s DURATION=120 INTERVAL=8 WRITERS=4 KEYS=300
# RATE=200` (unset sizes: 60 s, a kill every 8 s, 4 writers, 300 keys, 200 writes/s). chaos-kind runs the
# same on kind.
CHAOS_K8S_ENV = WBC_CHAOS_DURATION=$(or $(DURATION),60) WBC_CHAOS_INTERVAL=$(or $(INTERVAL),8) \
	WBC_CHAOS_WRITERS=$(or $(WRITERS),4) WBC_CHAOS_KEYS=$(or $(KEYS),300) WBC_CHAOS_RATE=$(or $(RATE),200)
chaos-k8s:
	$(CHAOS_K8S_ENV) ./scripts/k8s/e2e.sh -k chaos

# kind (needs Docker, kind and helm): the cluster of kind-config.yaml with the images, the monitoring
# stacks and the chart; kind-down deletes it; e2e-kind and chaos-kind run the end-to-end suite there.
kind-up:
	./scripts/kind/kind.sh up

kind-down:
	./scripts/kind/kind.sh down

e2e-kind:
	./scripts/kind/kind.sh e2e $(E2E_ARGS)

chaos-kind:
	$(CHAOS_K8S_ENV) ./scripts/kind/kind.sh e2e -k chaos
