# shmring: every command a user or CI needs. `make demo` and `make test` each
# install what is missing (Debian packages via apt-get) and build first.

SHELL := /bin/bash
CARGO ?= cargo
# Debian packages the build, the tests and the demo need. Installed only when missing.
APT_PACKAGES := pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The loom model explores every interleaving; bound preemptions so `make test` stays fast.
LOOM_MAX_PREEMPTIONS ?= 3

.PHONY: all deps build demo test lint unit loom bench-smoke bench clean

all: build

deps:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)"; exit 1; }
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt-get install:$$missing"; \
	  $(SUDO) apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt 2>/dev/null || true

build: deps
	$(CARGO) build --release --workspace --bins

# Two real processes stream 10 million items over a socket path (eventfd, then
# pipe wake-ups); then one mio loop serves three producer processes at once.
demo: build
	./target/release/stream_demo --items 10000000
	./target/release/stream_demo --items 10000000 --pipe
	@echo "--- one mio event loop, three producer processes ---"
	@sock=$$(mktemp -u /tmp/shmring-mio-demo.XXXXXX.sock); \
	./target/release/mio_consumer $$sock --expect 3 & cons=$$!; \
	pids=""; for i in 1 2 3; do ./target/release/mio_producer $$sock --items 3000000 & pids="$$pids $$!"; done; \
	ok=0; for p in $$pids; do wait $$p || ok=1; done; wait $$cons || ok=1; exit $$ok

test: deps lint unit loom bench-smoke

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

loom:
	LOOM_MAX_PREEMPTIONS=$(LOOM_MAX_PREEMPTIONS) RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
	  $(CARGO) test -p shmring --test loom --release

# The benchmark runners on a tiny workload: proves they build, run and check data.
bench-smoke:
	$(CARGO) bench -p shmring-benches --bench compare -- --smoke
	$(CARGO) bench -p shmring-benches --bench wake_latency -- --smoke

# Full benchmarks: tables in target/bench-compare.md and target/bench-wake.md.
bench: deps
	$(CARGO) bench -p shmring-benches --bench compare
	$(CARGO) bench -p shmring-benches --bench wake_latency
	$(CARGO) bench -p shmring-benches --bench ring

clean:
	$(CARGO) clean
