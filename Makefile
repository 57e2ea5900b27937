# wbc: `make run` starts the local stack, `make test` runs every test and lint.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/wbc-target
CARGO ?= cargo

.PHONY: run test lint fmt build deps clean chaos

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

test: deps lint
	$(CARGO) test --workspace --all-features -- --test-threads=4
	./scripts/e2e-local.sh

fmt:
	$(CARGO) fmt --all

# Kills and restarts workers, the API, PostgreSQL and Redis under load, then checks every
# acknowledged write. Sized by e.g. `make chaos DURATION=60 WORKERS=3 KEYS=500 WRITERS=16`;
# unset sizes take the test's defaults (20 s, 2 workers, 200 keys, 8 writers).
chaos: deps
	$(CARGO) build --all-features -p wbc-api --bin wbc-api
	CHAOS_DURATION_SECS=$(DURATION) CHAOS_WORKERS=$(WORKERS) CHAOS_KEYS=$(KEYS) CHAOS_WRITERS=$(WRITERS) \
		$(CARGO) test --all-features -p wbc-worker --test chaos -- --nocapture

clean:
	rm -rf .data
