#!/usr/bin/env bash
# RPM root tree benchmarks, side by side with dnf (`dnf --installroot`, Debian's dnf 4) on the
# same generated package set: a busybox base and N packages (25 files each, a dependency tree,
# a %post in one of ten), published by createrepo_c. Both read the repository from a local
# directory, so no time goes to the network; dnf's metadata cache is warm.
# Usage: sudo bash benches/rpm.sh     (RUNS=N for more runs, default 3; PACKAGES=N, default 400)
# Prints a markdown table of medians.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
bash tools/setup.sh >/dev/null
command -v dnf >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnf >/dev/null
bench_dirs rpm 3
n=${PACKAGES:-400}
repo=$work/repo
top=$work/rpmbuild

# The package set (generated once per PACKAGES value; not timed).
if [ ! -f "$repo/.packages-$n" ]; then
  rm -rf "$repo" "$top"; mkdir -p "$repo" "$top/SPECS"
  cat > "$top/SPECS/bench-base.spec" <<'EOF'
Name: bench-base
Version: 1.0
Release: 1
Summary: base
License: MIT
AutoReqProv: no
Provides: /bin/sh
%description
base
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/etc %{buildroot}/var/log %{buildroot}/tmp %{buildroot}/root %{buildroot}/proc %{buildroot}/dev %{buildroot}/sys %{buildroot}/run
cp /bin/busybox %{buildroot}/usr/bin/busybox
ln -s usr/bin %{buildroot}/bin
for a in sh cat echo rm mkdir; do ln -s busybox %{buildroot}/usr/bin/$a; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > %{buildroot}/etc/passwd
printf 'root:x:0:\n' > %{buildroot}/etc/group
%files
/usr
/bin
/etc
/var
/tmp
/root
/proc
/dev
/sys
/run
EOF
  all=""
  for i in $(seq 0 $((n - 1))); do
    req="bench-base"
    [ "$i" -gt 0 ] && req="bench-$((i / 3))"
    post=""
    [ $((i % 10)) = 0 ] && post=$'%post\necho installed bench-'"$i"$' >> /var/log/bench.log'
    cat > "$top/SPECS/bench-$i.spec" <<EOF
Name: bench-$i
Version: 1.0
Release: 1
Summary: bench $i
License: MIT
BuildArch: noarch
AutoReqProv: no
Requires: $req
%description
bench $i
%install
mkdir -p %{buildroot}/usr/share/bench-$i
for f in \$(seq 1 25); do head -c \$((2048 + f * 200)) /dev/urandom | base64 > %{buildroot}/usr/share/bench-$i/file-\$f; done
%files
/usr/share/bench-$i
$post
EOF
    all="$all, bench-$i"
  done
  printf 'Name: bench-all\nVersion: 1.0\nRelease: 1\nSummary: all\nLicense: MIT\nBuildArch: noarch\nAutoReqProv: no\nRequires: %s\n%%description\nall\n%%files\n' "${all#, }" > "$top/SPECS/bench-all.spec"
  printf 'Name: bench-extra\nVersion: 1.0\nRelease: 1\nSummary: extra\nLicense: MIT\nBuildArch: noarch\nAutoReqProv: no\nRequires: bench-all\n%%description\nextra\n%%install\nmkdir -p %%{buildroot}/usr/share\necho extra > %%{buildroot}/usr/share/bench-extra\n%%files\n/usr/share/bench-extra\n' > "$top/SPECS/bench-extra.spec"
  for s in "$top"/SPECS/*.spec; do
    rpmbuild --quiet --define "_topdir $top" --define '_build_id_links none' -bb "$s" >/dev/null 2>&1
  done
  cp "$top"/RPMS/*/*.rpm "$repo/"
  createrepo_c --quiet "$repo"
  touch "$repo/.packages-$n"
fi

desc=$work/desc
mkdir -p "$desc" "$work/derived"
printf '[image]\nname = "bench-rpm"\nversion = "1.0.0"\n\n[[repository]]\ntype = "rpm-md"\nuri = "file://%s"\ngpgcheck = false\n\n[packages]\ninstall = ["bench-all"]\n' "$repo" > "$desc/image.toml"
printf '[image]\nname = "bench-rpm-extra"\nderived-from = "../desc"\nversion = "1.0.1"\n\n[packages]\ninstall = ["bench-extra"]\n' > "$work/derived/image.toml"
dnf_args=(-y -q --releasever=1 --setopt=reposdir=/nonexistent --setopt=cachedir="$work/dnf-cache"
  --repofrompath=bench,"file://$repo" --repo=bench --nogpgcheck --setopt=install_weak_deps=False)
root=$work/root
fresh_store() { rm -rf "$work/store"; mkdir -p "$work/store/cache"; ln -sfn "$work/downloads" "$work/store/cache/downloads"; }
mkdir -p "$work/downloads"

# Warm caches (not timed): dnf's metadata, strata's downloads.
dnf "${dnf_args[@]}" makecache >/dev/null 2>&1
fresh_store; $strata -q --store "$work/store" build "$desc" >/dev/null

declare -a t_dnf t_cold t_again t_add
for i in $(seq "$runs"); do
  rm -rf "$root"; mkdir -p "$root"; s=$(now)
  dnf "${dnf_args[@]}" --installroot="$root" install bench-all >/dev/null 2>&1
  t_dnf+=("$(elapsed "$s" "$(now)")")
  [ "$(ls "$root/usr/share" | grep -c '^bench-')" = "$n" ] || { echo "dnf did not install the set" >&2; exit 1; }
  fresh_store; s=$(now)
  $strata -q --store "$work/store" build "$desc" >/dev/null
  t_cold+=("$(elapsed "$s" "$(now)")")
  s=$(now)
  $strata -q --store "$work/store" build "$desc" >/dev/null
  t_again+=("$(elapsed "$s" "$(now)")")
  s=$(now)
  $strata -q --store "$work/store" build "$work/derived" >/dev/null
  t_add+=("$(elapsed "$s" "$(now)")")
done
rm -rf "$root"
mem=$( { fresh_store; /usr/bin/time -f %M $strata -q --store "$work/store" build "$desc" >/dev/null; } 2>&1 | tail -1)

dnf_m=$(median "${t_dnf[@]}"); cold_m=$(median "${t_cold[@]}")
again_m=$(median "${t_again[@]}"); add_m=$(median "${t_add[@]}")
echo "| $((n + 2)) packages, $runs runs (median) | seconds | vs dnf --installroot |"
echo "|---|---|---|"
echo "| dnf --installroot install (metadata cached) | $dnf_m | 1.00x |"
echo "| strata build, empty store (downloads cached) | $cold_m | $(ratio "$cold_m" "$dnf_m")x |"
echo "| strata build again (every step cached) | $again_m | $(ratio "$again_m" "$dnf_m")x |"
echo "| strata build of a derived image adding one package | $add_m | $(ratio "$add_m" "$dnf_m")x |"
echo
echo "runs: dnf ${t_dnf[*]}; cold ${t_cold[*]}; again ${t_again[*]}; add ${t_add[*]}"
echo "peak memory of a cold strata build: $((mem / 1024)) MiB"
