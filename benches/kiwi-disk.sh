#!/usr/bin/env bash
# KIWI's time from a prepared root to a bootable disk image, to compare with strata's
# "cached commit to disk" (benches/deploy.sh). Debian's KIWI (`kiwi-ng`, package kiwi 9.24)
# builds an OEM disk (BIOS, ext4, qcow2) from a description equivalent to
# descriptions/debian-base: `strata describe --format xml` output, as in benches/descriptions.sh,
# with the host's mirror as an explicit signed apt repository and the oem type changed to
#   - firmware="bios": this machine's kernel has no vfat (nor iso9660), so the EFI system
#     partition (and the iso type) cannot be made here;
#   - <oem-resize>false</oem-resize>: otherwise KIWI insists on its dracut module package
#     under its openSUSE name (dracut-kiwi-oem-repart; Debian calls it kiwi-dracut-oem-repart);
#   - two packages more in the root: grub2-common (grub-install, grub-mkconfig) and
#     grub-pc-bin (the i386-pc modules), which KIWI runs and copies from inside the root.
# The host needs gdisk and parted (KIWI wipes the disk with `sgdisk --zap-all` and sets the MBR
# boot flag with `parted`); they are installed if missing.
#
# The partx wrapper: KIWI partitions its loop device with fdisk, then sets the boot flag with
# `parted`, which registers partition 1 with the kernel (and its /dev/loopNp1 node appears);
# KIWI's next step, `partx --add /dev/loopN`, then fails ("error adding partition 1") and the
# build aborts. A `partx` written to $work/bin, first in PATH, runs the real `partx --delete` on
# the same arguments (ignoring failure) before each add, so the add succeeds.
#
# Each run: `kiwi-ng system prepare` (from scratch: bootstrap, packages, config.sh; KIWI has no
# package cache of its own), timed; then `kiwi-ng system create` on that root (partitions, file
# system, root sync, dracut initrd, grub install, qcow2 conversion), timed separately.
# Usage: sudo bash benches/kiwi-disk.sh      (RUNS=N for more runs; default 1)
# Prints a markdown table of medians, the disk image sizes, and the raw run times.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "benches/kiwi-disk.sh: run as root (kiwi-ng needs loop devices, mounts and chroot)" >&2
  exit 1
fi
host=()
command -v kiwi-ng >/dev/null || host+=(kiwi)
command -v parted >/dev/null || host+=(parted)
command -v sgdisk >/dev/null || host+=(gdisk)
if [ ${#host[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${host[@]}" >/dev/null
fi

work=${STRATA_BENCH_DIR:-/var/tmp/strata-bench}/kiwi-disk
runs=${RUNS:-1}
mirror=$(bash tools/debian-mirror.sh)
strata=$PWD/target/release/strata
. benches/lib.sh

# A failed KIWI run can leave mounts and loop devices behind under $work: undo them first.
cleanup() {
  local m
  for m in $(awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  local l
  for l in $(losetup -n -O NAME,BACK-FILE 2>/dev/null | awk -v w="$work/" 'index($2, w) == 1 {print $1}'); do
    for m in $(awk -v d="$l" '$1 == d || index($1, d "p") == 1 {print $2}' /proc/mounts | sort -r); do
      umount -l "$m" 2>/dev/null || true
    done
    partx -d "$l" 2>/dev/null || true
    losetup -d "$l" 2>/dev/null || true
  done
}
cleanup
trap cleanup EXIT
rm -rf --one-file-system "$work"; mkdir -p "$work/bin"

# The partx wrapper (see above).
cat > "$work/bin/partx" <<'EOF'
#!/bin/sh
for a in "$@"; do
  case "$a" in
    -a|--add)
      del=""
      for b in "$@"; do
        case "$b" in -a|--add) del="$del -d" ;; *) del="$del $b" ;; esac
      done
      # shellcheck disable=SC2086
      /usr/bin/partx $del >/dev/null 2>&1 || true
      break ;;
  esac
done
exec /usr/bin/partx "$@"
EOF
chmod +x "$work/bin/partx"
export PATH=$work/bin:$PATH

# The KIWI description: an OEM disk type (see above) and the two GRUB packages.
kdesc=$work/kiwi-description
kiwi_description "$kdesc" "$mirror" '    <type image="oem" filesystem="ext4" firmware="bios" format="qcow2" kernelcmdline="console=ttyS0" primary="true">
      <bootloader name="grub2" console="serial" timeout="1"/>
      <oemconfig>
        <oem-resize>false</oem-resize>
      </oemconfig>
    </type>
' '    <package name="grub2-common"/>
    <package name="grub-pc-bin"/>
'

declare -a t_prepare t_create
for i in $(seq "$runs"); do
  cleanup; rm -rf --one-file-system "$work/root" "$work/out"; sync
  gnupg=$(mktemp -d); s=$(now)
  GNUPGHOME=$gnupg kiwi-ng --debug system prepare --description "$kdesc" --root "$work/root" \
    >"$work/prepare.log" 2>&1 || { echo "kiwi-ng system prepare failed: see $work/prepare.log" >&2; exit 1; }
  t_prepare+=("$(elapsed "$s" "$(now)")"); rm -rf "$gnupg"
  sync; s=$(now)
  kiwi-ng --debug system create --root "$work/root" --target-dir "$work/out" \
    >"$work/create.log" 2>&1 || { echo "kiwi-ng system create failed: see $work/create.log" >&2; cleanup; exit 1; }
  t_create+=("$(elapsed "$s" "$(now)")")
done
cleanup; rm -rf --one-file-system "$work/root"   # keep out/ (the images) and the logs

qcow2=$(ls "$work"/out/*.qcow2)
raw=$(ls "$work"/out/*.raw 2>/dev/null || true)
prepare=$(median "${t_prepare[@]}"); create=$(median "${t_create[@]}")
echo "| measurement | median |"
echo "|---|---|"
echo "| \`kiwi-ng system prepare\` (debian-base equivalent) | $prepare s |"
echo "| \`kiwi-ng system create\` (oem, BIOS, qcow2) | $create s |"
echo "| disk image size ($(basename "$qcow2")) | $(stat -c %s "$qcow2") B |"
[ -z "$raw" ] || echo "| intermediate raw disk ($(basename "$raw")): size / allocated | $(stat -c %s "$raw") / $(du -B1 "$raw" | cut -f1) B |"
echo
echo "runs: $runs; prepare: ${t_prepare[*]}; create: ${t_create[*]}"
# Where the last create went, from KIWI's log (whole seconds).
python3 - "$work/create.log" <<'PY'
import re, sys
t, marks = [], {}
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"\[ \w+ *\]: (\d\d):(\d\d):(\d\d) \| (.*)", line)
    if not m:
        continue
    sec = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
    t.append(sec)
    for key, text in (("initrd", "Creating generic dracut initrd archive"), ("grub", "Creating grub2 bootloader configuration"),
                      ("format", "Creating qcow2 Disk Format"), ("result", "Result files:")):
        if m[4].startswith(text) and key not in marks:
            marks[key] = sec
d = lambda a, b: (b - a) % 86400
print("last create, from its log: partitions and mkfs %d s, dracut initrd %d s, root sync and grub %d s, "
      "qcow2 conversion (KIWI always compresses it) %d s" % (d(t[0], marks["initrd"]), d(marks["initrd"], marks["grub"]),
      d(marks["grub"], marks["format"]), d(marks["format"], marks["result"])))
PY
