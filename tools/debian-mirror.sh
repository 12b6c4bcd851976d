#!/usr/bin/env bash
# Print the Debian mirror URL this host's apt is configured with (deb822 .sources or one-line
# sources.list), so that nothing in the repository names a mirror.
set -euo pipefail
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  url=$(awk 'tolower($1)=="uris:" {print $2; exit}' "$f")
  suites=$(awk 'tolower($1)=="suites:" {$1=""; print; exit}' "$f")
  case "$suites" in *bookworm*) ;; *) continue ;; esac
  case "$url" in *security*) continue ;; esac
  [ -n "$url" ] && { echo "${url%/}"; exit 0; }
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] || continue
  url=$(awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' "$f")
  [ -n "$url" ] && { echo "${url%/}"; exit 0; }
done
echo "debian-mirror.sh: no Debian mirror found in /etc/apt/sources.list*" >&2
exit 1
