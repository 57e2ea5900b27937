#!/usr/bin/env bash
# Builds the images of the chart's own Redis and PostgreSQL for the local node
# (charts/wbc/ci/local-node-values.yaml), without Docker or a registry, from Debian bookworm's packages:
#   k8s.local/redis:7.0    redis-server and redis-cli (redis-server, redis-tools 7.0.x)
#   k8s.local/postgres:15  PostgreSQL 15 (postgresql-15, postgresql-client-15) behind an entrypoint with
#                          the official image's contract: POSTGRES_USER, POSTGRES_PASSWORD (or
#                          POSTGRES_PASSWORD_FILE), POSTGRES_DB, PGDATA, initdb on an empty PGDATA,
#                          container args passed on to postgres
# Each holds the binaries, the shared libraries `ldd` lists, the data files the server reads, and
# busybox-static as /bin/sh. Both run as uid/gid 10001 (IMAGE_UID: a high uid that no user of the node
# has, as checkov's CKV_K8S_40 asks; the chart's podSecurityContext of both uses the same) on a read-only
# root file system and write only to the volumes the chart mounts. The packages come from the host's install when it has them, else from
# `apt-get download` + `dpkg-deb -x` (cached in $WBC_IMAGES_CACHE, default ~/.cache/wbc-images;
# WBC_IMAGES_FROM=debs forces that path). scripts/k8s/check-images.sh runs the images as the chart does.
#   scripts/k8s/dependency-images.sh OUT_DIR  ->  OUT_DIR/redis.tar, OUT_DIR/postgres.tar (docker-archives
#                                                 for `ctr -n k8s.io images import`)
set -euo pipefail

out=${1:?usage: dependency-images.sh OUT_DIR}
cache=${WBC_IMAGES_CACHE:-$HOME/.cache/wbc-images}
from=${WBC_IMAGES_FROM:-auto}
# the images' user and group; charts/wbc/values.yaml's redis and postgresql podSecurityContext run them as it
IMAGE_UID=10001
PACKAGES=(redis-server redis-tools postgresql-15 postgresql-client-15 tzdata)
PG=/usr/lib/postgresql/15
# the server, what the entrypoint runs, and the clients for `kubectl exec`
PG_BINARIES=(postgres initdb pg_ctl pg_controldata pg_isready psql pg_dump pg_dumpall pg_restore)
DEPS=(--no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances)

log() { echo "dependency-images: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: the images' directories belong to uid $IMAGE_UID, and the checks chroot"
command -v apt-get >/dev/null || die "needs a Debian-like machine (apt-get, dpkg-deb)"
command -v dpkg-deb >/dev/null || die "needs a Debian-like machine (apt-get, dpkg-deb)"

apt_quiet() { DEBIAN_FRONTEND=noninteractive apt-get -q -o APT::Sandbox::User=root "$@"; }

ensure_tools() {
  local missing=()
  command -v umoci >/dev/null || missing+=(umoci)
  command -v skopeo >/dev/null || missing+=(skopeo)
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]} with apt-get"
  apt_quiet install -y --no-install-recommends "${missing[@]}" >&2 ||
    { apt_quiet update >&2 && apt_quiet install -y --no-install-recommends "${missing[@]}" >&2; }
}

installed() { # package [version prefix]
  dpkg-query -W -f='${db:Status-Status} ${Version}\n' "$1" 2>/dev/null | grep -q "^installed ${2:-}"
}

# Downloads the packages' candidate versions into the cache (apt skips files it already has) and unpacks
# them into ROOT.
unpack_debs() { # root package...
  local root=$1; shift
  local files
  mkdir -p "$cache/debs" "$root"
  files=$(cd "$cache/debs" && apt-get download --print-uris "$@" | awk '{print $2}') ||
    { apt_quiet update >&2 && files=$(cd "$cache/debs" && apt-get download --print-uris "$@" | awk '{print $2}'); }
  (cd "$cache/debs" && apt_quiet -qq download "$@" >&2)
  for f in $files; do dpkg-deb -x "$cache/debs/$f" "$root"; done
}

# The libraries the packages link: the lib* part of their dependency closure, without libc6 (ldd runs
# with the host's loader, so the host's C library goes into the images, as for the wbc images).
library_packages() { # package...
  local direct
  mapfile -t direct < <(apt-cache depends "${DEPS[@]}" "$@" | awk '$1 ~ /Depends:$/ && $2 ~ /^(lib|zlib)/ {print $2}' | sort -u)
  apt-cache depends --recurse "${DEPS[@]}" "${direct[@]}" | grep -E '^(lib|zlib)[^ ]*$' | grep -vx libc6 | sort -u
}

# Sets src (the tree the package files are read from: "" for the host) and busybox.
choose_sources() {
  if [ "$from" != debs ] && installed redis-server 5:7.0. && installed redis-tools 5:7.0. &&
    installed postgresql-15 && installed postgresql-client-15 && installed tzdata; then
    log "packages: the host's install: $(dpkg-query -W -f='${Package} ${Version}\n' "${PACKAGES[@]}" | paste -sd, | sed 's/,/, /g')"
    src=""
  else
    log "packages: apt-get download ${PACKAGES[*]} and the libraries they link"
    src=$work/debs-root
    # shellcheck disable=SC2046
    unpack_debs "$src" "${PACKAGES[@]}" $(library_packages "${PACKAGES[@]}")
  fi
  if [ "$from" != debs ] && installed busybox-static; then
    busybox=/bin/busybox
  else
    unpack_debs "$work/busybox-root" busybox-static
    busybox=$work/busybox-root/bin/busybox
  fi
}

# Copies files of the package tree into the image at the same paths (symlinks followed).
put() { # rootfs mode path...
  local rootfs=$1 mode=$2 path; shift 2
  for path; do install -D -m "$mode" "$(readlink -f "$src$path")" "$rootfs$path"; done
}

# The loader and every library the files link, at the paths the loader finds them at.
put_libraries() { # rootfs file...
  local rootfs=$1 listing lib; shift
  if [ -n "$src" ]; then
    listing=$(LD_LIBRARY_PATH="$(printf '%s:' "$src"/{usr/,}lib/*-linux-gnu | sed 's/:$//')" ldd "$@")
  else
    listing=$(ldd "$@")
  fi
  if grep -q 'not found' <<<"$listing"; then
    die "libraries missing: $(grep 'not found' <<<"$listing" | sort -u | tr -s '\t\n' '  ')"
  fi
  awk '/^\t/ { for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' <<<"$listing" | sort -u |
    while read -r lib; do
      install -D -m 0644 "$(readlink -f "$lib")" "$rootfs${lib#"$src"}"
    done
  chmod 0755 "$rootfs"/lib64/ld-linux-*
}

# busybox as /bin/sh, with its applets, for the entrypoint, probes and `kubectl exec`.
put_base() { # rootfs user home
  local rootfs=$1 user=$2 home=$3 applet
  install -D -m 0755 "$busybox" "$rootfs/bin/busybox"
  for applet in $("$busybox" --list); do
    [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
  done
  mkdir -p "$rootfs"/{etc,proc,sys,dev,tmp}
  chmod 1777 "$rootfs/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\n%s:x:%s:%s:%s:%s:/bin/sh\n' "$user" "$IMAGE_UID" "$IMAGE_UID" "$user" "$home" >"$rootfs/etc/passwd"
  printf 'root:x:0:\n%s:x:%s:\n' "$user" "$IMAGE_UID" >"$rootfs/etc/group"
}

new_rootfs() { # name tag -> prints the rootfs path
  umoci init --layout "$work/$1.oci"
  umoci new --image "$work/$1.oci:$2"
  umoci unpack --image "$work/$1.oci:$2" "$work/$1.bundle" >/dev/null
  echo "$work/$1.bundle/rootfs"
}

pack() { # name tag umoci-config-option...
  local name=$1 tag=$2; shift 2
  umoci repack --image "$work/$name.oci:$tag" "$work/$name.bundle"
  umoci config --image "$work/$name.oci:$tag" --config.user $IMAGE_UID:$IMAGE_UID "$@"
  rm -f "$out/$name.tar"
  skopeo copy --quiet "oci:$work/$name.oci:$tag" "docker-archive:$out/$name.tar:k8s.local/$name:$tag"
  echo "$out/$name.tar  k8s.local/$name:$tag  (root file system $(du -sh "$work/$name.bundle/rootfs" | cut -f1), archive $(du -sh "$out/$name.tar" | cut -f1))"
}

build_redis() {
  local rootfs version
  rootfs=$(new_rootfs redis 7.0)
  put_base "$rootfs" redis /data
  put "$rootfs" 0755 /usr/bin/redis-server /usr/bin/redis-cli
  put_libraries "$rootfs" "$src/usr/bin/redis-server" "$src/usr/bin/redis-cli"
  mkdir -p "$rootfs/data" "$rootfs/etc/redis"
  chown $IMAGE_UID:$IMAGE_UID "$rootfs/data"
  version=$(chroot --userspec=$IMAGE_UID:$IMAGE_UID "$rootfs" redis-server --version | sed -n 's/.* v=\([0-9.]*\) .*/\1/p')
  chroot --userspec=$IMAGE_UID:$IMAGE_UID "$rootfs" redis-cli --version >/dev/null
  case $version in 7.0.*) ;; *) die "redis-server is $version, not 7.0.x" ;; esac
  pack redis 7.0 --config.env PATH=/usr/local/bin:/usr/bin:/bin --config.cmd redis-server \
    --config.workingdir /data --config.exposedports 6379/tcp \
    --config.label "org.opencontainers.image.version=$version" \
    --config.label "org.opencontainers.image.description=Redis $version from Debian bookworm's redis-server, for the wbc chart"
}

build_postgres() {
  local rootfs version modules bin
  rootfs=$(new_rootfs postgres 15)
  put_base "$rootfs" postgres /var/lib/postgresql
  put "$rootfs" 0755 "${PG_BINARIES[@]/#/$PG/bin/}"
  # `locale -a`, which initdb runs to import the collations, and the C.UTF-8 locale: the C library's
  # (libc-bin), so always the host's
  install -D -m 0755 /usr/bin/locale "$rootfs/usr/bin/locale"
  # every module but the LLVM JIT: libLLVM alone is ~100 MB, and without it postgres runs with jit off
  mapfile -t modules < <(cd "$src$PG/lib" && find . -maxdepth 1 -name '*.so' ! -name 'llvmjit*' | sed "s|^\.|$PG/lib|")
  put "$rootfs" 0644 "${modules[@]}"
  put_libraries "$rootfs" "${PG_BINARIES[@]/#/$src$PG/bin/}" "${modules[@]/#/$src}" /usr/bin/locale
  mkdir -p "$rootfs/usr/share/postgresql" "$rootfs/usr/lib/locale"
  cp -a "$src/usr/share/postgresql/15" "$rootfs/usr/share/postgresql/"
  rm -rf "$rootfs/usr/share/postgresql/15/man"
  # as in the official image: a database initialised here listens on every address
  sed -ri "s/^#?(listen_addresses)\s*=\s*\S+.*/\1 = '*'/" "$rootfs/usr/share/postgresql/15/postgresql.conf.sample"
  grep -q "^listen_addresses = '\*'" "$rootfs/usr/share/postgresql/15/postgresql.conf.sample"
  cp -a "$src/usr/share/zoneinfo" "$rootfs/usr/share/"
  rm -rf "$rootfs/usr/share/zoneinfo/right" "$rootfs/usr/share/zoneinfo/posix"
  ln -s /usr/share/zoneinfo/Etc/UTC "$rootfs/etc/localtime"
  # the databases' locale (LANG): UTF-8, with the stable code point collation of C
  cp -a /usr/lib/locale/C.utf8 "$rootfs/usr/lib/locale/"
  install -d -o $IMAGE_UID -g $IMAGE_UID -m 0755 "$rootfs/var/lib/postgresql"
  install -d -o $IMAGE_UID -g $IMAGE_UID -m 0700 "$rootfs/var/lib/postgresql/data"
  install -d -o $IMAGE_UID -g $IMAGE_UID -m 3777 "$rootfs/var/run/postgresql"
  write_postgres_entrypoint "$rootfs/usr/local/bin/docker-entrypoint.sh"
  for bin in "${PG_BINARIES[@]}"; do chroot --userspec=$IMAGE_UID:$IMAGE_UID "$rootfs" "$PG/bin/$bin" --version >/dev/null; done
  version=$(chroot --userspec=$IMAGE_UID:$IMAGE_UID "$rootfs" "$PG/bin/postgres" --version | awk '{print $3}')
  case $version in 15.*) ;; *) die "postgres is $version, not 15.x" ;; esac
  # SIGINT is PostgreSQL's fast shutdown: SIGTERM (smart) would wait for every client to disconnect,
  # and the API and worker hold pooled connections. containerd sends the image's stop signal.
  pack postgres 15 --config.env PATH=$PG/bin:/usr/local/bin:/usr/bin:/bin \
    --config.env PGDATA=/var/lib/postgresql/data --config.env LANG=C.UTF-8 \
    --config.entrypoint /usr/local/bin/docker-entrypoint.sh --config.cmd postgres \
    --config.stopsignal SIGINT --config.workingdir / --config.exposedports 5432/tcp \
    --config.label "org.opencontainers.image.version=$version" \
    --config.label "org.opencontainers.image.description=PostgreSQL $version from Debian bookworm's postgresql-15, for the wbc chart"
}

# The official image's contract, without psql or a temporary server: initdb sets the password, and
# postgres in single-user mode creates the database. Unlike the official image's, an initialisation that
# is interrupted (a crash, a liveness kill) starts over at the next start instead of leaving a cluster
# without its database.
write_postgres_entrypoint() { # path
  install -D -m 0755 /dev/null "$1"
  cat >"$1" <<'ENTRYPOINT'
#!/bin/sh
# Entrypoint of k8s.local/postgres (scripts/k8s/dependency-images.sh). On an empty PGDATA: initdb with
# POSTGRES_USER as superuser and POSTGRES_PASSWORD as its password (scram-sha-256 for every TCP
# connection, trust on the local socket), then POSTGRES_DB. The password may come from the file that
# POSTGRES_PASSWORD_FILE names instead (a mounted Secret), as in the official image. Then, or on an initialised PGDATA at once,
# postgres replaces this shell (PID 1, so it gets the stop signal). Arguments that start with "-" go to
# postgres, as in the official image; any other command runs as it is.
set -eu

case ${1:-} in -*) set -- postgres "$@" ;; esac
[ "${1:-}" = postgres ] || exec "$@"

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ -s "$PGDATA/PG_VERSION" ]; then
  echo "entrypoint: $PGDATA holds a database: skipping initialisation"
else
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  # as the official image's file_env: one of the two, the file's trailing newlines dropped; the
  # password stays a shell variable, never exported to postgres
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
      echo "entrypoint: both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set (but are exclusive)" >&2
      exit 1
    fi
    POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
  fi
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "entrypoint: POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) is empty; refusing to create a database without a password" >&2
    exit 1
  fi
  echo "entrypoint: initialising $PGDATA (user $user, database $db)"
  # made beside PGDATA and renamed into place once complete; in place when PGDATA cannot be removed
  # (a mount point, or not empty: initdb then refuses, as in the official image)
  init=$PGDATA
  if [ ! -e "$PGDATA" ] || rmdir "$PGDATA" 2>/dev/null; then
    init=$PGDATA.init
    rm -rf "$init"
  fi
  # the password never touches the disk: initdb reads it from a pipe
  # shellcheck disable=SC2086
  printf '%s\n' "$POSTGRES_PASSWORD" |
    initdb -D "$init" --username="$user" --pwfile=/dev/stdin --auth-local=trust --auth-host=scram-sha-256 \
      ${POSTGRES_INITDB_ARGS:-} >/dev/null
  # initdb's host lines cover loopback only; the pods reach the database over the pod network
  printf '\n# every other host, with a password\nhost all all all scram-sha-256\n' >>"$init/pg_hba.conf"
  if [ "$db" != postgres ]; then
    printf 'CREATE DATABASE "%s";\n' "$(printf '%s' "$db" | sed 's/"/""/g')" |
      postgres --single -D "$init" -c exit_on_error=on postgres >/dev/null
  fi
  [ "$init" = "$PGDATA" ] || mv "$init" "$PGDATA"
  echo "entrypoint: initialised; starting postgres"
fi
exec "$@"
ENTRYPOINT
}

ensure_tools
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
choose_sources
build_redis
build_postgres
