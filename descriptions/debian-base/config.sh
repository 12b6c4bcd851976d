#!/bin/bash
# Runs inside the image after packages, users and root/ are in place.
set -euo pipefail

# Networking by systemd-networkd and resolved.
systemctl enable systemd-networkd.service
systemctl enable systemd-resolved.service

# A serial console for headless machines.
systemctl enable serial-getty@ttyS0.service

# The initramfs must carry OSTree's hook (dracut module `ostree` from ostree-boot), which
# finds the deployment named by `ostree=` on the kernel command line. Packages may configure
# the kernel before ostree-boot, so build it once more, for any machine (not host-only).
for modules in /usr/lib/modules/*/; do
    kver=$(basename "$modules")
    dracut --force --no-hostonly --add ostree "/boot/initrd.img-$kver" "$kver"
done
