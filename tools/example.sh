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
# The OSTree image: exported as a signed commit, published, and pulled by a stock ostree client.
$strata key generate "$work/signing.key"
$strata export descriptions/debian-base --repo "$work/repo" --sign-key "$work/signing.key"
ostree --repo="$work/repo" log debian-base/x86_64
$strata push debian-base/x86_64 --repo "$work/repo" --to "$work/public" --sign-key "$work/signing.key"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 "$port" --directory "$work/public" >/dev/null 2>&1 &
server=$!
sleep 1
ostree --repo="$work/client" init --mode=bare
ostree --repo="$work/client" remote add --no-gpg-verify os "http://127.0.0.1:$port/"
ostree --repo="$work/client" pull os debian-base/x86_64
kill $server
ostree --repo="$work/client" fsck
# A disk image of it that boots (BIOS and UEFI), and a live ISO of the same commit, proven in QEMU.
$strata deploy descriptions/debian-base --output "$work/debian-base.qcow2"
$strata boot "$work/debian-base.qcow2" --login debian:debian --run 'ostree admin status'
$strata deploy descriptions/debian-base --format iso --output "$work/debian-base.iso"
$strata boot "$work/debian-base.iso" --uefi --login debian:debian --run 'findmnt /'
set +x
echo "example done: store in $work/store, the web image checked out in $work/web,"
echo "the OSTree repository in $work/repo, published in $work/public, pulled into $work/client,"
echo "its disk image in $work/debian-base.qcow2 (boot it: $strata boot $work/debian-base.qcow2 --uefi)"
echo "and its live ISO in $work/debian-base.iso"
