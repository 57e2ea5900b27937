#!/usr/bin/env bash
# What `make bench` and the bench's tests need besides ../scripts/ensure-deps.sh: redis-benchmark,
# pgbench, the charts' TrueType font (rendered in pure Rust, so no fontconfig or freetype), and
# node (to parse the k6 scripts). Installs whatever is missing with apt-get.
set -euo pipefail

font=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
pg_bindir() {
  local d
  d=$(pg_config --bindir 2>/dev/null || true)
  if [ -n "$d" ] && [ -x "$d/postgres" ]; then echo "$d"; return; fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
}

missing=()
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
bindir=$(pg_bindir)
[ -n "$bindir" ] && [ -x "$bindir/pgbench" ] || missing+=(postgresql-15) # pgbench ships with the server
[ -f "$font" ] || missing+=(fonts-dejavu-core)
command -v node >/dev/null || missing+=(nodejs)

if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "Installing ${missing[*]} with apt-get ..." >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  else
    echo "Missing: ${missing[*]}. Install redis-benchmark (redis-tools), pgbench (PostgreSQL 15), $font (fonts-dejavu-core) and node, then retry." >&2
    exit 1
  fi
fi
