#!/usr/bin/env bash
# Makes sure redis-server, the PostgreSQL server binaries, Prometheus (with promtool), kubectl and
# openssl (the test kit makes its TLS certificates with it) exist;
# installs them with apt where it can. `ensure-deps.sh bench` also checks what the benchmarks need:
# redis-benchmark, pgbench (ships with the server), the charts' TrueType font (rendered in pure Rust,
# so no fontconfig or freetype) and node (to parse the k6 scripts).
set -euo pipefail

pg_bindir() {
  local d
  d=$(pg_config --bindir 2>/dev/null || true)
  if [ -n "$d" ] && [ -x "$d/postgres" ]; then echo "$d"; return; fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    [ -x "$d/postgres" ] && { echo "$d"; return; }
  done
}

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
[ -n "$(pg_bindir)" ] || missing+=(postgresql-15)
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
# The controller's tests drive a real kube-apiserver with kubectl too.
command -v kubectl >/dev/null || missing+=(kubernetes-client)
command -v openssl >/dev/null || missing+=(openssl)
if [ "${1:-}" = bench ]; then
  command -v redis-benchmark >/dev/null || missing+=(redis-tools)
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
  command -v node >/dev/null || missing+=(nodejs)
fi

if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "Installing ${missing[*]} with apt-get ..." >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    # Debian starts the packaged services where it can; ours run on their own ports and directories.
  else
    echo "Missing: ${missing[*]}. Install them (Debian package names), then retry." >&2
    exit 1
  fi
fi
