# Performance suite (bench/, crate latchkey-bench): `make bench` measures the core beside snow, rustls and raw
# ring, and the runtime beside direct TCP, stunnel and `ssh -L`, in one run; it prints one table and rewrites
# the generated block of docs/PERFORMANCE.md. It is not part of `make test` (timings are never asserted);
# `make test` still builds, lints and unit-tests the crate through the workspace. BENCH_QUICK=1 gives a rough
# table in seconds, for checking the suite rather than for numbers.

BENCH_DOC := docs/PERFORMANCE.md

.PHONY: bench deps-bench

# The portal row's peers: stunnel (mutual TLS) and OpenSSH (`ssh -L` to a private sshd on loopback).
deps-bench:
	@command -v stunnel4 >/dev/null && [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null \
	  && command -v ssh-keygen >/dev/null || { \
	  echo "installing stunnel4, openssh-server, openssh-client with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    stunnel4 openssh-server openssh-client >/dev/null; }

bench: deps-bench
	cargo build --release -q -p latchkey-bench
	$(if $(BENCH_QUICK),LATCHKEY_BENCH_QUICK=1) $(CARGO_TARGET_DIR)/release/latchkey-bench --write $(BENCH_DOC)
