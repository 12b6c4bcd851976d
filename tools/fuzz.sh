#!/usr/bin/env bash
# Fuzz every parser of untrusted input (fuzz/fuzz_targets), FUZZ_SECONDS each (default 600),
# from the committed seed corpora (fuzz/seeds/TARGET). Not part of CI. Needs the nightly
# toolchain (`rustup toolchain install nightly`) and cargo-fuzz (`cargo install cargo-fuzz`).
# New inputs go to fuzz/corpus/TARGET (not committed); a crash stops the run and is saved under
# fuzz/artifacts/TARGET: fix it, and add the input as a regression test.
# Prints a table: target, seconds, executions, executions per second, corpus size, coverage.
#   FUZZ_SECONDS=60 bash tools/fuzz.sh            # all targets
#   FUZZ_SECONDS=60 bash tools/fuzz.sh deb rpm    # some
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-600}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
# All targets at once (they share the instrumented build of strata); its errors if it fails.
cargo +nightly fuzz build -O >/dev/null 2>&1 || { cargo +nightly fuzz build -O; exit 1; }
printf '| target | seconds | executions | exec/s | corpus | coverage |\n|---|---|---|---|---|---|\n'
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  log=$(mktemp)
  start=$(date +%s)
  if ! cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=1048576 -print_final_stats=1 >"$log" 2>&1; then
    echo "$t: crashed; see $log and fuzz/artifacts/$t" >&2
    tail -40 "$log" >&2
    exit 1
  fi
  took=$(( $(date +%s) - start ))
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  speed=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  corpus=$(find "corpus/$t" -type f | wc -l)
  printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "$took" "$runs" "$speed" "$corpus" "$cov"
  rm -f "$log"
done
