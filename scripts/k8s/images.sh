#!/usr/bin/env bash
# Builds the wbc images without Docker: a root filesystem with the release binary and the shared
# libraries it links (as `ldd` lists them), a passwd entry for the non-root user 65532, packed as an
# OCI image with umoci and exported as a docker-archive with skopeo, ready for
# `ctr -n k8s.io images import`. The Dockerfile is the same image for users with Docker. Then
# dependency-images.sh builds the chart's Redis and PostgreSQL the same way, from Debian's packages.
#   scripts/k8s/images.sh OUT_DIR [TAG]   ->  OUT_DIR/wbc-{api,worker,controller}.tar (k8s.local/NAME:TAG),
#                                             OUT_DIR/redis.tar (k8s.local/redis:7.0),
#                                             OUT_DIR/postgres.tar (k8s.local/postgres:15)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: images.sh OUT_DIR [TAG]}
tag=${2:-dev}
target=${CARGO_TARGET_DIR:-$root/target}
missing=()
for tool in umoci skopeo; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi
(cd "$root" && cargo build --release --quiet -p wbc-api -p wbc-worker -p wbc-controller)
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

build() { # binary
  local bin=$1 layout=$work/$1
  umoci init --layout "$layout"
  umoci new --image "$layout:$tag"
  umoci unpack --rootless --image "$layout:$tag" "$work/bundle-$bin"
  local rootfs=$work/bundle-$bin/rootfs
  install -D -s -m 0755 "$target/release/$bin" "$rootfs/app"
  # The loader and every library the binary links, at the paths the binary expects.
  ldd "$target/release/$bin" | grep -o '/[^ ]*' | while read -r lib; do
    install -D -m 0644 "$(readlink -f "$lib")" "$rootfs$lib"
  done
  chmod 0755 "$rootfs"/lib64/ld-linux-* 2>/dev/null || true
  mkdir -p "$rootfs/etc" "$rootfs/tmp"
  echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' >"$rootfs/etc/passwd"
  echo 'nonroot:x:65532:' >"$rootfs/etc/group"
  # the system's CAs, as distroless has them: rediss:// and sslmode=verify-full trust them without a CA file
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  chroot "$rootfs" /app --version >/dev/null  # the libraries are complete
  umoci repack --image "$layout:$tag" "$work/bundle-$bin"
  umoci config --image "$layout:$tag" --config.user 65532:65532 --config.entrypoint /app \
    --config.workingdir / --clear=config.cmd
  rm -f "$out/$bin.tar"
  skopeo copy --quiet "oci:$layout:$tag" "docker-archive:$out/$bin.tar:k8s.local/$bin:$tag"
  echo "$out/$bin.tar  k8s.local/$bin:$tag"
}

for bin in wbc-api wbc-worker wbc-controller; do build "$bin"; done
"$root/scripts/k8s/dependency-images.sh" "$out"
