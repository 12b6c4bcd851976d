#!/usr/bin/env bash
# The main job on the example in descriptions/minimal: set up, build strata, import the
# description's root/ tree into a fresh store, check it out, diff and verify it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
strata=./target/release/strata
work=$(mktemp -d /tmp/strata-example.XXXXXX)
export STRATA_STORE="$work/store"
set -x
$strata store add descriptions/minimal/root --name minimal --root tags/minimal
$strata store ls
$strata store checkout tags/minimal "$work/checkout"
diff -r descriptions/minimal/root "$work/checkout"
$strata store verify --full
$strata gc --dry-run
set +x
echo "example done: store in $work/store, checkout in $work/checkout"
