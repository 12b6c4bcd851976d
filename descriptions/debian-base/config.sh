#!/bin/bash
# Runs inside the image after packages, users and root/ are in place.
set -euo pipefail

# Networking by systemd-networkd and resolved.
systemctl enable systemd-networkd.service
systemctl enable systemd-resolved.service

# A serial console for headless machines.
systemctl enable serial-getty@ttyS0.service
