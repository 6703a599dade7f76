# Trust micro-benchmarks (bench/src/trust.rs, binary latchkey-bench-trust): credential verification with policy
# evaluation, delegation chains, the CPU cost of enrollment, the authority's durable enrollment throughput (SQLite,
# group commit, requests built beforehand, p50/p99), and encoded sizes, beside issue 13's targets. Not
# part of `make test` (timings are never asserted); `make test` still builds and lints it with the workspace.
# BENCH_QUICK=1 gives rough figures in seconds.

.PHONY: bench-trust

bench-trust:
	cargo build --release -q -p latchkey-bench --bin latchkey-bench-trust
	$(if $(BENCH_QUICK),LATCHKEY_BENCH_QUICK=1) $(CARGO_TARGET_DIR)/release/latchkey-bench-trust
