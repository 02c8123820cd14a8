#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ (cargo-fuzz, libFuzzer), one after the other, one process
# each, SECONDS each (default 60; CI runs them from scripts/test.sh). Prints execs and
# crashes per target; exits non-zero if any target crashed (the input is then in
# fuzz/artifacts/TARGET/, and `cargo +nightly fuzz run -s none -a TARGET FILE` replays it).
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# New inputs go to fuzz/target/corpus/TARGET (kept between local runs, never checked in);
# the checked-in seeds (fuzz/seeds/TARGET) are only read. Root: the extract target
# extracts layers as the store does (mknod, chown, a mount namespace of its own).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
if (($#)); then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
# -s none: the targets are safe Rust over libc calls; without ASan they run several times
# faster. -a: debug assertions and overflow checks, so an overflow is a crash.
opts=(-s none -a)
cargo +nightly fuzz build "${opts[@]}"
declare -A execs crashed
failed=0
for t in "${targets[@]}"; do
  corpus=target/corpus/$t
  mkdir -p "$corpus" "artifacts/$t"
  log=target/fuzz-$t.log
  extra=()
  [[ $t == extract ]] && extra+=(-max_len=16384)
  echo "fuzzing $t for ${secs}s" >&2
  set +e
  cargo +nightly fuzz run "${opts[@]}" "$t" "$corpus" "seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -print_final_stats=1 "${extra[@]}" >"$log" 2>&1
  rc=$?
  set -e
  execs[$t]=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  if ((rc != 0)); then
    crashed[$t]=1
    failed=1
    echo "---- $t crashed (exit $rc); the end of its log ($log):" >&2
    tail -n 60 "$log" >&2
  else
    crashed[$t]=0
  fi
done
printf '%-14s %12s %8s\n' target execs crashes
for t in "${targets[@]}"; do
  printf '%-14s %12s %8s\n' "$t" "${execs[$t]:-?}" "${crashed[$t]}"
done
exit "$failed"
