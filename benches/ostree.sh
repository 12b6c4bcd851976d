#!/usr/bin/env bash
# OSTree export benchmarks on descriptions/debian-base, side by side with `ostree commit
# --tree=dir=` of the same (laid-out) tree into the same repository mode (archive), in one run.
# Usage: sudo bash benches/ostree.sh      (RUNS=N for more runs; default 3)
# Prints markdown tables: medians of the timings, and the bytes a client downloads for a
# one-package update, through a static delta and without one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh >/dev/null
. benches/lib.sh
bench_dirs ostree 3
export STRATA_STORE=$work/store
transferred() { grep -o '[0-9.]* [kKMG]*i*B transferred' | tail -1 | awk '{print $1, $2}'; }

# The image and one derived image per run, each adding one package (not timed).
$strata -q build descriptions/debian-base >/dev/null
extra=(hello figlet sl bc tree jq ncdu htop)
for p in "${extra[@]}"; do
  mkdir -p "$work/plus-$p"
  printf '[image]\nname = "plus-%s"\nderived-from = "%s"\n\n[packages]\ninstall = ["%s"]\n' \
    "$p" "$PWD/descriptions/debian-base" "$p" > "$work/plus-$p/image.toml"
done
for i in $(seq "$runs"); do $strata -q build "$work/plus-${extra[$i]}" >/dev/null; done

# The laid-out tree, checked out for `ostree commit` (the layout step is strata's; the peer
# commits its result).
rm -rf "$work/scratch" "$work/tree"
layout=$($strata --json -q export descriptions/debian-base --repo "$work/scratch" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layout"]["tree"])')
$strata -q store checkout "$layout" "$work/tree" --link copy
files=$(find "$work/tree" -type f | wc -l)
bytes=$(du -sb "$work/tree" | cut -f1)

declare -a t_ostree t_cold t_noop t_add
for i in $(seq "$runs"); do
  rm -rf "$work/peer" "$work/repo"; sync
  ostree --repo="$work/peer" init --mode=archive
  t0=$(now); ostree --repo="$work/peer" commit -b bench --tree=dir="$work/tree" --timestamp=2024-01-01 >/dev/null; t1=$(now)
  t_ostree+=("$(elapsed "$t0" "$t1")"); sync

  t0=$(now); $strata -q export descriptions/debian-base --repo "$work/repo" --mode archive --ref bench >/dev/null; t1=$(now)
  t_cold+=("$(elapsed "$t0" "$t1")")
  t0=$(now); $strata -q export descriptions/debian-base --repo "$work/repo" --ref bench >/dev/null; t1=$(now)
  t_noop+=("$(elapsed "$t0" "$t1")")
  t0=$(now); $strata -q export "$work/plus-${extra[$i]}" --repo "$work/repo" --ref bench >/dev/null; t1=$(now)
  t_add+=("$(elapsed "$t0" "$t1")")
done

# Bytes for a one-package update: a client on the base commit pulls the next one.
rm -rf "$work/pub" "$work/src" "$work/client-"*
$strata -q export descriptions/debian-base --repo "$work/src" --mode archive --ref os/x86_64 >/dev/null
$strata -q push os/x86_64 --repo "$work/src" --to "$work/pub" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 "$port" --directory "$work/pub" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
sleep 1
for c in delta full; do
  ostree --repo="$work/client-$c" init --mode=bare
  ostree --repo="$work/client-$c" remote add --no-gpg-verify origin "http://127.0.0.1:$port/"
  ostree --repo="$work/client-$c" pull origin os/x86_64 >/dev/null 2>&1
done
$strata -q export "$work/plus-${extra[1]}" --repo "$work/src" --ref os/x86_64 --deltas 1 >/dev/null
$strata -q push os/x86_64 --repo "$work/src" --to "$work/pub" >/dev/null
b_delta=$(ostree --repo="$work/client-delta" pull --require-static-deltas origin os/x86_64 2>&1 | transferred)
b_full=$(ostree --repo="$work/client-full" pull --disable-static-deltas origin os/x86_64 2>&1 | transferred)
b_initial=$(du -sb "$work/pub/objects" | cut -f1)

mo=$(median "${t_ostree[@]}"); mc=$(median "${t_cold[@]}"); mn=$(median "${t_noop[@]}"); ma=$(median "${t_add[@]}")
echo "Tree: debian-base laid out, $files files, $bytes bytes; archive repositories; $runs runs (median)."
echo
echo "| operation | strata | \`ostree commit\` | ratio |"
echo "|---|---|---|---|"
echo "| cold commit into an empty repository | ${mc} s | ${mo} s | $(ratio "$mc" "$mo")x |"
echo "| export after adding one package | ${ma} s | (cold ${mo} s) | $(ratio "$ma" "$mo")x of a cold commit |"
echo "| export of an unchanged tree | ${mn} s | | |"
echo
echo "| one-package update, client download | bytes |"
echo "|---|---|"
echo "| static delta | $b_delta |"
echo "| objects (no delta) | $b_full |"
echo "| first pull (the whole archive repository) | $b_initial B |"
echo
echo "runs: ostree ${t_ostree[*]} | cold ${t_cold[*]} | unchanged ${t_noop[*]} | +1 package ${t_add[*]}"
