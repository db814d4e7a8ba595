# vidgest: `make demo` and `make test` are all a fresh Debian 12 machine needs.
SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never
# The vendored ONNX Runtime (scripts/fetch-model): a release binary never searches the source
# tree or the current directory, so demo, tests and benchmarks name it.
export ORT_DYLIB_PATH ?= $(CURDIR)/vendor/onnxruntime/lib/libonnxruntime.so

.PHONY: all bootstrap build release deb demo test lint bench fuzz clean

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	$(CARGO) build

release: bootstrap
	$(CARGO) build --release

## The Debian package (docs/operations.md#package): a stripped release build, the systemd unit,
## /etc/vidgest/vidgest.toml, ONNX Runtime and the default model, written to
## target/debian/vidgest_<version>-1_amd64.deb (also with CARGO_TARGET_DIR set). Check it with
## `lintian target/debian/*.deb`; install with `apt install ./target/debian/vidgest_*.deb`.
deb: bootstrap
	@mkdir -p target/debian
	$(CARGO) deb --locked --strip --output target/debian/

## Runs the agent on configs/demo.toml: a looping video of real objects and a test pattern,
## recorded under data/demo. Ctrl-C stops it; then try:
##   target/release/vidgest fragments demo --config configs/demo.toml
##   target/release/vidgest clip demo --config configs/demo.toml --start -1m -o clip.mp4
## Once the first fragment is stored it prints the camera's HLS URL and a boto3 snippet.
demo: release
	@scripts/demo-banner http://127.0.0.1:8080 demo &
	$(CARGO) run --release --quiet -- run --config configs/demo.toml

# Examples first: integration tests run examples/test_camera as their RTSP camera.
test: bootstrap
	$(CARGO) build --examples
	$(CARGO) test --all-targets -- --test-threads=2

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

bench: release
	bench/recording.sh

## Fuzzing (needs the nightly toolchain and `cargo install cargo-fuzz`; see docs/testing.md).
## Not part of `make test`. FUZZ_RUNS=100000 make fuzz for a short pass.
FUZZ_RUNS ?= 10000000
fuzz:
	fuzz/run.sh $(FUZZ_RUNS)

clean:
	$(CARGO) clean
	rm -rf data
