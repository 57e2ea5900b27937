#!/usr/bin/env bash
# A real kube-apiserver (v1.20.2) and etcd on loopback, for the controller's integration tests.
#
#   scripts/k8s-apiserver.sh build [COMPONENT...]
#                                    build kube-apiserver (or the named components of v1.20.2: kube-apiserver,
#                                    kube-controller-manager, kube-scheduler, kubelet, kube-proxy) from Debian's
#                                    source package with Debian's Go, and take etcd from Debian; cached per
#                                    component, so a second run returns at once
#   scripts/k8s-apiserver.sh start   start etcd + kube-apiserver on free loopback ports in a new temporary
#                                    directory; prints KUBECONFIG=… and RUN=… once the server is ready
#   scripts/k8s-apiserver.sh env     prints `export KUBECONFIG=…` for the running server
#   scripts/k8s-apiserver.sh stop    stops both processes and removes the directory
#
# WBC_K8S_CACHE (default ~/.cache/wbc-k8s) holds the build (~1.5 GB, ~5 minutes cold on 2 cores).
# WBC_K8S_RUN picks the run directory of start/env/stop (default: the last one `start` made).
# WBC_K8S_OWNER_PID makes `start` stop the server by itself once that process has exited, so a test
# process that dies without cleaning up never leaves daemons behind.
# Exit status 3 from `build` means it cannot work on this machine (no apt-get, no Debian sources).
set -euo pipefail

CACHE=${WBC_K8S_CACHE:-$HOME/.cache/wbc-k8s}
BIN=$CACHE/bin
K8S_DEB_VERSION=${WBC_K8S_DEB_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}
COMPONENTS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"

log() { echo "k8s-apiserver: $*" >&2; }
die() { log "$*"; exit 1; }

# One stamp per component, "<component> <Debian version>"; kube-apiserver's keeps its historic name.
stamp_file() { if [ "$1" = kube-apiserver ]; then echo "$CACHE/built.stamp"; else echo "$CACHE/built-$1.stamp"; fi; }
stamped() { [ "$(cat "$(stamp_file "$1")" 2>/dev/null)" = "$1 $K8S_DEB_VERSION" ]; }
built() { # component...
  local c
  [ -x "$BIN/etcd" ] || return 1
  for c in "$@"; do [ -x "$BIN/$c" ] && stamped "$c" || return 1; done
}

# apt with private lists and cache, from the machine's own Debian sources plus their deb-src twins
apt_private() {
  local A=$CACHE/apt
  apt-get -q -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$A/sources.list.d" \
    -o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache" -o APT::Sandbox::User=root "$@"
}

prepare_apt() {
  command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || {
    log "cannot build: this is not a Debian-like machine (no apt-get/dpkg-deb)"; exit 3; }
  local A=$CACHE/apt sources
  sources=$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$sources" ] || { log "cannot build: no deb822 sources in /etc/apt/sources.list.d"; exit 3; }
  mkdir -p "$A/sources.list.d" "$A/lists/partial" "$A/cache/archives/partial"
  for f in $sources; do
    cp "$f" "$A/sources.list.d/$(basename "$f")"
    sed 's/^Types: deb$/Types: deb-src/' "$f" > "$A/sources.list.d/src-$(basename "$f")"
  done
  apt_private update -qq || { log "cannot build: apt-get update failed (no network to the Debian mirror?)"; exit 3; }
}

fetch() {
  local A=$CACHE/apt
  [ -f "$A/fetched.stamp" ] && return
  local missing="cannot build: this machine's Debian release does not carry the packages (Debian 12 bookworm does)"
  ( cd "$A" && { apt_private source --download-only "kubernetes=$K8S_DEB_VERSION" || apt_private source --download-only kubernetes; } ) \
    || { log "$missing"; exit 3; }
  mkdir -p "$CACHE/debs" "$CACHE/root"
  ( cd "$CACHE/debs" && apt_private download golang-1.19-go golang-1.19-src etcd-server golang-github-modern-go-reflect2-dev ) \
    || { log "$missing"; exit 3; }
  for d in "$CACHE"/debs/*.deb; do dpkg-deb -x "$d" "$CACHE/root"; done
  touch "$A/fetched.stamp"
}

# Unpacks and patches into a fresh directory, renamed into place only when complete: the patches
# cannot be applied twice, and an interrupted run must not leave a half-patched tree behind.
unpack() {
  [ -f "$CACHE/src/.wbc-patched" ] && return
  local A=$CACHE/apt tmp=$CACHE/src.tmp
  rm -rf "$tmp" "$CACHE/src" "$A/debian" && mkdir -p "$tmp"
  tar xzf "$(ls "$A"/kubernetes_*.orig.tar.gz | head -1)" -C "$tmp" --strip-components=1
  tar xJf "$(ls "$A"/kubernetes_*.debian.tar.xz | head -1)" -C "$A"
  ( cd "$tmp" && for p in $(cat "$A/debian/patches/series"); do patch -p1 -s < "$A/debian/patches/$p"; done )
  # reflect2 1.0.1 crashes with Go >= 1.18: swap in Debian's 1.0.2
  rm -rf "$tmp/vendor/github.com/modern-go/reflect2"
  cp -r "$CACHE/root/usr/share/gocode/src/github.com/modern-go/reflect2" "$tmp/vendor/github.com/modern-go/"
  rm -f "$tmp"/vendor/github.com/modern-go/reflect2/*_test.go
  touch "$tmp/.wbc-patched" && mv "$tmp" "$CACHE/src"
}

# Local change to the tree: the hostPath provisioner makes its volumes writable by any user, like
# kind's local-path provisioner, so that non-root pods (fsGroup does not apply to hostPath) can write.
patch_hostpath() {
  local f=$CACHE/src/pkg/volume/hostpath/host_path.go
  grep -q 'os.Chmod(pv.Spec.HostPath.Path, 0777)' "$f" && return
  sed -i 's|^\treturn pv, os.MkdirAll(pv.Spec.HostPath.Path, 0750)$|\tif err := os.MkdirAll(pv.Spec.HostPath.Path, 0750); err != nil {\n\t\treturn pv, err\n\t}\n\treturn pv, os.Chmod(pv.Spec.HostPath.Path, 0777)|' "$f"
  grep -q 'os.Chmod(pv.Spec.HostPath.Path, 0777)' "$f" || die "cannot patch $f"
}

compile() { # component...
  local goroot=$CACHE/root/usr/lib/go-1.19 gopath=$CACHE/gopath c
  mkdir -p "$CACHE/shim" "$BIN" "$gopath/src/k8s.io"
  printf '#!/bin/sh\nshift\nexec cp -p "$@"\n' > "$CACHE/shim/rsync" && chmod +x "$CACHE/shim/rsync" # k8s wants rsync -pc
  ln -sfn "$CACHE/src" "$gopath/src/k8s.io/kubernetes"
  patch_hostpath
  local V=k8s.io/kubernetes/vendor/k8s.io
  local LD="-s -w -X $V/component-base/version.gitVersion=v1.20.2 -X $V/component-base/version.gitMajor=1
    -X $V/component-base/version.gitMinor=20 -X $V/client-go/pkg/version.gitVersion=v1.20.2"
  for c in "$@"; do
    stamped "$c" && [ -x "$BIN/$c" ] && continue
    local started=$SECONDS
    (
      export GOROOT=$goroot PATH=$CACHE/shim:$goroot/bin:$PATH GOCACHE=$CACHE/gocache CGO_ENABLED=0 GOPROXY=off HOME=$CACHE
      cd "$CACHE/src"
      [ -f .wbc-generated ] || { make generated_files && touch .wbc-generated; }
      cd "$gopath/src/k8s.io/kubernetes"
      GOPATH=$gopath GO111MODULE=off go build -ldflags "$LD" -o "$BIN/$c.tmp" "./cmd/$c"
    )
    mv "$BIN/$c.tmp" "$BIN/$c"
    echo "$c $K8S_DEB_VERSION" > "$(stamp_file "$c")"
    log "built $c in $((SECONDS - started)) s"
  done
  cp "$CACHE/root/usr/bin/etcd" "$BIN/etcd"
}

build() { # component...
  local c
  for c in "$@"; do
    case " $COMPONENTS " in *" $c "*) ;; *) die "unknown component $c (one of: $COMPONENTS)" ;; esac
  done
  mkdir -p "$CACHE"
  exec 9> "$CACHE/build.lock"
  flock 9 # `make test` and a test harness may both ask for the build
  if built "$@"; then log "cached in $BIN"; return; fi
  local started=$SECONDS
  prepare_apt
  log "building $* v1.20.2 and etcd into $CACHE (once: on 2 cores about 5 minutes for kube-apiserver, 2 more for the other four)"
  fetch
  unpack
  compile "$@"
  log "built in $((SECONDS - started)) s: $("$BIN/$1" --version)"
}

port_is_free() { ! (exec 3<> "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 40000))
    port_is_free "$p" && port_is_free "$((p + 1))" && { echo "$p"; return; }
  done
  die "no free loopback port found"
}

run_dir() {
  local run=${WBC_K8S_RUN:-$(cat "$CACHE/current" 2>/dev/null || true)}
  [ -n "$run" ] || die "no server started (no WBC_K8S_RUN and no $CACHE/current)"
  echo "$run"
}

launch() {
  local run=$1 port etcd_port
  port=$(free_port) && etcd_port=$(free_port)
  "$BIN/etcd" --data-dir "$run/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-cluster "default=http://127.0.0.1:$((etcd_port + 1))" --unsafe-no-fsync > "$run/etcd.log" 2>&1 &
  echo $! > "$run/etcd.pid"
  "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 --secure-port="$port" --insecure-port=0 --cert-dir="$run/certs" \
    --service-cluster-ip-range=10.0.0.0/24 --authorization-mode=RBAC --token-auth-file="$run/tokens.csv" \
    --endpoint-reconciler-type=none --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$run/sa.pub" --service-account-signing-key-file="$run/sa.key" > "$run/kas.log" 2>&1 &
  echo $! > "$run/kas.pid"
  echo "$port" > "$run/port"
}

ready() {
  local run=$1 port token
  port=$(cat "$run/port") token=$(cut -d, -f1 "$run/tokens.csv")
  for _ in $(seq 1 120); do
    kill -0 "$(cat "$run/kas.pid")" 2>/dev/null && kill -0 "$(cat "$run/etcd.pid")" 2>/dev/null || return 1
    [ "$(curl -sk -H "Authorization: Bearer $token" "https://127.0.0.1:$port/readyz" 2>/dev/null)" = ok ] && return 0
    sleep 0.5
  done
  return 1
}

write_kubeconfig() {
  local run=$1
  cat > "$run/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: wbc-test, cluster: {server: "https://127.0.0.1:$(cat "$run/port")", certificate-authority: "$run/certs/apiserver.crt"}}]
users: [{name: admin, user: {token: "$(cut -d, -f1 "$run/tokens.csv")"}}]
contexts: [{name: wbc-test, context: {cluster: wbc-test, user: admin, namespace: default}}]
current-context: wbc-test
KC
}

start() {
  built kube-apiserver || die "not built yet: run '$0 build' first"
  local run=${WBC_K8S_RUN:-$(mktemp -d "${TMPDIR:-/tmp}/wbc-k8s.XXXXXX")}
  mkdir -p "$run/certs"
  openssl genrsa -out "$run/sa.key" 2048 2>/dev/null && openssl rsa -in "$run/sa.key" -pubout -out "$run/sa.pub" 2>/dev/null
  echo "$(openssl rand -hex 16),admin,admin-uid,system:masters" > "$run/tokens.csv"
  # a port taken between the check and the bind fails the start: try again on other ports
  for attempt in 1 2 3; do
    launch "$run"
    if ready "$run"; then break; fi
    WBC_K8S_RUN=$run stop_processes
    [ "$attempt" = 3 ] && { tail -n 20 "$run/kas.log" >&2; die "kube-apiserver did not become ready; see $run"; }
    rm -rf "$run/etcd"
  done
  write_kubeconfig "$run"
  echo "$run" > "$CACHE/current"
  if [ -n "${WBC_K8S_OWNER_PID:-}" ]; then
    nohup bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; WBC_K8S_RUN=$2 "$3" stop' \
      _ "$WBC_K8S_OWNER_PID" "$run" "$(realpath "$0")" > /dev/null 2>&1 &
    echo $! > "$run/watchdog.pid"
  fi
  echo "KUBECONFIG=$run/kubeconfig"
  echo "RUN=$run"
}

stop_processes() {
  local run pid
  run=$(run_dir)
  for name in kas etcd; do
    pid=$(cat "$run/$name.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for name in kas etcd; do
    pid=$(cat "$run/$name.pid" 2>/dev/null || true)
    [ -n "$pid" ] || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

stop() {
  local run
  run=$(run_dir)
  [ -d "$run" ] || return 0
  stop_processes
  local watchdog
  watchdog=$(cat "$run/watchdog.pid" 2>/dev/null || true)
  # unless this is the watchdog itself (bash may exec its last command in place)
  [ -n "$watchdog" ] && [ "$watchdog" != "$$" ] && [ "$watchdog" != "$PPID" ] && kill "$watchdog" 2>/dev/null || true
  rm -rf "$run"
  [ "$(cat "$CACHE/current" 2>/dev/null)" = "$run" ] && rm -f "$CACHE/current"
  log "stopped, removed $run"
}

case "${1:-}" in
  build) shift; build "${@:-kube-apiserver}" ;;
  start) start ;;
  stop) stop ;;
  env) echo "export KUBECONFIG=$(run_dir)/kubeconfig" ;;
  *) echo "usage: $0 build [COMPONENT...]|start|stop|env" >&2; exit 2 ;;
esac
