#!/usr/bin/env bash
# Lifecycle benchmarks: a store with 3 images x 50 generations over a 16,000-file base tree (each
# generation changes 20 files of its image's root/ overlay), every generation of every image
# exported to one archive OSTree repository (150 commits). Timed on fresh copies:
#   strata gc dropping 1 generation and dropping 45 (one image) and 135 (all three), with and
#   without the repository registered (the one gc prunes it too), side by side with
#   `ostree prune --refs-only --depth=N` on the same repository; and `strata du`.
# Usage: sudo bash benches/lifecycle.sh      (RUNS=N for more runs; default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
bench_dirs lifecycle 5
cargo build --release --locked -q
rm -rf --one-file-system "$work"/*
S=$work/store R=$work/repo

# The base tree (16,000 files) and the three descriptions (not timed).
python3 - "$work/base" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(16000):
    d = os.path.join(root, "usr", "share", f"d{i % 97:02}", f"e{i % 13:02}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}"), "w") as f:
        f.write(f"file {i}\n" * (1 + i % 40))
PY
$strata --store "$S" -q store add "$work/base" --root tags/base >/dev/null
for img in a b c; do
  mkdir -p "$work/$img"
  printf '[image]\nname = "%s"\nderived-from = "root:tags/base"\n' "$img" > "$work/$img/image.toml"
done
for n in $(seq 50); do
  for img in a b c; do
    python3 - "$work/$img/root/etc/$img" "$img" "$n" <<'PY'
import os, sys
d, img, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(d, exist_ok=True)
for i in range(20):
    with open(os.path.join(d, f"conf{i}"), "w") as f:
        f.write(f"{img} generation {n} setting {i}\n" * 50)
PY
    $strata --store "$S" -q build "$work/$img" >/dev/null
    $strata --store "$S" -q export "$work/$img" --no-layout --repo "$R" >/dev/null
  done
done
commits=$(ostree --repo="$R" log a/x86_64 | grep -c '^commit')
echo "store: $(du -sh "$S" | cut -f1), repo: $(du -sh "$R" | cut -f1), commits on a/x86_64: $commits" >&2
cp -a "$S" "$work/store.orig"; cp -a "$R" "$work/repo.orig"
# The same store without the repository registered: gc of the store alone.
cp -a "$S" "$work/store.alone"
python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("DELETE FROM ostree_repos"); c.commit()' "$work/store.alone/db.sqlite"

restore() { rm -rf --one-file-system "$S" "$R"; cp -a "$work/$1" "$S"; cp -a "$work/repo.orig" "$R"; sync; }
declare -A t
measure() { # name, store copy, command...
  local name=$1 copy=$2; shift 2
  local times=()
  for i in $(seq "$runs"); do
    restore "$copy"
    t0=$(now); "$@" >/dev/null; t1=$(now)
    times+=("$(elapsed "$t0" "$t1")")
  done
  t[$name]=$(median "${times[@]}")
  echo "$name: ${times[*]} -> median ${t[$name]}" >&2
}
measure gc1 store.alone $strata --store "$S" -q gc --keep-last 49 --image a
measure gc1repo store.orig $strata --store "$S" -q gc --keep-last 49 --image a
measure prune1 store.orig ostree prune --repo="$R" --refs-only --only-branch=a/x86_64 --depth=48
measure gc45 store.alone $strata --store "$S" -q gc --keep-last 5 --image a
measure gc45repo store.orig $strata --store "$S" -q gc --keep-last 5 --image a
measure prune45 store.orig ostree prune --repo="$R" --refs-only --only-branch=a/x86_64 --depth=4
measure gc135 store.alone $strata --store "$S" -q gc --keep-last 5
measure gc135repo store.orig $strata --store "$S" -q gc --keep-last 5
measure prune135 store.orig ostree prune --repo="$R" --refs-only --depth=4
restore store.orig
measure du store.orig $strata --store "$S" du --json
measure dusvg store.orig $strata --store "$S" du --format svg

cat <<TABLE
| drop | \`strata gc\` (store) | \`strata gc\` (store + repository) | \`ostree prune --refs-only\` | store / prune |
|---|---|---|---|---|
| 1 generation of a | ${t[gc1]} s | ${t[gc1repo]} s | ${t[prune1]} s | $(ratio "${t[gc1]}" "${t[prune1]}")x |
| 45 generations of a | ${t[gc45]} s | ${t[gc45repo]} s | ${t[prune45]} s | $(ratio "${t[gc45]}" "${t[prune45]}")x |
| 135 generations (45 of each) | ${t[gc135]} s | ${t[gc135repo]} s | ${t[prune135]} s | $(ratio "${t[gc135]}" "${t[prune135]}")x |

\`strata du --json\`: ${t[du]} s; \`strata du --format svg\`: ${t[dusvg]} s (medians of $runs).
TABLE
