#!/usr/bin/env bash
# Image build benchmarks on descriptions/, side by side with KIWI (`kiwi-ng system prepare`) on an
# equivalent description: the same packages, user, root/ overlay and config.sh, generated from
# descriptions/debian-base with `strata describe --format xml` (only the repository differs in
# form: KIWI gets the host's mirror as an explicit apt repository, and a `tbz` type, because its
# oem and iso types require KIWI's own dracut modules, which Debian does not package).
# Usage: sudo bash benches/descriptions.sh      (RUNS=N for more runs; default 3)
# Prints a markdown table of medians. strata runs with a warm download cache; KIWI has none and
# downloads its packages on every run (that is part of what a KIWI rebuild costs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh >/dev/null
command -v kiwi-ng >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kiwi >/dev/null
work=${STRATA_BENCH_DIR:-/var/tmp/strata-bench}/descriptions
runs=${RUNS:-3}
mirror=$(bash tools/debian-mirror.sh)
strata=$PWD/target/release/strata
mkdir -p "$work/strata-downloads"

. benches/lib.sh
# `sync` after removing a previous store, so that its write-back does not land in the next timing.
fresh_store() { rm -rf "$1"; mkdir -p "$1/cache"; ln -s "$work/strata-downloads" "$1/cache/downloads"; sync; }
size() { du -sb "$1/objects" "$1/db.sqlite" | awk '{s+=$1} END {print s}'; }

# The KIWI description.
kdesc=$work/kiwi-description
kiwi_description "$kdesc" "$mirror" '    <type image="tbz"/>
' ''

# Descriptions that add one package to the base (a different one per run).
extra=(hello figlet sl bc tree jq ncdu htop)
for p in "${extra[@]}"; do
  mkdir -p "$work/plus-$p"
  printf '[image]\nname = "plus-%s"\nderived-from = "%s"\n\n[packages]\ninstall = ["%s"]\n' \
    "$p" "$PWD/descriptions/debian-base" "$p" > "$work/plus-$p/image.toml"
done

# Warm strata's download cache (not timed).
fresh_store "$work/store"
$strata -q --store "$work/store" build descriptions/debian-base >/dev/null
for d in debian-web debian-slim; do $strata -q --store "$work/store" build descriptions/$d >/dev/null; done
for p in "${extra[@]}"; do $strata -q --store "$work/store" package fetch --host-sources "$p" >/dev/null; done

declare -a t_kiwi t_cold t_noop t_add t_all
for i in $(seq "$runs"); do
  rm -rf "$work/kiwi-root"; sync; gnupg=$(mktemp -d); s=$(now)
  GNUPGHOME=$gnupg kiwi-ng system prepare --description "$kdesc" --root "$work/kiwi-root" >"$work/kiwi.log" 2>&1
  t_kiwi+=("$(elapsed "$s" "$(now)")"); rm -rf "$gnupg"

  fresh_store "$work/store"; s=$(now)
  $strata -q --store "$work/store" build descriptions/debian-base >/dev/null
  t_cold+=("$(elapsed "$s" "$(now)")")
  base_size=$(size "$work/store")
  for _ in 1 2 3; do
    s=$(now); $strata -q --store "$work/store" build descriptions/debian-base >/dev/null
    t_noop+=("$(elapsed "$s" "$(now)")")
  done
  # All three images in one store: the base's cold build above, then the two derived ones.
  s=$(now)
  for d in debian-web debian-slim; do $strata -q --store "$work/store" build descriptions/$d >/dev/null; done
  t_all+=("$(python3 -c "print(f'{${t_cold[-1]} + $(now) - $s:.3f}')")")
  all_size=$(size "$work/store")
  p=${extra[$((i - 1))]}
  s=$(now); $strata -q --store "$work/store" build "$work/plus-$p" >/dev/null
  t_add+=("$(elapsed "$s" "$(now)")")
done
rm -rf "$work/kiwi-root"

kiwi=$(median "${t_kiwi[@]}"); cold=$(median "${t_cold[@]}"); noop=$(median "${t_noop[@]}")
add=$(median "${t_add[@]}"); all=$(median "${t_all[@]}")
echo "| measurement | median (s) | compared with | ratio | target |"
echo "|---|---|---|---|---|"
echo "| \`kiwi-ng system prepare\` (debian-base equivalent) | $kiwi | | | |"
echo "| strata cold build of debian-base | $cold | kiwi-ng | $(ratio "$cold" "$kiwi")x | |"
echo "| strata no-op rebuild of debian-base | $noop | kiwi-ng | $(python3 -c "print(f'{$kiwi / $noop:.0f}')")x faster | < 0.5 s, >= 300x |"
echo "| derived image adding one package | $add | cold base | $(ratio "$add" "$cold")x | < 0.05x |"
echo "| all three images in one store (base cold, then web and slim) | $all | cold base | $(ratio "$all" "$cold")x | <= 1.2x |"
echo "| store size, all three / base only | $all_size / $base_size B | | $(ratio "$all_size" "$base_size")x | <= 1.1x |"
echo
echo "runs: $runs; kiwi: ${t_kiwi[*]}; cold: ${t_cold[*]}; no-op: ${t_noop[*]}; add: ${t_add[*]}; all: ${t_all[*]}"
