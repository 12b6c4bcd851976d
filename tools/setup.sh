#!/usr/bin/env bash
# Install everything strata needs on a fresh Debian 12 machine (as root), then build it.
# Safe to run again: apt and cargo skip what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "tools/setup.sh: run as root (it installs Debian packages)" >&2
  exit 1
fi

packages=(
  build-essential pkg-config libsqlite3-dev   # building strata
  libostree-dev ostree                         # OSTree export; the ostree CLI: test client and benchmark peer
  rsync openssh-client openssh-server          # strata push to ssh:// destinations; tests run a local sshd
  gpgv                                         # verifying apt Release files
  attr util-linux e2fsprogs xfsprogs btrfs-progs  # tests: xattrs, flock, setpriv, reflink file systems
  dpkg-dev apt-utils gnupg python3             # tests: build .debs, apt-ftparchive repositories, signing keys, HTTP server
  b3sum hyperfine time                         # benchmarks
  grub-pc-bin grub-efi-amd64-bin grub-common  # deploy: BIOS and UEFI boot loaders
  mtools dosfstools e2fsprogs fdisk            # deploy: the EFI system partition without mounting, GPT
  xorriso squashfs-tools                       # deploy: live ISOs (El Torito by grub-mkrescue, squashfs root)
  ovmf                                         # strata boot --uefi
  rpm createrepo-c busybox-static              # RPM images: rpm database (rpm --justdb); tests: rpmbuild, rpm-md repositories, a static shell
  graphviz librsvg2-bin                        # pictures of the build graph (dot); tests render them (rsvg-convert)
  skopeo umoci                                 # tests: stock OCI tools read the image layouts strata writes
  docker-registry apache2-utils openssl        # tests: an OCI registry on 127.0.0.1 (TLS, htpasswd)
  keyutils                                     # tests: a hostile script tries the kernel keyring (keyctl)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# QEMU: qemu-system-x86 comes from bookworm and needs qemu-utils of the same version; a newer
# qemu-utils from another suite (as some machines ship) blocks it, so align the two.
qver=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
if [ "$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)" != "$qver" ]; then
  export DEBIAN_FRONTEND=noninteractive
  extra=()
  dpkg-query -W -f='${Status}' qemu-block-extra 2>/dev/null | grep -q "install ok installed" && extra+=("qemu-block-extra=$qver")
  # qemu-system-data is architecture-independent: no binNMU suffix, its own candidate.
  dver=$(apt-cache policy qemu-system-data | awk '/Candidate:/ {print $2}')
  apt-get install -y -qq --no-install-recommends --allow-downgrades \
    "qemu-system-x86=$qver" "qemu-system-common=$qver" "qemu-system-data=$dver" "qemu-utils=$qver" "${extra[@]}"
fi

if ! command -v cargo >/dev/null; then
  # rustup's default location, for shells that did not source it.
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
cargo build --release --locked
