# C ABI (ffi/, include/latchkey.h): `make test-c` checks that the committed header matches a fresh cbindgen
# run, builds the library, runs the C tests plainly and under valgrind, compiles the header alone as C11 and
# C++17, runs the C doorbell device against the Rust peer across processes, and the C relay doorbell (node API)
# and the C relay device (sans-IO device API, its own socket; the relay killed and restarted under it) behind a
# `latchkey relay run` process, reached by name by the `latchkey` CLI (plainly and under valgrind).

CBINDGEN_VERSION := 0.29.4
C_LIB_DIR := $(CARGO_TARGET_DIR)/debug
C_VALGRIND := valgrind -q --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=1 \
  --suppressions=$(CURDIR)/tests/c/valgrind.supp

TEST_TARGETS += test-c
DEPS_TARGETS += deps-c

.PHONY: deps-c header-c check-header-c test-c

deps-c:
	@command -v gcc >/dev/null && command -v g++ >/dev/null && command -v valgrind >/dev/null \
	  && command -v pkg-config >/dev/null && command -v python3 >/dev/null || { \
	  echo "installing gcc, g++, valgrind, pkg-config, python3 with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc g++ valgrind pkg-config python3 >/dev/null; }
	@[ "$$(cbindgen --version 2>/dev/null)" = "cbindgen $(CBINDGEN_VERSION)" ] || { \
	  echo "installing cbindgen $(CBINDGEN_VERSION)"; cargo install -q cbindgen --locked --version $(CBINDGEN_VERSION); }

# Regenerates the committed header after a change to ffi/src.
header-c:
	cbindgen --quiet --crate latchkey-ffi --output include/latchkey.h ffi

check-header-c:
	@fresh=$$(mktemp); trap 'rm -f "$$fresh"' EXIT; \
	cbindgen --quiet --crate latchkey-ffi --output "$$fresh" ffi; \
	if ! diff -u include/latchkey.h "$$fresh"; then \
	  echo "include/latchkey.h differs from a fresh cbindgen run: run 'make header-c' and commit it" >&2; exit 1; \
	fi; \
	echo "include/latchkey.h matches a fresh cbindgen generation"

# The test library (feature `test-vectors`, for test_vectors.c) is built first and copied aside; the plain build
# after it leaves the published library in $(C_LIB_DIR), which every other program links against.
C_TEST_LIB_DIR := $(C_LIB_DIR)/test-vectors-lib

test-c: deps-c check-header-c
	cargo build -q -p latchkey-ffi --features test-vectors
	mkdir -p $(C_TEST_LIB_DIR) && cp $(C_LIB_DIR)/liblatchkey_ffi.so $(C_TEST_LIB_DIR)/
	cargo build -q -p latchkey-ffi
	cargo build -q -p latchkey-facade --example direct_peer
	cargo build -q -p latchkey-cli
	$(MAKE) --no-print-directory -C tests/c LIB_DIR=$(C_LIB_DIR) TEST_LIB_DIR=$(C_TEST_LIB_DIR) header release-symbols run valgrind
	$(MAKE) --no-print-directory -C examples/c LIB_DIR=$(C_LIB_DIR)
	tests/c/cross_process.sh $(C_LIB_DIR)/examples/direct_peer $(C_LIB_DIR)/c-examples/doorbell
	tests/c/cross_process.sh $(C_LIB_DIR)/examples/direct_peer $(C_LIB_DIR)/c-examples/doorbell $(C_VALGRIND)
	tests/c/relay_cross_process.sh $(C_LIB_DIR)/latchkey $(C_LIB_DIR)/c-examples/relay_doorbell
	tests/c/relay_cross_process.sh $(C_LIB_DIR)/latchkey $(C_LIB_DIR)/c-examples/relay_doorbell $(C_VALGRIND)
	tests/c/relay_device_cross_process.sh $(C_LIB_DIR)/latchkey $(C_LIB_DIR)/c-examples/relay_device
	tests/c/relay_device_cross_process.sh $(C_LIB_DIR)/latchkey $(C_LIB_DIR)/c-examples/relay_device $(C_VALGRIND)
