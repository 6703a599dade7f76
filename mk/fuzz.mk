# Fuzzing (fuzz/: a cargo-fuzz project with a workspace of its own, so the main workspace neither builds it
# nor needs nightly). `make fuzz-smoke` (part of `make test`) builds every target and runs each for
# FUZZ_SMOKE_SECONDS from seeds made of tests/vectors; `make fuzz` runs each for FUZZ_SECONDS (default 600)
# on the corpus it keeps in fuzz/corpus. `make fuzz FUZZ_TARGETS="decode_history ffi_channel"` picks targets.
# Crashes land in fuzz/artifacts/<target>/. The targets and their checks: fuzz/README.md.

CARGO_FUZZ_VERSION := 0.13.2
FUZZ_SMOKE_SECONDS ?= 6
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?=
# cargo fuzz builds with its own flags (sanitizer, coverage): keep it out of the shared target directory.
FUZZ_ENV := FUZZ_TARGET_DIR=$(ROOT)/fuzz/target

TEST_TARGETS += fuzz-smoke
DEPS_TARGETS += deps-fuzz

.PHONY: deps-fuzz fuzz-smoke fuzz

deps-fuzz:
	@command -v rustup >/dev/null || { echo "rustup not found: install Rust with rustup" >&2; exit 1; }
	@rustup run nightly rustc --version >/dev/null 2>&1 || { \
	  echo "installing the nightly toolchain (cargo fuzz needs it)"; rustup toolchain install nightly --profile minimal; }
	@command -v c++ >/dev/null && command -v cc >/dev/null || { \
	  echo "installing gcc and g++ (libFuzzer is C++) with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc g++ >/dev/null; }
	@[ "$$(cargo +nightly fuzz --version 2>/dev/null)" = "cargo-fuzz $(CARGO_FUZZ_VERSION)" ] || { \
	  echo "installing cargo-fuzz $(CARGO_FUZZ_VERSION)"; cargo install -q cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION); }

fuzz-smoke: deps-fuzz
	$(FUZZ_ENV) fuzz/run.sh smoke $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

fuzz: deps-fuzz
	$(FUZZ_ENV) fuzz/run.sh long $(FUZZ_SECONDS) $(FUZZ_TARGETS)
