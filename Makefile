# Latchkey: the two commands that matter are `make demo` and `make test` (see README.md).
# Each area adds its own suite in mk/<area>.mk: it appends its test target to TEST_TARGETS and, when it needs
# system packages or toolchains, its install target to DEPS_TARGETS. One target directory serves every suite.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export CARGO_TERM_COLOR ?= never
export CARGO_TARGET_DIR ?= $(CURDIR)/target
ROOT := $(CURDIR)

TEST_TARGETS := test-rust
DEPS_TARGETS := deps-rust
# Crates that `cargo test --workspace` must skip (e.g. extension modules tested through their own suite).
RUST_TEST_EXCLUDES :=
DEMO_TARGET := demo-core

include $(sort $(wildcard mk/*.mk))

.PHONY: help demo test deps test-rust deps-rust demo-core fmt clippy

help:
	@echo "make demo   - run the main demo"
	@echo "make test   - install what is missing, then run every test suite: $(TEST_TARGETS)"

demo: $(DEMO_TARGET)

test: deps
	@for t in $(TEST_TARGETS); do echo "==> make $$t"; $(MAKE) --no-print-directory $$t || exit 1; done
	@echo "==> all suites passed: $(TEST_TARGETS)"

deps: $(DEPS_TARGETS)

deps-rust:
	@command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup" >&2; exit 1; }
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

fmt:
	cargo fmt --all -- --check

clippy:
	cargo clippy --workspace --all-targets $(addprefix --exclude ,$(RUST_TEST_EXCLUDES)) -- -D warnings
	@# The facade without the runtime (the sans-IO surface alone) must stay clean too.
	cargo clippy -p latchkey-facade --no-default-features -- -D warnings

test-rust: fmt clippy
	cargo test --workspace $(addprefix --exclude ,$(RUST_TEST_EXCLUDES))

demo-core:
	cargo run --release -q -p latchkey-core --example handshake_demo
