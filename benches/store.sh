#!/usr/bin/env bash
# Store benchmarks, side by side with the tools a user would otherwise reach for:
#   import:   strata store add       vs  ostree commit (bare repo), b3sum (hashing alone), cp -a
#   re-add:   strata store add (same tree, nothing new)
#   checkout: strata store checkout  vs  ostree checkout -H, cp -al, cp -a
# Usage: sudo bash benches/store.sh [TREE]
# TREE defaults to a Debian bookworm tree made with debootstrap from the host's apt mirror
# (minbase + systemd, the kernel, toolchain headers, python3, vim, git and more: about 27,000
# entries, 22,700 regular files, 1.1 GB). Its /dev is emptied: OSTree cannot store device nodes.
# Prints a markdown table of medians (hyperfine) and strata's peak memory; warm page cache.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh >/dev/null
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null

work=${STRATA_BENCH_DIR:-/var/tmp/strata-bench}
runs=${RUNS:-5}
mkdir -p "$work"
tree=${1:-$work/debian}
if [ ! -d "$tree/usr" ]; then
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,linux-image-amd64,perl,python3,udev,kmod,tzdata,linux-libc-dev,libc6-dev,vim,git,man-db,manpages,locales,python3-pip,iproute2,openssh-server,curl \
    bookworm "$tree" "$(bash tools/debian-mirror.sh)"
  rm -rf "${tree:?}"/dev/*
fi
strata=$PWD/target/release/strata
files=$(find "$tree" -xdev -type f | wc -l)
entries=$(find "$tree" -xdev | wc -l)
size=$(du -sh --apparent-size "$tree" | cut -f1)
echo "tree: $tree: $entries entries, $files regular files, $size" >&2

# Warm the page cache so every tool reads from memory.
find "$tree" -xdev -type f -print0 | xargs -0 cat > /dev/null

s=$work/store; r=$work/repo; d=$work/dest
cleanup() { rm -rf "$s" "$r" "$d"; }
cleanup

hyperfine --style basic --runs "$runs" --export-json "$work/import.json" \
  --prepare "rm -rf $s" -n "strata store add" "$strata --quiet --store $s store add $tree" \
  --prepare "rm -rf $r && ostree --repo=$r init --mode=bare" -n "ostree commit (bare)" \
    "ostree --repo=$r commit --branch=bench --tree=dir=$tree" \
  --prepare "true" -n "b3sum (hash only)" "find $tree -xdev -type f -print0 | xargs -0 b3sum --no-names > /dev/null" \
  --prepare "rm -rf $d" -n "cp -a" "cp -a $tree $d" >&2

# Populated store and repository for the re-add and checkout rounds.
cleanup
$strata --quiet --store "$s" store add "$tree" --root tags/bench > /dev/null
ostree --repo="$r" init --mode=bare && ostree --repo="$r" commit --branch=bench --tree=dir="$tree" > /dev/null

hyperfine --style basic --runs "$runs" --export-json "$work/checkout.json" \
  --prepare "true" -n "strata store add (again)" "$strata --quiet --store $s store add $tree" \
  --prepare "rm -rf $d" -n "strata checkout --link hardlink" "$strata --quiet --store $s store checkout tags/bench $d --link hardlink" \
  --prepare "rm -rf $d" -n "ostree checkout -H" "ostree --repo=$r checkout -H bench $d" \
  --prepare "rm -rf $d" -n "cp -al" "cp -al $tree $d" \
  --prepare "rm -rf $d" -n "strata checkout --link copy" "$strata --quiet --store $s store checkout tags/bench $d --link copy" \
  --prepare "rm -rf $d" -n "cp -a " "cp -a $tree $d" >&2

rm -rf "$d"
mem_add=$( { rm -rf "$work/store2"; /usr/bin/time -f %M "$strata" --quiet --store "$work/store2" store add "$tree" > /dev/null; } 2>&1 | tail -1)
mem_co=$( { /usr/bin/time -f %M "$strata" --quiet --store "$s" store checkout tags/bench "$d" --link hardlink; } 2>&1 | tail -1)
rm -rf "$work/store2"
cleanup

python3 - "$work/import.json" "$work/checkout.json" "$mem_add" "$mem_co" "$entries" "$files" "$size" <<'PY'
import json, sys, platform, os
imp, co = (json.load(open(p))["results"] for p in sys.argv[1:3])
mem_add, mem_co, entries, files, size = sys.argv[3:8]
med = {r["command"]: r["median"] for r in imp + co}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"Machine: {os.cpu_count()} cores ({cpu}), {platform.release()}; tree: {entries} entries, {files} files, {size}; warm page cache; medians of {len(imp[0]['times'])} runs.\n")
print("| operation | command | median (s) | vs. reference |")
print("|---|---|---|---|")
def row(op, name, ref=None):
    ratio = f"{med[name] / med[ref]:.2f}x of {ref}" if ref else ""
    print(f"| {op} | `{name}` | {med[name]:.3f} | {ratio} |")
row("import", "strata store add", "ostree commit (bare)")
row("import", "ostree commit (bare)")
row("import", "b3sum (hash only)")
row("import", "cp -a")
row("re-import", "strata store add (again)", "strata store add")
row("checkout", "strata checkout --link hardlink", "cp -al")
row("checkout", "ostree checkout -H", "cp -al")
row("checkout", "cp -al")
row("checkout", "strata checkout --link copy", "cp -a ")
row("checkout", "cp -a ")
print(f"\nstrata peak memory: store add {int(mem_add)//1024} MiB, checkout {int(mem_co)//1024} MiB (max RSS).")
print(f"hardlink checkout vs cp -a: {med['cp -a '] / med['strata checkout --link hardlink']:.1f}x faster; "
      f"first add / re-add: {med['strata store add'] / med['strata store add (again)']:.1f}x")
PY
