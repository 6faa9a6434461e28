# shmring: every command a user or CI needs. `make demo` and `make test` each
# install what is missing (Debian packages via apt-get) and build first.

SHELL := /bin/bash
CARGO ?= cargo
# Debian packages the build, the tests and the demo need (libclang-dev: bindgen,
# for the iceoryx2 peer in the benchmarks). Installed only when missing.
APT_PACKAGES := pkg-config bc libasound2-dev libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad libclang-dev python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 python3-numpy
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The loom model explores every interleaving; bound preemptions so `make test` stays fast.
LOOM_MAX_PREEMPTIONS ?= 3

.PHONY: all deps build install uninstall demo test lint unit loom bench-smoke bench bench-ring fuzz fuzz-smoke soak clean

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
	$(CARGO) build --release -p gst-plugin-shmring

# ---- make install / make uninstall ----
# `make install` puts libgstshmring.so where GStreamer finds it without
# GST_PLUGIN_PATH: the user's plugin folder by default (no sudo), or with
# PREFIX (e.g. PREFIX=/usr, Debian GStreamer's own folder) into
# $(PREFIX)/lib/<multiarch>/gstreamer-1.0, through sudo only when that folder
# is not writable. It writes a manifest (each file with its sha256, each folder
# it created) so that `make uninstall` (same PREFIX) removes exactly that: a
# file changed since is kept, a folder is removed only if install created it
# and it is empty. INSTALL_PROFILE=debug installs the debug build (the tests).
INSTALL_PROFILE ?= release
USER_DATA_DIR := $(or $(XDG_DATA_HOME),$(HOME)/.local/share)
ifeq ($(strip $(PREFIX)),)
GST_PLUGIN_INSTALL_DIR ?= $(USER_DATA_DIR)/gstreamer-1.0/plugins
INSTALL_MANIFEST ?= $(USER_DATA_DIR)/shmring/install-manifest
else
MULTIARCH := $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null)
GST_PLUGIN_INSTALL_DIR ?= $(PREFIX)/lib/$(MULTIARCH)/gstreamer-1.0
INSTALL_MANIFEST ?= $(PREFIX)/share/shmring/install-manifest
endif

# Shared by both targets (bash): $sudo when a folder to write is not writable,
# and remove_manifested (what uninstall does; install first undoes an earlier
# install at the same place).
define INSTALL_LIB
set -euo pipefail
dir='$(GST_PLUGIN_INSTALL_DIR)'; manifest='$(INSTALL_MANIFEST)'; so=libgstshmring.so
sudo=''
for d in "$$dir" "$$(dirname "$$manifest")"; do
  e="$$d"; while [ ! -e "$$e" ]; do e=$$(dirname "$$e"); done
  [ -w "$$e" ] || sudo=sudo
done
remove_manifested() {
  local kind sum path dirs=()
  while IFS=$$'\t' read -r kind sum path; do
    case "$$kind" in
      file)
        if [ ! -e "$$path" ]; then echo "already gone: $$path"
        elif [ "$$(sha256sum < "$$path" | cut -d' ' -f1)" = "$$sum" ]; then $$sudo rm -f "$$path"; echo "removed $$path"
        else echo "kept $$path: changed since it was installed"; fi ;;
      dir) dirs=("$$path" "$${dirs[@]}") ;;
    esac
  done < "$$manifest"
  $$sudo rm -f "$$manifest"
  for d in "$${dirs[@]}"; do
    [ -d "$$d" ] && [ -z "$$(ls -A "$$d")" ] && $$sudo rmdir "$$d" && echo "removed $$d/" || true
  done
}
endef
export INSTALL_LIB

define INSTALL_SH
$(INSTALL_LIB)
src='$(CURDIR)/target/$(INSTALL_PROFILE)'/$$so
[ -f "$$src" ] || { echo "$$src is missing"; exit 1; }
[ ! -f "$$manifest" ] || remove_manifested
created=()
for d in "$$dir" "$$(dirname "$$manifest")"; do
  new=(); e="$$d"; while [ ! -e "$$e" ]; do new=("$$e" "$${new[@]}"); e=$$(dirname "$$e"); done
  created+=("$${new[@]}"); $$sudo mkdir -p "$$d"
done
$$sudo install -m 0644 "$$src" "$$dir/$$so"
{ echo "# written by shmring's make install, read by make uninstall: kind, sha256, path (tab-separated)"
  for d in "$${created[@]}"; do printf 'dir\t-\t%s\n' "$$d"; done
  printf 'file\t%s\t%s\n' "$$(sha256sum < "$$dir/$$so" | cut -d' ' -f1)" "$$dir/$$so"
} | $$sudo tee "$$manifest" > /dev/null
echo "installed $$dir/$$so (manifest: $$manifest)"
sys=$$(pkg-config --variable=pluginsdir gstreamer-1.0 2>/dev/null || true)
case "$$dir" in
  '$(USER_DATA_DIR)/gstreamer-1.0/plugins'|"$$sys") ;;
  *) echo "note: this GStreamer scans $${sys:-its own folder} and the user's folder, not $$dir;"
     echo "      use PREFIX=/usr, or export GST_PLUGIN_PATH=$$dir" ;;
esac
endef
export INSTALL_SH

define UNINSTALL_SH
$(INSTALL_LIB)
if [ -f "$$manifest" ]; then remove_manifested; else echo "nothing to uninstall: no $$manifest"; fi
endef
export UNINSTALL_SH

install: deps
	$(CARGO) build $(if $(filter release,$(INSTALL_PROFILE)),--release) -p gst-plugin-shmring
	@bash -c "$$INSTALL_SH"

uninstall:
	@bash -c "$$UNINSTALL_SH"

PLUGIN_DIR := $(CURDIR)/target/release
DEMO_DIR := $(CURDIR)/target/demo

# The headline: two gst-launch-1.0 processes joined by shmringsink -> shmringsrc,
# 1080p video and audio for a few seconds; the receiver reports frames/s and
# writes a PNG of a received frame. Then the ring demos: two processes streaming
# 10 million u64 (eventfd, then pipe wake-ups) and one mio loop serving three
# producer processes.
demo: build
	@mkdir -p $(DEMO_DIR); rm -f $(DEMO_DIR)/*.sock $(DEMO_DIR)/frame.png $(DEMO_DIR)/audio.wav $(DEMO_DIR)/recording.avi
	@echo "--- gst-launch-1.0: 1080p RGBA video through shmringsink -> shmringsrc ---"
	@export GST_PLUGIN_PATH=$(PLUGIN_DIR); \
	gst-launch-1.0 -q \
	  videotestsrc num-buffers=600 pattern=smpte ! video/x-raw,format=RGBA,width=1920,height=1080,framerate=60/1 ! shmringsink socket-path=$(DEMO_DIR)/video.sock sync=false & snd=$$!; \
	start=$$(date +%s.%N); \
	gst-launch-1.0 -q \
	  shmringsrc socket-path=$(DEMO_DIR)/video.sock ! tee name=t \
	    t. ! queue ! fakesink sync=false \
	    t. ! queue leaky=downstream max-size-buffers=1 ! videorate drop-only=true max-rate=1 ! videoconvert ! pngenc ! multifilesink location=$(DEMO_DIR)/frame.png; rc=$$?; \
	end=$$(date +%s.%N); wait $$snd || rc=1; \
	echo "received 600 frames of 1920x1080 RGBA in $$(echo "$$end - $$start" | bc) s: $$(echo "600 / ($$end - $$start)" | bc) frames/s (unsynchronised: as fast as videotestsrc draws; the receiver also writes a PNG per second of stream)"; \
	ls -l $(DEMO_DIR)/frame.png; exit $$rc
	@echo "--- gst-launch-1.0: fan-out, one live 720p sender, two consumers at once (a JPEG/AVI recorder and a counter) ---"
	@export GST_PLUGIN_PATH=$(PLUGIN_DIR); rm -f $(DEMO_DIR)/fan.sock $(DEMO_DIR)/recording.avi; \
	gst-launch-1.0 -q \
	  videotestsrc is-live=true num-buffers=90 pattern=ball ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 ! shmringsink socket-path=$(DEMO_DIR)/fan.sock & snd=$$!; \
	while [ ! -S $(DEMO_DIR)/fan.sock ]; do sleep 0.05; done; \
	gst-launch-1.0 -q -e shmringsrc socket-path=$(DEMO_DIR)/fan.sock ! jpegenc ! avimux ! filesink location=$(DEMO_DIR)/recording.avi & rec=$$!; \
	n=$$(gst-launch-1.0 -v shmringsrc socket-path=$(DEMO_DIR)/fan.sock ! fakesink sync=false silent=false 2>/dev/null | grep -c 'last-message = chain'); \
	echo "counter consumer received $$n of 90 frames (it joined a few ms after the recorder)"; rc=0; [ "$$n" -gt 0 ] || rc=1; \
	wait $$rec || rc=1; wait $$snd || rc=1; ls -l $(DEMO_DIR)/recording.avi; exit $$rc
	@echo "--- gst-launch-1.0: 3 s of 48 kHz stereo audio in real time through shmringsink -> shmringsrc ---"
	@export GST_PLUGIN_PATH=$(PLUGIN_DIR); \
	gst-launch-1.0 -q \
	  audiotestsrc num-buffers=300 samplesperbuffer=480 ! audio/x-raw,format=S16LE,rate=48000,channels=2 ! shmringsink socket-path=$(DEMO_DIR)/audio.sock & snd=$$!; \
	gst-launch-1.0 -q \
	  shmringsrc socket-path=$(DEMO_DIR)/audio.sock ! audioconvert ! wavenc ! filesink location=$(DEMO_DIR)/audio.wav; rc=$$?; \
	wait $$snd || rc=1; ls -l $(DEMO_DIR)/audio.wav; exit $$rc
	./target/release/stream_demo --items 10000000
	./target/release/stream_demo --items 10000000 --pipe
	@echo "--- a frame stream between two processes: frames from 1 byte to 8 MiB, then end-of-stream ---"
	./target/release/frame_stream --frames 200
	@echo "--- one mio event loop, three producer processes ---"
	@sock=$$(mktemp -u /tmp/shmring-mio-demo.XXXXXX.sock); \
	./target/release/mio_consumer $$sock --expect 3 & cons=$$!; \
	pids=""; for i in 1 2 3; do ./target/release/mio_producer $$sock --items 3000000 & pids="$$pids $$!"; done; \
	ok=0; for p in $$pids; do wait $$p || ok=1; done; wait $$cons || ok=1; exit $$ok

test: deps lint unit loom bench-smoke fuzz-smoke

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

# The gst-launch tests load target/debug/libgstshmring.so: build it first.
unit:
	$(CARGO) build -p gst-plugin-shmring
	$(CARGO) test --workspace

loom:
	LOOM_MAX_PREEMPTIONS=$(LOOM_MAX_PREEMPTIONS) RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
	  $(CARGO) test -p shmring --test loom --release

# The benchmark runners on a tiny workload: proves they build, run and check data.
bench-smoke:
	$(CARGO) bench -p shmring-benches --bench compare -- --smoke
	$(CARGO) bench -p shmring-benches --bench wake_latency -- --smoke
	$(CARGO) bench -p shmring-benches --bench audio_push -- --smoke
	$(CARGO) bench -p shmring-benches --bench messages -- --smoke
	$(CARGO) bench -p shmring-benches --bench latency -- --smoke
	$(CARGO) build -p gst-plugin-shmring
	SHMRING_GST_PLUGIN_DIR=$(CURDIR)/target/debug $(CARGO) bench -p shmring-benches --bench gst_pipelines -- --smoke

# Full benchmarks: one table per runner in target/bench-*.md, all of them in
# target/bench-report.md, and the plots (SVG) in target/ and docs/bench/,
# which the README embeds.
BENCH_RUNNERS = compare latency wake_latency messages gst_pipelines audio_push
BENCH_REPORTS = compare latency wake messages gst audio
bench: deps
	$(CARGO) build --release -p gst-plugin-shmring
	for r in $(BENCH_RUNNERS); do $(CARGO) bench -p shmring-benches --bench $$r || exit 1; done
	{ echo "# shmring benchmark report"; echo; \
	  echo "Written by \`make bench\` on $$(date -u +%Y-%m-%d). Each table compares paths measured in the same run."; \
	  for f in $(BENCH_REPORTS); do echo; echo "## $$f"; echo; cat target/bench-$$f.md; done; } > target/bench-report.md
	mkdir -p docs/bench
	cp target/bench-messages.svg target/bench-latency.svg docs/bench/
	@echo "report: target/bench-report.md; plots: docs/bench/*.svg"

# The criterion micro-benchmarks of the ring (not part of `make bench`).
bench-ring:
	$(CARGO) bench -p shmring-benches --bench ring

# Crash soak: producer and consumer processes killed at random for
# SOAK_SECONDS; prints kills survived, items delivered, lost (0) and leaks (0).
SOAK_SECONDS ?= 300
soak: deps
	$(CARGO) build --release -p shmring-examples --bin soak
	./target/release/soak --seconds $(SOAK_SECONDS)

# Real coverage-guided fuzzing of every parser of peer input (libFuzzer via
# cargo-fuzz, FUZZ_SECONDS per target). cargo-fuzz needs nightly features:
# RUSTC_BOOTSTRAP=1 lets the stable toolchain provide them. New inputs land in
# fuzz/corpus/<target>/ (replayed by `make test`), crashes in fuzz/artifacts/.
# peer_strings runs without leak detection: GStreamer keeps its initialisation
# and every field name it has parsed (GQuarks) for the life of the process.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := hello welcome descriptor ring_header peer_strings link
fuzz: deps
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  leaks=1; [ $$t = peer_strings ] && leaks=0; \
	  dirs=corpus/$$t; [ -n "$(FUZZ_SCRATCH)" ] && mkdir -p $(FUZZ_SCRATCH)/$$t && dirs="$(FUZZ_SCRATCH)/$$t corpus/$$t"; \
	  G_DEBUG=fatal-criticals ASAN_OPTIONS=detect_leaks=$$leaks RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t $$dirs -- -max_total_time=$(FUZZ_SECONDS) -detect_leaks=$$leaks || exit 1; \
	done

# The fuzz targets for a short bounded time (make test; the corpus replay
# with mutations runs in `unit` as well). New inputs go to a scratch
# directory, so a test run leaves the checked-in corpus alone.
fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=10 FUZZ_SCRATCH=$(CURDIR)/target/fuzz-scratch

clean:
	$(CARGO) clean
