#!/usr/bin/env bash
# A single-node Kubernetes v1.20.2 on this machine that runs real pods, for the chart's end-to-end
# tests: containerd + runc + a CNI bridge, etcd, the control plane, kubelet, kube-proxy, and dnsmasq
# standing in for cluster DNS. No Docker and no registry: images are docker-archives imported with ctr.
#
#   scripts/k8s/node.sh build            apt packages, the five Kubernetes binaries (through
#                                        scripts/k8s-apiserver.sh), a static pause and busybox images; cached
#   scripts/k8s/node.sh up               start the node; prints KUBECONFIG=… once it is Ready
#   scripts/k8s/node.sh load FILE.tar…   import docker-archives (k8s.local/NAME:TAG) into the node
#   scripts/k8s/node.sh env              prints `export KUBECONFIG=…`
#   scripts/k8s/node.sh status           the daemons and the pods; exit status 1 when no node is up
#   scripts/k8s/node.sh down             stop everything and undo every change to the host; safe when down
#
# Needs root, and one node per machine: the node IP, the bridge, the iptables chains and the paths
# that these versions hard-code (HOST_PATHS) are machine-wide. Pods use imagePullPolicy: Never (or
# IfNotPresent) with k8s.local/pause:3.4.1, k8s.local/busybox:1.35 or loaded images. The default
# StorageClass "standard" provisions hostPath volumes in /tmp/hostpath_pv. NodePorts answer on
# $NODE_IP and 127.0.0.1. Pods resolve <service>.<namespace>.svc.cluster.local and short names.
#
# WBC_K8S_CACHE       the build cache shared with scripts/k8s-apiserver.sh (default ~/.cache/wbc-k8s)
# WBC_NODE_DIR        the node's state and logs (default ${TMPDIR:-/tmp}/wbc-node), removed by `down`
# WBC_NODE_API_PORT   kube-apiserver's port on $NODE_IP (default: a free one)
# WBC_NODE_ETCD_PORT  etcd's client port on 127.0.0.1, the next one is its peer port (default: free ones)
# WBC_NODE_OWNER_PID  `up` starts a watchdog that runs `down` once that process has exited
# WBC_NODE_KEEP_LOGS  `down` keeps $WBC_NODE_DIR/logs (a failed `up` always keeps them)
# Exit status 3 from `build` or `up` means that this machine cannot run the node.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SELF=$ROOT/scripts/k8s/node.sh
CACHE=${WBC_K8S_CACHE:-$HOME/.cache/wbc-k8s}
BIN=$CACHE/bin
IMAGES=$CACHE/images
DIR=${WBC_NODE_DIR:-${TMPDIR:-/tmp}/wbc-node}
NODE=wbc-node
NODE_IP=10.99.0.1
POD_CIDR=10.88.0.0/16
POD_GATEWAY=10.88.0.1
SERVICE_CIDR=10.0.0.0/24
BRIDGE=wbc0
CLUSTER_DOMAIN=cluster.local
COMPONENTS="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy"
PACKAGES="containerd runc containernetworking-plugins iptables conntrack nftables busybox-static umoci skopeo
  dnsmasq-base gcc libc6-dev"
HOST_PATHS="/var/log/pods /var/log/containers /var/lib/kubelet /var/lib/cni /run/containerd /tmp/hostpath_pv"
# kernel settings that `up`, the kubelet or kube-proxy change; `down` puts back what was there
SYSCTLS="net.ipv4.ip_forward net.ipv4.conf.all.route_localnet net.bridge.bridge-nf-call-iptables
  net.bridge.bridge-nf-call-ip6tables vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes"
DAEMONS="watchdog kubelet kube-proxy dns-sync dnsmasq kube-scheduler kube-controller-manager containerd
  kube-apiserver etcd"
SOCK=$DIR/containerd/containerd.sock
export KUBECONFIG=$DIR/kubeconfig

log() { echo "node: $*" >&2; }
die() { log "$*"; exit 1; }
cannot() { log "cannot run a node here: $*"; exit 3; }
ctr_() { ctr --address "$SOCK" -n k8s.io "$@"; }
kubectl_() { kubectl --cache-dir="$DIR/kubectl-cache" --request-timeout=5s "$@"; }
wait_until() { # seconds command...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $deadline ] || return 1; sleep 0.5; done
}

# ---- build -------------------------------------------------------------------------------------------

install_packages() {
  local missing="" p
  for p in $PACKAGES; do dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=" $p"; done
  command -v kubectl >/dev/null || missing+=" kubernetes-client"
  [ -n "$missing" ] || return 0
  command -v apt-get >/dev/null || cannot "no apt-get to install$missing"
  log "installing$missing"
  local install="apt-get install -y -qq --no-install-recommends $missing"
  $install >/dev/null || { apt-get update -qq && $install >/dev/null; } || cannot "apt-get cannot install$missing"
}

pack_image() { # rootfs name:tag out.tar umoci-config-args...
  local rootfs=$1 ref=$2 out=$3; shift 3
  umoci init --layout "$rootfs.oci" && umoci new --image "$rootfs.oci:latest"
  umoci insert --image "$rootfs.oci:latest" "$rootfs" / && umoci config --image "$rootfs.oci:latest" "$@"
  rm -f "$out.tmp" && skopeo --insecure-policy copy -q "oci:$rootfs.oci:latest" "docker-archive:$out.tmp:$ref"
  mv "$out.tmp" "$out"
}

build_images() {
  [ -f "$IMAGES/pause.tar" ] && [ -f "$IMAGES/busybox.tar" ] && return
  local work bb; work=$(mktemp -d) bb=$work/busybox
  mkdir -p "$IMAGES" "$work/pause" "$bb"/{bin,etc,root,proc,sys,dev} && install -d -m 1777 "$bb/tmp"
  gcc -Os -static -DVERSION=v3.4.1-wbc -o "$work/pause/pause" "$CACHE/src/build/pause/linux/pause.c"
  strip "$work/pause/pause"
  pack_image "$work/pause" k8s.local/pause:3.4.1 "$IMAGES/pause.tar" --config.entrypoint /pause
  cp /bin/busybox "$bb/bin/" # static, from busybox-static
  for applet in $("$bb/bin/busybox" --list); do [ "$applet" = busybox ] || ln -s busybox "$bb/bin/$applet"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$bb/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' > "$bb/etc/group"
  pack_image "$bb" k8s.local/busybox:1.35 "$IMAGES/busybox.tar" \
    --config.env PATH=/bin --config.cmd /bin/sh --config.workingdir /
  rm -rf "$work"
}

build() {
  [ "$(id -u)" = 0 ] || cannot "the node needs root (network namespaces, mounts, iptables)"
  install_packages
  "$ROOT/scripts/k8s-apiserver.sh" build $COMPONENTS
  (flock 8 && build_images) 8> "$CACHE/images.lock"
}

# ---- the host ----------------------------------------------------------------------------------------

# Records what `down` puts back, before anything changes.
record_host() {
  local k p
  for k in $SYSCTLS; do echo "$k=$(sysctl -n "$k" 2>/dev/null)"; done | grep -v '=$' > "$DIR/host/sysctl" || true
  for p in $HOST_PATHS; do [ ! -e "$p" ] || echo "$p"; done > "$DIR/host/paths"
  nft list tables > "$DIR/host/nft-tables" 2>/dev/null || true
}

prepare_host() {
  ip addr add "$NODE_IP/32" dev lo # the kubelet refuses loopback node IPs
  [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ] || modprobe br_netfilter
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  # pod traffic never leaves the machine
  iptables -I FORWARD -s "$POD_CIDR" ! -o "$BRIDGE" -m comment --comment wbc-node -j DROP
}

restore_host() {
  local p net
  [ ! -f "$DIR/host/sysctl" ] || xargs -r sysctl -qw < "$DIR/host/sysctl" || true
  if [ -f "$DIR/host/paths" ]; then
    for p in $HOST_PATHS; do grep -qxF "$p" "$DIR/host/paths" || rm -rf "$p"; done
  fi
  ip link del "$BRIDGE" 2>/dev/null || true
  ip addr del "$NODE_IP/32" dev lo 2>/dev/null || true
  for net in $POD_CIDR $SERVICE_CIDR $NODE_IP; do conntrack -D -s "$net" || true; conntrack -D -d "$net" || true; done &>/dev/null
}

# Removes the rules and chains of the kubelet, kube-proxy, the CNI plugins and prepare_host, then the
# nf_tables tables that iptables-nft created for them, once empty.
clean_iptables() {
  local cmd t family name
  for cmd in iptables ip6tables; do
    for t in $("$cmd-save" 2>/dev/null | awk '/^\*/ { t = substr($0, 2) } /KUBE-|CNI-|wbc-node/ { print t }' | sort -u); do
      "$cmd-save" -t "$t" | grep -vE 'KUBE-|CNI-|wbc-node' | "$cmd-restore" -T "$t"
    done
  done
  [ -f "$DIR/host/nft-tables" ] || return 0
  nft list tables | while read -r _ family name; do
    grep -qxF "table $family $name" "$DIR/host/nft-tables" && continue
    nft list table "$family" "$name" | grep -qvE '^\s*(table|chain|type|policy|\}|$)' || nft delete table "$family" "$name"
  done
}

remove_cgroups() {
  local h c
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    for c in kubepods k8s.io; do
      [ ! -d "$h$c" ] || find "$h$c" -depth -type d -exec rmdir {} + 2>/dev/null || log "cgroup $h$c is still in use"
    done
  done
}

unmount_all() {
  local target
  for _ in 1 2 3; do # the kubelet's root is a shared mount: propagated copies come back once
    for target in $(findmnt -rn -o TARGET | grep "^$DIR/" | sort -r); do
      umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || true
    done
  done
}

# ---- configuration -----------------------------------------------------------------------------------

write_configs() {
  cat > "$DIR/cni/10-wbc.conflist" <<EOF
{ "cniVersion": "0.4.0", "name": "wbc", "plugins": [
  { "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": { "type": "host-local", "dataDir": "$DIR/cni/ipam", "ranges": [[{ "subnet": "$POD_CIDR" }]],
              "routes": [{ "dst": "$SERVICE_CIDR" }] } },
  { "type": "portmap", "capabilities": { "portMappings": true } } ] }
EOF
  cat > "$DIR/containerd/config.toml" <<EOF
version = 2
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "k8s.local/pause:3.4.1"
  netns_mounts_under_state_dir = true
  # Without CAP_SYS_RESOURCE, runc cannot lower oom_score_adj and every sandbox fails with
  # "can't get final child's PID from pipe: EOF": clamp it to containerd's own score instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$DIR/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    options = { Root = "$DIR/containerd/runc" }
EOF
  echo 'options ndots:5' > "$DIR/resolv.conf" # no search domains of the host in pods
  cat > "$DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failSwapOn: false
address: $NODE_IP
healthzBindAddress: $NODE_IP
readOnlyPort: 0
authentication: { anonymous: { enabled: true }, webhook: { enabled: false } }
authorization: { mode: AlwaysAllow }
resolvConf: $DIR/resolv.conf
clusterDomain: $CLUSTER_DOMAIN
clusterDNS: ["$POD_GATEWAY"]
serializeImagePulls: false
# imported images cannot be pulled again: never collect them
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: { memory.available: "100Mi", nodefs.available: "2%", imagefs.available: "2%" }
EOF
  cat > "$DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: { kubeconfig: $DIR/kube-proxy.kubeconfig }
hostnameOverride: $NODE
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
nodePortAddresses: ["$NODE_IP/32", "127.0.0.1/32"]
healthzBindAddress: $NODE_IP:10256
metricsBindAddress: $NODE_IP:10249
conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s } # the host's
EOF
}

# Token users: the admin, each control-plane component and the node, with a kubeconfig each.
write_credentials() { # api-port
  local user token
  openssl genrsa -out "$DIR/sa.key" 2048 2>/dev/null && openssl rsa -in "$DIR/sa.key" -pubout -out "$DIR/sa.pub" 2>/dev/null
  for user in admin kube-controller-manager kube-scheduler kube-proxy kubelet; do
    token=$(openssl rand -hex 16)
    case $user in
      admin) echo "$token,admin,admin,system:masters" ;;
      kubelet) echo "$token,system:node:$NODE,kubelet,system:nodes" ;;
      *) echo "$token,system:$user,$user" ;;
    esac >> "$DIR/tokens.csv"
    cat > "$DIR/$user.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: wbc-node, cluster: {server: "https://$NODE_IP:$1", certificate-authority: "$DIR/certs/apiserver.crt"}}]
users: [{name: $user, user: {token: "$token"}}]
contexts: [{name: wbc-node, context: {cluster: wbc-node, user: $user, namespace: default}}]
current-context: wbc-node
EOF
  done
  mv "$DIR/admin.kubeconfig" "$KUBECONFIG"
}

# ---- daemons -----------------------------------------------------------------------------------------

# Each daemon leads its own session, so that signals to the caller's process group miss it and `down`
# stops it with its children; `down` signals only a pid whose command line names $DIR.
daemon() { # name command...
  local name=$1; shift
  (cd "$DIR" && exec setsid "$@" < /dev/null > "$DIR/logs/$name.log" 2>&1 7<&-) &
  echo $! > "$DIR/pids/$name"
}

ours() { [ -n "$1" ] && tr '\0' ' ' 2>/dev/null < "/proc/$1/cmdline" | grep -qF "$DIR"; }
pid_of() { local pid; pid=$(cat "$DIR/pids/$1" 2>/dev/null) && ours "$pid" && echo "$pid"; }
alive() { awk '/^State:/ { exit $2 == "Z" }' "/proc/$1/status" 2>/dev/null; } # zombies wait for a slow init
running() { local name; for name in $DAEMONS; do pid_of "$name" >/dev/null && return 0; done; return 1; }

stop_daemons() {
  local name pid pids=""
  for name in $DAEMONS; do
    pid=$(pid_of "$name") && [ "$pid" != $$ ] && [ "$pid" != "$PPID" ] && kill -- "-$pid" && pids+=" $pid"
    rm -f "$DIR/pids/$name"
  done
  for pid in $pids; do wait_until 10 eval "! alive $pid" || kill -9 -- "-$pid" 2>/dev/null || true; done
}

# The runc shims (each the parent of a container's init, and gone with containerd's socket) and every
# process in the kubelet's cgroups.
kill_containers() {
  local f pid shim victims=""
  for f in "$DIR"/containerd/state/io.containerd.runtime.v2.task/*/*/init.pid; do
    pid=$(cat "$f" 2>/dev/null) && shim=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || continue
    ! ours "$shim" || victims+=" $shim"
  done
  victims+=" $(find /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods -name cgroup.procs -exec cat {} + 2>/dev/null || true)"
  kill -9 $victims 2>/dev/null || true
}

port_free() { ! (exec 3<> "/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() { # [port]: that port, or a free one whose successor is free too
  if [ -n "$1" ]; then port_free "$1" && echo "$1" && return; die "port $1 is taken"; fi
  local p
  for _ in $(seq 1 100); do
    p=$((20000 + RANDOM % 40000))
    port_free "$p" && port_free "$((p + 1))" && echo "$p" && return
  done
  die "no free port found"
}

start_containerd() {
  daemon containerd containerd --config "$DIR/containerd/config.toml"
  wait_until 30 ctr_ version || die "containerd did not start"
  ctr_ images import "$IMAGES/pause.tar" >/dev/null && ctr_ images import "$IMAGES/busybox.tar" >/dev/null
}

start_control_plane() {
  local etcd_port api_port kcm=$DIR/kube-controller-manager.kubeconfig sched=$DIR/kube-scheduler.kubeconfig
  etcd_port=$(free_port "${WBC_NODE_ETCD_PORT:-}")
  api_port=$(free_port "${WBC_NODE_API_PORT:-}")
  write_credentials "$api_port"
  daemon etcd "$BIN/etcd" --data-dir "$DIR/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-cluster "default=http://127.0.0.1:$((etcd_port + 1))" --unsafe-no-fsync
  # on the node IP, so that pods reach it through the kubernetes Service
  daemon kube-apiserver "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$api_port" --insecure-port=0 \
    --cert-dir="$DIR/certs" --service-cluster-ip-range="$SERVICE_CIDR" --allow-privileged=true \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --token-auth-file="$DIR/tokens.csv" \
    --kubelet-preferred-address-types=InternalIP --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$DIR/sa.pub" --service-account-signing-key-file="$DIR/sa.key"
  wait_until 60 eval '[ "$(kubectl_ get --raw /readyz)" = ok ]' || die "kube-apiserver is not ready"
  daemon kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$kcm" \
    --authentication-kubeconfig="$kcm" --authorization-kubeconfig="$kcm" --bind-address="$NODE_IP" --port=0 \
    --leader-elect=false --use-service-account-credentials=true --service-account-private-key-file="$DIR/sa.key" \
    --root-ca-file="$DIR/certs/apiserver.crt" --cluster-cidr="$POD_CIDR" --allocate-node-cidrs=true \
    --service-cluster-ip-range="$SERVICE_CIDR" --controllers='*,-cloud-node-lifecycle' \
    --enable-hostpath-provisioner=true --flex-volume-plugin-dir="$DIR/volume-plugins"
  daemon kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$sched" --authentication-kubeconfig="$sched" \
    --authorization-kubeconfig="$sched" --bind-address="$NODE_IP" --port=0 --leader-elect=false
}

start_node() {
  # CoreDNS is in no reachable registry: dnsmasq on the bridge's address answers from dns-sync's file
  daemon dns-sync "$SELF" dns-sync "$DIR"
  daemon dnsmasq dnsmasq --keep-in-foreground --conf-file=/dev/null --pid-file= --user=root --no-resolv --no-hosts \
    --bind-dynamic --listen-address="$POD_GATEWAY" --except-interface=lo --hostsdir="$DIR/dns" \
    --local="/$CLUSTER_DOMAIN/" --log-facility=-
  daemon kubelet "$BIN/kubelet" --config="$DIR/kubelet.yaml" --kubeconfig="$DIR/kubelet.kubeconfig" \
    --root-dir="$DIR/kubelet" --cert-dir="$DIR/kubelet/pki" --hostname-override="$NODE" --node-ip="$NODE_IP" \
    --container-runtime=remote --container-runtime-endpoint="unix://$SOCK" --image-service-endpoint="unix://$SOCK" \
    --pod-infra-container-image=k8s.local/pause:3.4.1 --volume-plugin-dir="$DIR/volume-plugins"
  daemon kube-proxy "$BIN/kube-proxy" --config="$DIR/kube-proxy.yaml"
}

# The DNS records of the Services (headless ones: of their endpoints), rewritten whenever an Endpoints
# object changes and every 30 s.
dns_sync() {
  while :; do
    kubectl_ get endpoints -A --watch -o name --request-timeout=0 2>/dev/null | while :; do
      local got=0; read -r -t 30 _ || got=$?
      [ "$got" != 1 ] || break # end of the watch
      while read -r -t 0.2 _; do :; done
      dns_records > "$DIR/dns.tmp" && { cmp -s "$DIR/dns.tmp" "$DIR/dns/services" || mv "$DIR/dns.tmp" "$DIR/dns/services"; }
    done
    sleep 1
  done
}

dns_records() {
  kubectl_ get services,endpoints -A -o jsonpath='{range .items[*]}{.kind} {.metadata.namespace} {.metadata.name} {.spec.clusterIP} {range .subsets[*].addresses[*]}{.ip}/{.hostname} {end}{"\n"}{end}' |
    awk -v d="svc.$CLUSTER_DOMAIN" '
      $1 == "Service" && $4 == "None" { headless[$2 "/" $3] = 1 }
      $1 == "Service" && $4 ~ /^[0-9]/ { print $4, $3 "." $2 "." d }
      $1 == "Endpoints" && headless[$2 "/" $3] { for (i = 4; i <= NF; i++) {
        split($i, a, "/"); print a[1], $3 "." $2 "." d; if (a[2] != "") print a[1], a[2] "." $3 "." $2 "." d } }'
}

node_ready() { kubectl_ get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True; }

default_storage_class() {
  kubectl_ apply --validate=false -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: { name: standard, annotations: { storageclass.kubernetes.io/is-default-class: "true" } }
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
}

# ---- commands ----------------------------------------------------------------------------------------

# `up` and `down` empty $DIR: only a new, empty or node's directory
check_dir() {
  [ ! -e "$DIR" ] || [ -f "$DIR/.wbc-node" ] || [ -z "$(ls -A "$DIR")" ] ||
    die "WBC_NODE_DIR=$DIR exists and is not a node's directory"
}

refuse_if_up() {
  ! running || die "a node is already up in $DIR: run '$0 down' first"
  ! ip -o addr show dev lo | grep -qF " $NODE_IP/" ||
    die "$NODE_IP is already on lo: another node is up (or was not taken down): run '$0 down' first"
  ! findmnt -rn -o TARGET | grep -q "^$DIR/" || die "$DIR has mounts left: run '$0 down' first"
}

up() {
  local started=$SECONDS
  build
  exec 7< "$CACHE" && flock -n 7 || die "another up or down is running"
  check_dir && refuse_if_up
  rm -rf "$DIR" && mkdir -p "$DIR"/{host,logs,pids,cni,dns,containerd} && touch "$DIR/.wbc-node"
  record_host
  trap up_failed EXIT
  prepare_host
  write_configs
  start_containerd
  start_control_plane
  log "kube-apiserver ready after $((SECONDS - started)) s"
  start_node
  wait_until 90 node_ready || die "node $NODE is not Ready"
  default_storage_class
  wait_until 30 kubectl_ get serviceaccount default || die "no default ServiceAccount"
  if [ -n "${WBC_NODE_OWNER_PID:-}" ]; then daemon watchdog "$SELF" watch "$WBC_NODE_OWNER_PID" "$DIR"; fi
  trap - EXIT
  log "node $NODE Ready after $((SECONDS - started)) s"
  echo "KUBECONFIG=$KUBECONFIG"
}

up_failed() {
  log "up failed; the logs stay in $DIR/logs"
  tail -n 5 "$DIR"/logs/*.log >&2 || true
  WBC_NODE_KEEP_LOGS=1 down_
}

down_() {
  stop_daemons
  kill_containers
  unmount_all
  clean_iptables
  restore_host
  remove_cgroups
  if [ -z "${WBC_NODE_KEEP_LOGS:-}" ]; then rm -rf "$DIR"
  elif [ -d "$DIR" ]; then find "$DIR" -mindepth 1 -maxdepth 1 ! -name logs ! -name .wbc-node -exec rm -rf {} +; fi
}

down() {
  local started=$SECONDS
  check_dir
  mkdir -p "$CACHE" && exec 7< "$CACHE" && flock 7
  down_
  log "down in $((SECONDS - started)) s"
}

watch() { # owner-pid dir
  while alive "$1"; do sleep 1; done
  WBC_NODE_DIR=$2 "$SELF" down
}

case "${1:-}" in
  build) build ;;
  up) up ;;
  down) down ;;
  load) shift; [ $# -gt 0 ] && running || die "usage: $0 load FILE.tar... (with a node up in $DIR)"
    for f in "$@"; do ctr_ images import "$f"; done ;;
  env) [ -f "$KUBECONFIG" ] || die "no node is up in $DIR"; echo "export KUBECONFIG=$KUBECONFIG" ;;
  status) for name in $DAEMONS; do echo "$name: $(pid_of "$name" || echo stopped)"; done
    running && kubectl_ get nodes,pods -A -o wide ;;
  dns-sync) dns_sync ;;
  watch) watch "$2" "$3" ;;
  *) echo "usage: $0 build|up|load FILE.tar...|env|status|down" >&2; exit 2 ;;
esac
