# The core without an OS (issue 15): `make test-firmware` checks that latchkey-core builds `#![no_std]` for a
# Cortex-M4 (with no features at all, and with the RustCrypto provider), runs the whole core test suite on the
# host without ring (RustCrypto provider, ed25519-dalek, p256) and the pure-Rust signatures against ring's,
# then builds examples/firmware (a standalone
# Cargo project, not a workspace member), runs it under QEMU with a timeout — it reproduces the shared vectors
# in both roles on the emulated device — and prints the flash and peak-RAM budget beside the goal.
# Then `test-firmware-network` (part B): the doorbell firmware in QEMU, its UART on a socket, a gateway
# (runtime example uart_gateway) to a `latchkey relay run`, and a phone (`latchkey message send`) that reaches
# the device by its relay name; see examples/firmware/network-test.sh.

FW_TARGET := thumbv7em-none-eabihf
FW_DIR := $(ROOT)/examples/firmware
FW_ELF := $(CARGO_TARGET_DIR)/$(FW_TARGET)/release/latchkey-firmware
FW_DOORBELL_ELF := $(CARGO_TARGET_DIR)/$(FW_TARGET)/release/latchkey-doorbell
FW_TIMEOUT ?= 120
FW_NETWORK_TIMEOUT ?= 240

TEST_TARGETS += test-firmware
DEPS_TARGETS += deps-firmware

.PHONY: deps-firmware test-firmware test-firmware-network run-firmware

deps-firmware:
	@command -v arm-none-eabi-size >/dev/null && command -v qemu-system-arm >/dev/null || { \
	  echo "installing gcc-arm-none-eabi (for arm-none-eabi-size) and qemu-system-arm with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-arm-none-eabi qemu-system-arm >/dev/null; }
	@rustup target list --installed | grep -qx $(FW_TARGET) || { \
	  echo "installing the $(FW_TARGET) Rust target"; rustup target add $(FW_TARGET); }

test-firmware: deps-firmware
	cargo build -q -p latchkey-core --no-default-features --target $(FW_TARGET)
	cargo clippy -q -p latchkey-core --no-default-features --features rustcrypto --target $(FW_TARGET) -- -D warnings
	cargo clippy -q -p latchkey-core --all-targets --no-default-features --features std,rustcrypto,p256 -- -D warnings
	cargo test -q -p latchkey-core --no-default-features --features std,rustcrypto,p256
	cargo test -q -p latchkey-core --features rustcrypto,p256 --lib crypto::
	cd $(FW_DIR) && cargo fmt -- --check && cargo clippy -q --release --bins -- -D warnings && cargo build -q --release --bins
	$(FW_DIR)/check.sh $(FW_ELF) $(FW_TIMEOUT)
	$(MAKE) --no-print-directory test-firmware-network

# The device joins the network: relay process, QEMU device, gateway, phone (bounded by FW_NETWORK_TIMEOUT).
test-firmware-network: deps-firmware
	cd $(FW_DIR) && cargo build -q --release --bin latchkey-doorbell
	cargo build -q -p latchkey-cli
	cargo build -q -p latchkey-runtime --example uart_gateway
	$(FW_DIR)/network-test.sh $(CARGO_TARGET_DIR)/debug/latchkey $(CARGO_TARGET_DIR)/debug/examples/uart_gateway \
	  $(FW_DOORBELL_ELF) $(FW_NETWORK_TIMEOUT)

# The firmware alone, without the checks around it.
run-firmware: deps-firmware
	cd $(FW_DIR) && cargo build -q --release
	$(FW_DIR)/check.sh $(FW_ELF) $(FW_TIMEOUT)
