# wbc: `make run` starts the local stack, `make test` runs every test and lint.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/wbc-target
CARGO ?= cargo

.PHONY: run test lint fmt build deps clean

run:
	./scripts/run.sh

deps:
	./scripts/ensure-deps.sh

build:
	$(CARGO) build --workspace --all-targets --all-features

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

test: deps lint
	$(CARGO) test --workspace --all-features -- --test-threads=4
	./scripts/e2e-local.sh

fmt:
	$(CARGO) fmt --all

clean:
	rm -rf .data
