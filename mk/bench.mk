# Performance suite (bench/, crate latchkey-bench): `make bench` measures the core beside snow, rustls and raw
# ring in one run, prints one table and rewrites the generated block of docs/PERFORMANCE.md. It is not part of
# `make test` (timings are never asserted); `make test` still builds, lints and unit-tests the crate through the
# workspace. BENCH_QUICK=1 gives a rough table in seconds, for checking the suite rather than for numbers.

BENCH_DOC := docs/PERFORMANCE.md

.PHONY: bench

bench:
	cargo build --release -q -p latchkey-bench
	$(if $(BENCH_QUICK),LATCHKEY_BENCH_QUICK=1) $(CARGO_TARGET_DIR)/release/latchkey-bench --write $(BENCH_DOC)
