# Runtime (latchkey-runtime) and CLI (latchkey-cli, binary `latchkey`).
#
# Their tests (runtime/tests/*.rs: relay, nested channel, TCP cut, lossy UDP, 100 MB portal, bad input;
# cli/tests/cli.rs: the built binary as separate processes) are ordinary cargo integration tests on loopback,
# so the existing `test-rust` suite (`cargo test --workspace`) runs them; `test-runtime` runs just these two
# crates, for working on them.

DEMO_TARGET := demo-doorbell

.PHONY: demo-doorbell test-runtime

# The doorbell story: relay, doorbell behind it, phone watching the camera through a portal; a bit flipped
# at the relay is refused. Real loopback sockets, no set-up, a few seconds once built.
demo-doorbell:
	cargo run -q -p latchkey-runtime --example doorbell

test-runtime:
	cargo test -p latchkey-runtime -p latchkey-cli

# The soak test (runtime/tests/soak.rs): 1,000 channels through a relay on loopback while connections are
# cut and client nodes are killed and restarted; prints channels, messages, kills, restarts, peak RSS and fds.
# A release build: a debug build on a shared 2-core machine cannot open 1,000 channels and keep them busy in
# the time. LATCHKEY_SOAK_SECONDS (default 60) sets the chaos phase's length; `make soak` runs ten minutes.
TEST_TARGETS += test-soak
.PHONY: test-soak soak

test-soak:
	cargo test --release -p latchkey-runtime --test soak -- --ignored --nocapture

soak:
	LATCHKEY_SOAK_SECONDS=$${LATCHKEY_SOAK_SECONDS:-600} $(MAKE) --no-print-directory test-soak
