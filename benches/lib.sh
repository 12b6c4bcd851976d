# Helpers shared by the benchmark scripts (sourced, not run, from the project's top directory).

# The benchmark's scratch directory $work (STRATA_BENCH_DIR/NAME, created), its number of runs
# $runs (RUNS, default $2) and the strata binary $strata.
bench_dirs() {
  work=${STRATA_BENCH_DIR:-/var/tmp/strata-bench}/$1
  runs=${RUNS:-$2}
  strata=$PWD/target/release/strata
  mkdir -p "$work"
}
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
median() { python3 -c "import statistics,sys; print(f'{statistics.median(float(x) for x in sys.argv[1:]):.3f}')" "$@"; }
ratio() { python3 -c "print(f'{$1 / $2:.3f}')"; }

# plus_description DIR: descriptions/debian-base copied to DIR as `debian-plus`, with one more
# package (`file`, which brings libmagic1 and libmagic-mgc).
plus_description() {
  rm -rf --one-file-system "$1"; cp -a descriptions/debian-base "$1"
  sed -i 's|    <package name="apt"/>|    <package name="apt"/>\n    <package name="file"/>|' "$1/appliance.kiwi"
  grep -q '<package name="file"/>' "$1/appliance.kiwi"
  sed -i 's|name="debian-base"|name="debian-plus"|' "$1/appliance.kiwi"
}

# measure NAME SETUP COMMAND...: run the function SETUP (untimed) then COMMAND, $runs times, and
# keep the median in t[NAME] (the script declares `declare -A t`); each time goes to stderr.
measure() {
  local name=$1 setup=$2; shift 2
  local times=()
  for i in $(seq "$runs"); do
    $setup; sync
    t0=$(now); "$@" >/dev/null 2>&1; t1=$(now)
    times+=("$(elapsed "$t0" "$t1")")
  done
  t[$name]=$(median "${times[@]}")
  echo "$name: ${times[*]} -> median ${t[$name]}" >&2
}

# A KIWI description directory at $1 equivalent to descriptions/debian-base: its root/ and
# config.sh, and `strata describe --format xml` with the mirror $2 as an explicit signed apt
# repository (KIWI cannot read the host's sources), the image types replaced by the XML $3, and
# the package XML $4 (may be empty) added to the image packages. Needs $strata.
kiwi_description() {
  rm -rf --one-file-system "$1"; mkdir -p "$1"
  cp -a descriptions/debian-base/root descriptions/debian-base/config.sh "$1/"
  $strata describe descriptions/debian-base --format xml | MIRROR=$2 TYPES=$3 EXTRA=$4 python3 -c '
import os, re, sys
s = sys.stdin.read()
host = """  <repository type="apt-deb">\n    <source path="obsrepositories:/"/>\n  </repository>"""
explicit = ("""  <repository type="apt-deb" alias="bookworm" distribution="bookworm" components="main" repository_gpgcheck="true">\n"""
            """    <source path="%s">\n      <signing key="file:///usr/share/keyrings/debian-archive-keyring.gpg"/>\n"""
            """    </source>\n  </repository>""" % os.environ["MIRROR"])
assert host in s, "debian-base no longer uses the host sources"
s = s.replace(host, explicit)
s, n = re.subn(r"(    <type [^\n]*\n)+", lambda m: os.environ["TYPES"], s, count=1)
assert n == 1, "no <type> in the description"
s, n = re.subn(r"(  <packages type=\"image\">\n)", lambda m: m.group(1) + os.environ["EXTRA"], s, count=1)
assert n == 1, "no image packages in the description"
print(s, end="")' > "$1/config.xml"
}
