#!/usr/bin/env bash
# OCI export benchmarks on debian-base and debian-web, side by side with `umoci repack` of the
# same trees (umoci's own layer writer, from an unpacked bundle):
#   cold: the image's layers written into an empty layout (strata: no layer recorded before);
#   unchanged: the same export again into the same layout;
#   derived: debian-web into a layout that holds debian-base (strata: its own layers only;
#   umoci: the bundle of debian-base changed into debian-web's tree, then repacked).
# Timed runs exclude preparing bundles. Usage: sudo bash benches/oci.sh   (RUNS=N; default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
bench_dirs oci 3
cargo build --release --locked -q
S=$work/store
if [ ! -d "$S" ]; then
  mkdir -p "$S/cache" /var/cache/strata-tests/downloads
  ln -s /var/cache/strata-tests/downloads "$S/cache/downloads"
fi
$strata --store "$S" -q build descriptions/debian-base >/dev/null
$strata --store "$S" -q build descriptions/debian-web >/dev/null
rm -rf --one-file-system "$work/base-tree" "$work/web-tree"
$strata --store "$S" -q store checkout images/debian-base "$work/base-tree" --link copy
$strata --store "$S" -q store checkout images/debian-web "$work/web-tree" --link copy
echo "debian-base: $(du -sh "$work/base-tree" | cut -f1), $(find "$work/base-tree" | wc -l) paths" >&2

forget() { python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("DELETE FROM oci_layers"); c.commit()' "$S/db.sqlite"; }
declare -A t
L=$work/layout U=$work/umoci B=$work/bundle
strata_cold() { rm -rf --one-file-system "$L"; forget; }
strata_same() { :; }
strata_web() { rm -rf --one-file-system "$L"; $strata --store "$S" -q export images/debian-base --format oci --output "oci:$L:base" >/dev/null; }
umoci_cold() {
  rm -rf --one-file-system "$U" "$B"
  umoci init --layout "$U" && umoci new --image "$U:img" && umoci unpack --image "$U:img" "$B" >/dev/null
  cp -a "$work/base-tree/." "$B/rootfs/"
}
umoci_same() { rm -rf --one-file-system "$B"; umoci unpack --image "$U:img" "$B" >/dev/null; }
umoci_web() { umoci_cold; umoci repack --image "$U:img" "$B" >/dev/null; rm -rf --one-file-system "$B"; umoci unpack --image "$U:img" "$B" >/dev/null; rsync -aHAX --delete "$work/web-tree/" "$B/rootfs/"; }

measure strata_cold strata_cold $strata --store "$S" -q export images/debian-base --format oci --output "oci:$L:base"
measure strata_same strata_same $strata --store "$S" -q export images/debian-base --format oci --output "oci:$L:base"
measure strata_web strata_web $strata --store "$S" -q export images/debian-web --format oci --output "oci:$L:web"
measure umoci_cold umoci_cold umoci repack --image "$U:img" "$B"
measure umoci_same umoci_same umoci repack --image "$U:img" "$B"
measure umoci_web umoci_web umoci repack --image "$U:img" "$B"
strata_web; $strata --store "$S" -q export images/debian-web --format oci --output "oci:$L:web" >/dev/null
sent=$(python3 - "$L" <<'PY'
import json, sys
layout = sys.argv[1]
def manifest(tag):
    index = json.load(open(f"{layout}/index.json"))
    d = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag)
    return json.load(open(f"{layout}/blobs/sha256/{d['digest'][7:]}"))
base = {l["digest"] for l in manifest("base")["layers"]}
web = manifest("web")["layers"]
own = [l for l in web if l["digest"] not in base]
print(sum(l["size"] for l in own), len(own), len(web))
PY
)
read -r own_bytes own_layers all_layers <<< "$sent"
# One more package: debian-base's description with `file` added (and the packages it needs),
# built, then exported into the layout that holds debian-base. umoci: the bundle of debian-base
# changed into the new tree, repacked (its diff layer on the old image).
P=$work/debian-plus
plus_description "$P"
$strata --store "$S" -q build "$P" >/dev/null
rm -rf --one-file-system "$work/plus-tree"
$strata --store "$S" -q store checkout images/debian-plus "$work/plus-tree" --link copy >/dev/null
strata_plus() { rm -rf --one-file-system "$L"; $strata --store "$S" -q export images/debian-base --format oci --output "oci:$L:base" >/dev/null; }
umoci_plus() { umoci_cold; umoci repack --image "$U:img" "$B" >/dev/null; rm -rf --one-file-system "$B"; umoci unpack --image "$U:img" "$B" >/dev/null; rsync -aHAX --delete "$work/plus-tree/" "$B/rootfs/"; }
measure strata_plus strata_plus $strata --store "$S" -q export images/debian-plus --format oci --output "oci:$L:plus"
measure umoci_plus umoci_plus umoci repack --image "$U:img" "$B"
strata_plus
plus=$($strata --store "$S" --json export images/debian-plus --format oci --output "oci:$L:plus" | python3 -c '
import json, sys
r = json.load(sys.stdin)["report"]
print(r["bytes_written"], sum(1 for l in r["layers"] if l["written"]), len(r["layers"]))')
read -r plus_bytes plus_written plus_layers <<< "$plus"
umoci_plus_bytes=$(python3 - "$U" <<'PY'
import json, sys
u = sys.argv[1]
index = json.load(open(f"{u}/index.json"))
m = json.load(open(f"{u}/blobs/sha256/{index['manifests'][0]['digest'][7:]}"))
print(m["layers"][-1]["size"])
PY
)

cat <<TABLE
| export (gzip) | strata | \`umoci repack\` | strata / umoci |
|---|---|---|---|
| debian-base, cold | ${t[strata_cold]} s | ${t[umoci_cold]} s | $(ratio "${t[strata_cold]}" "${t[umoci_cold]}")x |
| debian-base, unchanged | ${t[strata_same]} s | ${t[umoci_same]} s | $(ratio "${t[strata_same]}" "${t[umoci_same]}")x |
| debian-web after debian-base | ${t[strata_web]} s | ${t[umoci_web]} s | $(ratio "${t[strata_web]}" "${t[umoci_web]}")x |
| debian-base plus one package, after debian-base | ${t[strata_plus]} s | ${t[umoci_plus]} s | $(ratio "${t[strata_plus]}" "${t[umoci_plus]}")x |

debian-web: $own_layers of its $all_layers layers are its own ($own_bytes bytes compressed): all a registry that has debian-base receives (medians of $runs).
debian-base plus one package: strata writes $plus_written of $plus_layers layers ($plus_bytes bytes); umoci's diff layer on the old image is $umoci_plus_bytes bytes.
TABLE
