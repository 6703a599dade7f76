# Python package `latchkey` (bindings/python): the wheel is what is tested, and it is the wheel users install.
# `make test-python` builds a manylinux2014 wheel (glibc >= 2.17: maturin links against that glibc with zig)
# and an sdist, prints `auditwheel show` for the wheel, installs the wheel into a fresh virtualenv and runs
# stubtest, mypy --strict and pytest against the installed copy.

PY_SRC := $(ROOT)/bindings/python
PY_WORK := $(CARGO_TARGET_DIR)/latchkey-python
PY_TOOLS := $(PY_WORK)/tools-venv
PY_TEST_VENV := $(PY_WORK)/test-venv
PY_WHEELS := $(PY_WORK)/wheels
# The wheel build links with zig against an old glibc, which changes how C dependencies are compiled: its own
# target directory keeps that from invalidating the other suites' builds.
PY_WHEEL_TARGET := $(PY_WORK)/target
PY_PLATFORM := manylinux2014
PYTHON3 ?= python3
MATURIN_VERSION := 1.16.0
PY_TEST_PACKAGES := pytest==9.2.0 mypy==2.4.1
PY_TOOL_PACKAGES := maturin==$(MATURIN_VERSION) ziglang==0.17.1 auditwheel==6.8.2 $(PY_TEST_PACKAGES)

TEST_TARGETS += test-python
DEPS_TARGETS += deps-python
# An extension module leaves the libpython symbols to the interpreter, so it cannot link test binaries; its
# tests are the pytest suite below (which also runs clippy on the crate).
RUST_TEST_EXCLUDES += latchkey-python

.PHONY: deps-python clippy-python test-python wheel-python check-sdist-python bench-python

deps-python:
	@command -v $(PYTHON3) >/dev/null && $(PYTHON3) -c 'import venv, ensurepip' 2>/dev/null && command -v gcc >/dev/null || { \
	  echo "installing python3 + venv, gcc (the C device the suite talks to) with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip gcc >/dev/null; }
	@# tests/test_hsm.py: an identity in a SoftHSM2 token, checked with OpenSC's pkcs11-tool.
	@command -v softhsm2-util >/dev/null && command -v pkcs11-tool >/dev/null && [ -e /usr/lib/softhsm/libsofthsm2.so ] || { \
	  echo "installing softhsm2 and opensc with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 opensc >/dev/null; }
	@if ! { [ -x $(PY_TOOLS)/bin/maturin ] && [ "$$($(PY_TOOLS)/bin/maturin --version)" = "maturin $(MATURIN_VERSION)" ] \
	        && [ -x $(PY_TOOLS)/bin/auditwheel ] && $(PY_TOOLS)/bin/python -c 'import pytest, mypy, ziglang' 2>/dev/null; }; then \
	  echo "creating $(PY_TOOLS) with $(PY_TOOL_PACKAGES)"; \
	  rm -rf $(PY_TOOLS) && $(PYTHON3) -m venv $(PY_TOOLS) && \
	  $(PY_TOOLS)/bin/pip install -q --disable-pip-version-check $(PY_TOOL_PACKAGES); \
	fi

# maturin finds zig (the ziglang package) on PATH. The wheel is abi3 (CPython >= 3.9), so one interpreter
# builds it for all. `auditwheel show` must confirm the manylinux2014 (manylinux_2_17) policy.
wheel-python: deps-python
	rm -rf $(PY_WHEELS)
	PATH="$(PY_TOOLS)/bin:$$PATH" CARGO_TARGET_DIR=$(PY_WHEEL_TARGET) $(PY_TOOLS)/bin/maturin build --release --quiet \
	  --zig --compatibility $(PY_PLATFORM) -m $(PY_SRC)/Cargo.toml -i $(PY_TOOLS)/bin/python -o $(PY_WHEELS)
	$(PY_TOOLS)/bin/maturin sdist -m $(PY_SRC)/Cargo.toml -o $(PY_WHEELS) >$(PY_WORK)/sdist.log 2>&1 \
	  || { cat $(PY_WORK)/sdist.log; exit 1; }
	@echo "==> auditwheel show $$(cd $(PY_WHEELS) && ls latchkey-*.whl)"
	@$(PY_TOOLS)/bin/auditwheel show $(PY_WHEELS)/latchkey-*.whl | tee $(PY_WHEELS)/auditwheel.txt
	@grep -q 'manylinux_2_17_' $(PY_WHEELS)/auditwheel.txt || { echo "the wheel is not manylinux2014" >&2; exit 1; }
	@ls $(PY_WHEELS)/latchkey-*$(PY_PLATFORM)*.whl $(PY_WHEELS)/latchkey-*.tar.gz

# The sdist builds on its own (outside the workspace), as `pip install latchkey-*.tar.gz` would build it. Not
# part of `make test` (a second release build); run it when packaging changes.
check-sdist-python: wheel-python
	rm -rf $(PY_WORK)/sdist-check && mkdir -p $(PY_WORK)/sdist-check
	tar -xzf $(PY_WHEELS)/latchkey-*.tar.gz -C $(PY_WORK)/sdist-check
	cd $(PY_WORK)/sdist-check/latchkey-* && PATH="$(PY_TOOLS)/bin:$$PATH" CARGO_TARGET_DIR=$(PY_WORK)/sdist-check/target \
	  $(PY_TOOLS)/bin/pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation -w $(PY_WORK)/sdist-check/dist .
	rm -rf $(PY_WORK)/sdist-venv && $(PYTHON3) -m venv $(PY_WORK)/sdist-venv
	$(PY_WORK)/sdist-venv/bin/pip install -q --disable-pip-version-check $(PY_WORK)/sdist-check/dist/latchkey-*.whl
	$(PY_WORK)/sdist-venv/bin/python -c 'import latchkey; print("sdist build OK: latchkey", latchkey.__version__)'

clippy-python:
	cargo fmt -p latchkey-python -- --check
	cargo clippy -p latchkey-python --all-targets -- -D warnings

# The vector tests need the test-only `set_ephemeral_for_test_vectors`, which the wheel does not have: a debug
# build of the extension with the `test-vectors` feature, copied aside (a later plain build would overwrite it)
# and loaded by tests/test_vectors.py beside the installed wheel.
PY_TESTING_EXT := $(PY_WORK)/testing/lib_latchkey.so

test-python: deps-python clippy-python wheel-python
	cargo build -q -p latchkey-python --features test-vectors
	mkdir -p $(dir $(PY_TESTING_EXT)) && cp $(CARGO_TARGET_DIR)/debug/lib_latchkey.so $(PY_TESTING_EXT)
	cargo build -q -p latchkey-facade --example direct_peer
	cargo build -q -p latchkey-ffi -p latchkey-cli
	$(MAKE) --no-print-directory -s -C $(ROOT)/examples/c LIB_DIR=$(CARGO_TARGET_DIR)/debug
	rm -rf $(PY_TEST_VENV)
	$(PYTHON3) -m venv $(PY_TEST_VENV)
	$(PY_TEST_VENV)/bin/pip install -q --disable-pip-version-check $(PY_WHEELS)/latchkey-*$(PY_PLATFORM)*.whl $(PY_TEST_PACKAGES)
	@# The shipped stubs against the compiled module, then the examples, tests and bench against the stubs.
	cd $(PY_WORK) && $(PY_TEST_VENV)/bin/python -m mypy.stubtest --ignore-disjoint-bases \
	  --allowlist $(PY_SRC)/stubtest-allowlist.txt latchkey
	$(PY_TEST_VENV)/bin/mypy --strict --cache-dir $(PY_WORK)/mypy-cache \
	  $(PY_SRC)/tests $(PY_SRC)/bench $(ROOT)/examples/python
	cd $(PY_SRC)/tests && LATCHKEY_TEST_VECTORS_EXT=$(PY_TESTING_EXT) LATCHKEY_DIRECT_PEER=$(CARGO_TARGET_DIR)/debug/examples/direct_peer \
	  LATCHKEY_C_DOORBELL=$(CARGO_TARGET_DIR)/debug/c-examples/doorbell LATCHKEY_CLI=$(CARGO_TARGET_DIR)/debug/latchkey \
	  $(PY_TEST_VENV)/bin/python -m pytest -q -p no:cacheprovider .

# Per-call cost of encrypt/decrypt from Python versus Rust (a benchmark, not a test).
bench-python: deps-python wheel-python
	cargo build -q --release -p latchkey-python --example bench_channel
	rm -rf $(PY_WORK)/bench-venv && $(PYTHON3) -m venv $(PY_WORK)/bench-venv
	$(PY_WORK)/bench-venv/bin/pip install -q --disable-pip-version-check $(PY_WHEELS)/latchkey-*.whl
	$(PY_WORK)/bench-venv/bin/python $(PY_SRC)/bench/bench_channel.py --rust $(CARGO_TARGET_DIR)/release/examples/bench_channel
