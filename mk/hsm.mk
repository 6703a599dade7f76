# Hardware vaults (issue 14): `make test-hsm` builds the core, facade and CLI with the cargo features `pkcs11`
# and `tpm`, and runs their tests against a throwaway SoftHSM2 token (its own SOFTHSM2_CONF and token
# directory in a temp dir, made by the tests) and swtpm instances (state in temp dirs, loopback ports): vault
# operations, channels in both roles between hardware and software identities over TCP, rotation followed
# by a pinning peer, OpenSC's view of the keys, typed errors (wrong PIN, missing module/token, removed key,
# TPM gone) and the `latchkey` binary as separate processes. The default build needs none of this.

HSM_FEATURES := pkcs11,tpm
# libtss2's own logging would print connection errors on purpose-made failures (the TPM-gone test).
HSM_ENV := TSS2_LOG=all+NONE

TEST_TARGETS += test-hsm
DEPS_TARGETS += deps-hsm

.PHONY: deps-hsm test-hsm clippy-hsm bench-hsm

deps-hsm:
	@command -v softhsm2-util >/dev/null && command -v pkcs11-tool >/dev/null && command -v swtpm >/dev/null \
	  && command -v swtpm_setup >/dev/null && command -v tpm2_startup >/dev/null && command -v pkg-config >/dev/null \
	  && pkg-config --exists tss2-esys && [ -e /usr/lib/softhsm/libsofthsm2.so ] || { \
	  echo "installing softhsm2 opensc swtpm swtpm-tools libtss2-dev pkg-config tpm2-tools with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    softhsm2 opensc swtpm swtpm-tools libtss2-dev pkg-config tpm2-tools >/dev/null; }

clippy-hsm:
	cargo clippy -p latchkey-core -p latchkey-runtime -p latchkey-facade --features $(HSM_FEATURES) --all-targets -- -D warnings
	cargo clippy -p latchkey-cli --features hsm --all-targets -- -D warnings

test-hsm: deps-hsm clippy-hsm
	$(HSM_ENV) cargo test -p latchkey-core --features $(HSM_FEATURES) --lib vault
	$(HSM_ENV) cargo test -p latchkey-facade --features $(HSM_FEATURES) --test hsm
	$(HSM_ENV) cargo test -p latchkey-cli --features hsm --test hsm

# Signatures/s through each vault and handshakes/s with the static key in the token (not part of `make test`).
bench-hsm: deps-hsm
	$(HSM_ENV) cargo run --release -p latchkey-bench --features hsm --bin hsm_bench
