#!/usr/bin/env bash
# Ostree-native container benchmarks on debian-base (its commit already in the store's own
# repository, so the timings are the encapsulation):
#   cold: the commit's layers written into an empty layout (no layer recorded before), next to
#         strata's own --format oci export and `umoci repack` of the same image tree (there is no
#         ostree container encapsulator on Debian: rpm-ostree and bootc are not packaged);
#   unchanged: the same export again;
#   plus one package: debian-base with `file` added, into the layout that holds debian-base;
#   back: the image's commit into a new archive repository (strata export ostree-container:…),
#         next to stock `ostree pull-local` of the same commit into a new archive repository.
# Usage: sudo bash benches/ostree-container.sh   (RUNS=N; default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
bench_dirs ostree-container 3
cargo build --release --locked -q
S=$work/store
if [ ! -d "$S" ]; then
  mkdir -p "$S/cache" /var/cache/strata-tests/downloads
  ln -s /var/cache/strata-tests/downloads "$S/cache/downloads"
fi
L=$work/layout U=$work/umoci B=$work/bundle
$strata --store "$S" -q build descriptions/debian-base >/dev/null
commit=$($strata --store "$S" --json export images/debian-base --format ostree-container --output "oci:$L:base" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["commit"])')
rm -rf --one-file-system "$work/base-tree"
$strata --store "$S" -q store checkout images/debian-base "$work/base-tree" --link copy
echo "debian-base: commit $commit, $(du -sh "$work/base-tree" | cut -f1)" >&2

forget() { python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("DELETE FROM ostree_container_layers"); c.execute("DELETE FROM oci_layers"); c.commit()' "$S/db.sqlite"; }
declare -A t
cold() { rm -rf --one-file-system "$L"; forget; }
same() { :; }
umoci_cold() {
  rm -rf --one-file-system "$U" "$B"
  umoci init --layout "$U" && umoci new --image "$U:img" && umoci unpack --image "$U:img" "$B" >/dev/null
  cp -a "$work/base-tree/." "$B/rootfs/"
}
back() { rm -rf --one-file-system "$work/back"; }
pull_local() { rm -rf --one-file-system "$work/pulled"; ostree --repo="$work/pulled" init --mode=archive; }

measure oc_cold cold $strata --store "$S" -q export images/debian-base --format ostree-container --output "oci:$L:base"
measure oc_same same $strata --store "$S" -q export images/debian-base --format ostree-container --output "oci:$L:base"
measure oci_cold cold $strata --store "$S" -q export images/debian-base --format oci --output "oci:$L:base"
measure umoci_cold umoci_cold umoci repack --image "$U:img" "$B"
rm -rf --one-file-system "$L"
$strata --store "$S" -q export images/debian-base --format ostree-container --output "oci:$L:base" >/dev/null
measure oc_back back $strata --store "$S" -q export "ostree-container:oci:$L:base" --repo "$work/back" --mode archive
measure pull_local pull_local ostree --repo="$work/pulled" pull-local "$S/ostree-repo" "$commit"
back_commit=$($strata --store "$S" --json export "ostree-container:oci:$L:base" --repo "$work/back" --mode archive \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["commit"])')
[ "$back_commit" = "$commit" ] || { echo "the commit came back as $back_commit, not $commit" >&2; exit 1; }

# One more package: debian-base's description with `file` added, exported into the layout that
# holds debian-base.
P=$work/debian-plus
plus_description "$P"
$strata --store "$S" -q build "$P" >/dev/null
$strata --store "$S" -q export images/debian-plus --format ostree-container --output "oci:$work/warm:plus" >/dev/null
plus_setup() { rm -rf --one-file-system "$L"; forget; $strata --store "$S" -q export images/debian-base --format ostree-container --output "oci:$L:base" >/dev/null; }
measure oc_plus plus_setup $strata --store "$S" -q export images/debian-plus --format ostree-container --output "oci:$L:plus"
plus_setup
plus=$($strata --store "$S" --json export images/debian-plus --format ostree-container --output "oci:$L:plus" | python3 -c '
import json, sys
r = json.load(sys.stdin)["report"]
print(r["bytes_written"], sum(1 for l in r["layers"] if l["written"]), len(r["layers"]), sum(l["size"] for l in r["layers"]))')
read -r plus_bytes plus_written plus_layers plus_total <<< "$plus"

cat <<TABLE
| debian-base as an ostree-native container (gzip) | strata | reference | strata / reference |
|---|---|---|---|
| cold, vs strata \`--format oci\` cold | ${t[oc_cold]} s | ${t[oci_cold]} s | $(ratio "${t[oc_cold]}" "${t[oci_cold]}")x |
| cold, vs \`umoci repack\` of the image tree | ${t[oc_cold]} s | ${t[umoci_cold]} s | $(ratio "${t[oc_cold]}" "${t[umoci_cold]}")x |
| unchanged | ${t[oc_same]} s | | |
| plus one package, after debian-base | ${t[oc_plus]} s | | |
| back into an archive repository, vs \`ostree pull-local\` of the commit | ${t[oc_back]} s | ${t[pull_local]} s | $(ratio "${t[oc_back]}" "${t[pull_local]}")x |

Plus one package: $plus_written of $plus_layers layers written ($plus_bytes of $plus_total bytes) (medians of $runs).
TABLE
