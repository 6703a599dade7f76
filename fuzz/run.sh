#!/usr/bin/env bash
# Builds and runs the fuzz targets one after another, then prints one line per target: executions, CPU
# seconds (user + system of the fuzzer process) and the outcome.
#
#   fuzz/run.sh smoke SECONDS [TARGET...]   seeds only, in a fresh temporary corpus (make fuzz-smoke)
#   fuzz/run.sh long SECONDS [TARGET...]    the corpus in fuzz/corpus/<target> grows across runs (make fuzz)
#
# Seeds come from tests/vectors/*.json through `cargo run --example seed_corpus`. Crashes are written to
# fuzz/artifacts/<target>/; reproduce one with `<binary> <file>`, minimise it with `cargo +nightly fuzz tmin`.
# FUZZ_TARGET_DIR (default fuzz/target) is where cargo builds. Exits 1 if any target failed.
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:?usage: run.sh smoke|long SECONDS [TARGET...]}
seconds=${2:?usage: run.sh smoke|long SECONDS [TARGET...]}
shift 2
target_dir=${FUZZ_TARGET_DIR:-$PWD/target}
host=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin_dir=$target_dir/$host/release

echo "==> building the fuzz targets (cargo +nightly fuzz build, address sanitizer, debug assertions)"
cargo +nightly fuzz build --target-dir "$target_dir"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "==> writing seeds from tests/vectors"
cargo +nightly run -q --example seed_corpus --target-dir "$target_dir" -- "$work/seeds"

failed=()
total_cpu=0
printf '%-24s %12s %9s %10s  %s\n' target executions exec/s "CPU s" outcome
for t in "${targets[@]}"; do
  if [ "$mode" = long ]; then
    corpus=corpus/$t
  else
    corpus=$work/corpus/$t
  fi
  mkdir -p "$corpus" "artifacts/$t"
  cp -n "$work/seeds/$t"/* "$corpus"/ 2>/dev/null || true
  log=$work/$t.log
  TIMEFORMAT='%U %S'
  set +e
  { time "$bin_dir/$t" -max_total_time="$seconds" -timeout=60 -print_final_stats=1 \
      -artifact_prefix="artifacts/$t/" "$corpus" >"$log" 2>&1; } 2>"$work/$t.time"
  status=$?
  set -e
  read -r user sys <"$work/$t.time"
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.1f", u + s }')
  total_cpu=$(awk -v a="$total_cpu" -v b="$cpu" 'BEGIN { printf "%.1f", a + b }')
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if [ "$status" -eq 0 ]; then
    outcome=ok
  else
    outcome="FAILED (status $status; see artifacts/$t/)"
    failed+=("$t")
    grep -E 'panicked at|^[a-z].*failed|ERROR: |SUMMARY' "$log" | head -5 | sed 's/^/    /' || true
    cp "$log" "artifacts/$t/last-run.log"
  fi
  printf '%-24s %12s %9s %10s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$cpu" "$outcome"
done
echo "total CPU seconds fuzzed: $total_cpu"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets that failed: ${failed[*]}" >&2
  exit 1
fi
