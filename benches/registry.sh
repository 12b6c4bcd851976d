#!/usr/bin/env bash
# Registry push benchmarks, side by side with `skopeo copy` from an image layout holding the same
# image (the blobs strata writes, so both send the same bytes): Debian's docker-registry on
# 127.0.0.1 (plain HTTP), storage on the local disk.
#   base: debian-base into an empty registry, its layers made before (strata: in its blob
#         cache; skopeo: in the layout);
#   base cold: the same with nothing made before (strata compresses every layer; skopeo has no
#         such case: it needs a layout or another registry to copy from);
#   web after base: debian-web into the same repository once debian-base is there;
#   unchanged: debian-web again.
# Bytes sent are the loopback interface's received bytes during the command (requests and
# bodies). Usage: sudo bash benches/registry.sh   (RUNS=N; default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
bench_dirs registry 3
cargo build --release --locked -q
S=$work/store
if [ ! -d "$S" ]; then
  mkdir -p "$S/cache" /var/cache/strata-tests/downloads
  ln -s /var/cache/strata-tests/downloads "$S/cache/downloads"
fi
$strata --store "$S" -q build descriptions/debian-base >/dev/null
$strata --store "$S" -q build descriptions/debian-web >/dev/null
L=$work/layout
rm -rf --one-file-system "$L"
$strata --store "$S" -q export images/debian-base --format oci --output "oci:$L:base" >/dev/null
$strata --store "$S" -q export images/debian-web --format oci --output "oci:$L:web" >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
R=127.0.0.1:$port
pid=
start_registry() {
  rm -rf --one-file-system "$work/registry"; mkdir -p "$work/registry"
  printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
    "$work/registry" "$R" > "$work/registry.yml"
  docker-registry serve "$work/registry.yml" >/dev/null 2>&1 & pid=$!
  for _ in $(seq 100); do curl -fs "http://$R/v2/" >/dev/null && return; sleep 0.1; done
  echo "docker-registry did not start" >&2; exit 1
}
stop_registry() { [ -n "$pid" ] && kill "$pid" && wait "$pid" 2>/dev/null || true; pid=; }
trap stop_registry EXIT
lo_rx() { awk '/^ *lo:/ {print $2}' /proc/net/dev; }

declare -A t b
measure() { # name, setup function, command...
  local name=$1 setup=$2; shift 2
  local times=() bytes=()
  for i in $(seq "$runs"); do
    $setup
    r0=$(lo_rx); t0=$(now); "$@" >/dev/null 2>&1; t1=$(now); r1=$(lo_rx)
    times+=("$(elapsed "$t0" "$t1")"); bytes+=("$((r1 - r0))")
  done
  t[$name]=$(median "${times[@]}")
  b[$name]=$(python3 -c "import statistics,sys; print(int(statistics.median(int(x) for x in sys.argv[1:])))" "${bytes[@]}")
  echo "$name: ${times[*]} -> median ${t[$name]} s, ${b[$name]} bytes" >&2
}
push() { $strata --store "$S" -q export "images/$1" --format oci --output "docker://$R/os/debian:$2" --registry-insecure "$R"; }
copy() { skopeo copy -q --dest-tls-verify=false "oci:$L:$1" "docker://$R/os/debian:$1"; }
fresh() { stop_registry; start_registry; }
with_base_strata() { fresh; push debian-base base >/dev/null; }
forget() {
  fresh
  rm -rf --one-file-system "$S/cache/oci-layers"
  python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute("DELETE FROM oci_layers"); c.commit()' "$S/db.sqlite"
}
with_base_skopeo() { fresh; copy base; }
nothing() { :; }

measure strata_cold forget push debian-base base
measure strata_base fresh push debian-base base
measure skopeo_base fresh copy base
measure strata_web with_base_strata push debian-web web
measure skopeo_web with_base_skopeo copy web
measure strata_same nothing push debian-web web
measure skopeo_same nothing copy web
cat <<TABLE
| push to docker-registry | strata | \`skopeo copy\` (from a layout) | strata / skopeo |
|---|---|---|---|
| debian-base, empty registry, layers made before | ${t[strata_base]} s, ${b[strata_base]} B | ${t[skopeo_base]} s, ${b[skopeo_base]} B | $(ratio "${t[strata_base]}" "${t[skopeo_base]}")x |
| debian-base, empty registry, nothing made before | ${t[strata_cold]} s, ${b[strata_cold]} B | (needs a layout) | |
| debian-web after debian-base | ${t[strata_web]} s, ${b[strata_web]} B | ${t[skopeo_web]} s, ${b[skopeo_web]} B | $(ratio "${t[strata_web]}" "${t[skopeo_web]}")x |
| debian-web, unchanged | ${t[strata_same]} s, ${b[strata_same]} B | ${t[skopeo_same]} s, ${b[skopeo_same]} B | $(ratio "${t[strata_same]}" "${t[skopeo_same]}")x |
TABLE
