#!/usr/bin/env bash
# The main job on the examples in descriptions/: set up, build strata, build the Debian base image
# from its KIWI description and the web image derived from it (TOML), show that a second build is
# all cache hits, and check out the result.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
strata=./target/release/strata
work=$(mktemp -d /tmp/strata-example.XXXXXX)
export STRATA_STORE="$work/store"
set -x
$strata plan descriptions/debian-base
$strata build descriptions/debian-base
$strata build descriptions/debian-web
$strata build descriptions/debian-web --json
$strata why descriptions/debian-web
$strata images ls
$strata store checkout images/debian-web "$work/web"
chroot "$work/web" dpkg-query -W nginx-light
$strata store verify
set +x
echo "example done: store in $work/store, the web image checked out in $work/web"
