#!/usr/bin/env bash
# Debian root filesystem benchmarks, side by side with mmdebstrap and debootstrap on the same
# package set (bookworm minbase + systemd + the kernel), every tool with a warm download cache.
# Usage: sudo bash benches/packages.sh        (RUNS=N for more runs; default 3)
# Prints a markdown table of medians; the mirror comes from the host's apt sources.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh >/dev/null
for p in mmdebstrap debootstrap; do command -v $p >/dev/null || apt-get install -y -qq $p >/dev/null; done
work=${STRATA_BENCH_DIR:-/var/tmp/strata-bench}/packages
runs=${RUNS:-3}
mirror=$(bash tools/debian-mirror.sh)
strata=$PWD/target/release/strata
include=systemd,systemd-sysv,linux-image-amd64,udev,kmod,dbus
set_args=(--host-sources --required apt systemd systemd-sysv linux-image-amd64 udev kmod dbus --exclude usrmerge)
mkdir -p "$work/debs" "$work/debootstrap-cache" "$work/strata-downloads"
out=$work/out

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }
median() { python3 -c "import statistics,sys; print(f'{statistics.median(float(x) for x in sys.argv[1:]):.2f}')" "$@"; }
fresh_store() { rm -rf "$1"; mkdir -p "$1/cache"; ln -s "$work/strata-downloads" "$1/cache/downloads"; }

# Warm every cache once (downloads only; not timed).
fresh_store "$work/store"
$strata -q --store "$work/store" package fetch "${set_args[@]}" >/dev/null
rm -rf "$out"; mmdebstrap -q --variant=minbase --include=$include --skip=download/empty \
  --customize-hook="sync-out /var/cache/apt/archives $work/debs" bookworm "$out" "deb $mirror bookworm main" >/dev/null 2>&1
rm -rf "$out"; debootstrap --variant=minbase --include=$include --cache-dir="$work/debootstrap-cache" bookworm "$out" "$mirror" >/dev/null 2>&1

declare -a t_mm t_db t_cold t_again t_add
for i in $(seq "$runs"); do
  rm -rf "$out"; s=$(now)
  mmdebstrap -q --variant=minbase --include=$include \
    --setup-hook="mkdir -p \"\$1/var/cache/apt/archives\"; cp $work/debs/*.deb \"\$1/var/cache/apt/archives/\"" \
    bookworm "$out" "deb $mirror bookworm main" >/dev/null 2>&1
  t_mm+=("$(elapsed "$s" "$(now)")")
  rm -rf "$out"; s=$(now)
  debootstrap --variant=minbase --include=$include --cache-dir="$work/debootstrap-cache" bookworm "$out" "$mirror" >/dev/null 2>&1
  t_db+=("$(elapsed "$s" "$(now)")")
  rm -rf "$out"
  fresh_store "$work/store"; s=$(now)
  $strata -q --store "$work/store" package bootstrap "${set_args[@]}" --root tags/base >/dev/null
  t_cold+=("$(elapsed "$s" "$(now)")")
  s=$(now)
  $strata -q --store "$work/store" package bootstrap "${set_args[@]}" --root tags/base >/dev/null
  t_again+=("$(elapsed "$s" "$(now)")")
  s=$(now)
  $strata -q --store "$work/store" package bootstrap --host-sources --base tags/base less --root tags/less >/dev/null
  t_add+=("$(elapsed "$s" "$(now)")")
done

# Store size: the set, then the set with one package more built from scratch in the same store.
fresh_store "$work/store"
$strata -q --store "$work/store" package bootstrap "${set_args[@]}" --root tags/a >/dev/null
one=$(du -sb "$work/store/objects" "$work/store/db.sqlite" | awk '{s+=$1} END {print s}')
$strata -q --store "$work/store" package bootstrap "${set_args[@]}" less --root tags/b >/dev/null
two=$(du -sb "$work/store/objects" "$work/store/db.sqlite" | awk '{s+=$1} END {print s}')
fresh_store "$work/store2"
mem=$( { /usr/bin/time -f %M $strata -q --store "$work/store2" package bootstrap "${set_args[@]}" >/dev/null; } 2>&1 | tail -1)
rm -rf "$work/store2" "$out"

m_mm=$(median "${t_mm[@]}"); m_db=$(median "${t_db[@]}"); m_cold=$(median "${t_cold[@]}")
m_again=$(median "${t_again[@]}"); m_add=$(median "${t_add[@]}")
python3 - "$m_mm" "$m_db" "$m_cold" "$m_again" "$m_add" "$one" "$two" "$mem" "$runs" <<'PY'
import sys
mm, db, cold, again, add = map(float, sys.argv[1:6]); one, two, mem, runs = int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]), sys.argv[9]
print(f"Package set: bookworm minbase + systemd, systemd-sysv, linux-image-amd64, udev, kmod, dbus; medians of {runs} runs; downloads cached for every tool.\n")
print("| build | median (s) | ratio |")
print("|---|---|---|")
print(f"| `mmdebstrap --variant=minbase` | {mm:.2f} | |")
print(f"| `debootstrap --variant=minbase` | {db:.2f} | |")
print(f"| `strata package bootstrap`, cold (no entries) | {cold:.2f} | **{cold/mm:.2f}x** of mmdebstrap |")
print(f"| the same set again (all steps cached) | {again:.2f} | **{mm/again:.0f}x** faster than mmdebstrap |")
print(f"| adding one package (`--base`, `less`) | {add:.2f} | **{add/cold*100:.1f}%** of the cold build |")
print(f"\nStore size: one build {one/2**20:.0f} MiB; after a second build of the set plus one package, {two/2**20:.0f} MiB (**{two/one:.2f}x**). Peak memory of a cold build: {mem//1024} MiB.")
PY
