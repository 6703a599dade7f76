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
