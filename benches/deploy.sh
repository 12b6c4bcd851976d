#!/usr/bin/env bash
# Deploy benchmarks on descriptions/debian-base: time from a cached commit to a qcow2 disk and to
# a live ISO, a second deploy with nothing changed, sizes, and time to the login prompt under QEMU.
# Usage: sudo bash benches/deploy.sh      (RUNS=N for more runs; default 3)
# Each timed cold deploy passes a different --karg, so its artifact is not a cache hit, while the
# build, layout and export steps are (the commit is cached).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh >/dev/null
. benches/lib.sh
bench_dirs deploy 3
export STRATA_STORE=$work/store

# The image and its commit (not timed).
$strata -q deploy descriptions/debian-base --format qcow2 --output "$work/warm.qcow2" >/dev/null
# The first ISO of this commit makes the live initramfs (timed once; a cached step afterwards).
t0=$(now); first_iso=$($strata --json -q deploy descriptions/debian-base --format iso --output "$work/first.iso" --karg "bench.first=$(date +%s%N)"); t1=$(now)
t_first_iso=$(elapsed "$t0" "$t1")
initramfs_cached=$(echo "$first_iso" | python3 -c 'import json,sys; print(json.load(sys.stdin)["built"]["initramfs_cached"])')

declare -a t_qcow2 t_raw t_again t_iso
for i in $(seq "$runs"); do
  token=$i.$(date +%s%N)   # a new kernel argument: the artifact is built, not a cache hit
  rm -f "$work/disk.qcow2" "$work/disk.raw"; sync
  t0=$(now); $strata -q deploy descriptions/debian-base --format qcow2 --output "$work/disk.qcow2" --karg "bench.run=$token" >/dev/null; t1=$(now)
  t_qcow2+=("$(elapsed "$t0" "$t1")")
  t0=$(now); $strata -q deploy descriptions/debian-base --format raw --output "$work/disk.raw" --karg "bench.run=$token" >/dev/null; t1=$(now)
  t_raw+=("$(elapsed "$t0" "$t1")")
  t0=$(now); $strata -q deploy descriptions/debian-base --format qcow2 --output "$work/disk.qcow2" --karg "bench.run=$token" >/dev/null; t1=$(now)
  t_again+=("$(elapsed "$t0" "$t1")")
  rm -f "$work/live.iso"; sync
  t0=$(now); $strata -q deploy descriptions/debian-base --format iso --output "$work/live.iso" --karg "bench.run=$token" >/dev/null; t1=$(now)
  t_iso+=("$(elapsed "$t0" "$t1")")
done
iso=$(stat -c %s "$work/live.iso")
raw_apparent=$(stat -c %s "$work/disk.raw")
raw_used=$(du -B1 "$work/disk.raw" | cut -f1)
qcow2=$(stat -c %s "$work/disk.qcow2")
seconds() { python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["login_prompt_after"])'; }
login=$($strata --json boot "$work/disk.qcow2" --accel tcg | seconds)
login_uefi=$($strata --json boot "$work/disk.qcow2" --accel tcg --uefi | seconds)
iso_login=$($strata --json boot "$work/live.iso" --accel tcg | seconds)
iso_login_uefi=$($strata --json boot "$work/live.iso" --accel tcg --uefi | seconds)

echo "| measurement | median | target |"
echo "|---|---|---|"
echo "| cached commit to qcow2 disk | $(median "${t_qcow2[@]}") s | < 15 s |"
echo "| cached commit to raw disk | $(median "${t_raw[@]}") s | |"
echo "| second deploy, nothing changed | $(median "${t_again[@]}") s | < 1 s |"
echo "| cached commit to live ISO, initramfs cached | $(median "${t_iso[@]}") s | < 60 s |"
echo "| first ISO of the commit, initramfs made (initramfs cached: $initramfs_cached) | $t_first_iso s | |"
echo "| raw disk: size / used | $raw_apparent B / $raw_used B | |"
echo "| qcow2 file | $qcow2 B | |"
echo "| ISO file | $iso B | |"
echo "| disk: boot to login prompt, TCG, BIOS / UEFI | $login s / $login_uefi s | |"
echo "| ISO: boot to login prompt, TCG, BIOS / UEFI | $iso_login s / $iso_login_uefi s | |"
echo
echo "runs: qcow2 ${t_qcow2[*]} | raw ${t_raw[*]} | again ${t_again[*]} | iso ${t_iso[*]}"
