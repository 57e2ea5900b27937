#!/usr/bin/env bash
# Runs the images of dependency-images.sh (k8s.local/redis:7.0, k8s.local/postgres:15) the way the chart
# runs them, without Kubernetes, and checks what the chart relies on. Command, args, environment (the
# Secrets' passwords included), volumes and user come from the chart rendered with
# ci/local-node-values.yaml (plus a Redis password and a postgres extraArg), combined with the image's
# entrypoint and cmd as the kubelet combines them; the passwords come from Secrets mounted as files. Each container is the docker-archive unpacked with
# umoci, chrooted as the chart's uid/gid (10001) on a read-only bind of its root file system, with the chart's volumes
# bind-mounted (emptyDirs as fresh directories, the ConfigMap's files read-only), in new mount, PID and
# network namespaces: the server is PID 1 as in a pod, listens on the chart's port (6379, 5432) on the
# namespace's own loopback, so no port of the host is taken or exposed. Clients run inside the
# container, like `kubectl exec`.
#   scripts/k8s/check-images.sh [IMAGE_DIR]   IMAGE_DIR holds redis.tar and postgres.tar; without it,
#                                             dependency-images.sh builds them into a temporary directory
# Needs root (namespaces, chroot), util-linux, iproute2, umoci, skopeo and the chart's venv
# (scripts/chart/venv.sh). Stops every process it started and removes its files, also on failure.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "check-images.sh: run as root (namespaces, chroot)" >&2; exit 1; }
work=$(mktemp -d /tmp/wbc-check-images.XXXXXX)
cleanup() {
  local job child
  # every container and client is a background job; a container's PID 1 is its unshare's child, and
  # killing a PID 1 ends every process of its namespace
  for job in $(jobs -p); do
    for child in $(ps -o pid= --ppid "$job"); do kill -KILL "$child" 2>/dev/null || true; done
    kill -KILL "$job" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

images=${1:-}
if [ -z "$images" ]; then
  images=$work/images
  "$root/scripts/k8s/dependency-images.sh" "$images"
fi
for image in redis postgres; do
  [ -f "$images/$image.tar" ] || { echo "check-images.sh: no $images/$image.tar (scripts/k8s/dependency-images.sh builds it)" >&2; exit 1; }
done
redis_password=check-$RANDOM$RANDOM
postgres_password="check-'\"pw-$RANDOM" # quotes: the entrypoint must pass any password through

failures=0
check() { # description command...
  local what=$1; shift
  if "$@" >"$work/check.out" 2>&1; then
    echo "ok   $what"
  else
    echo "FAIL $what"
    tail -n 20 "$work/check.out" | sed 's/^/       /'
    failures=$((failures + 1))
  fi
}

# a check the next ones depend on: when it fails, the container's log ends the checks of its image
require() { # log description command...
  local log=$1 before=$failures; shift
  check "$@"
  [ "$failures" -eq "$before" ] && return 0
  echo "       the container's log, and the checks of this image skipped:"
  tail -n 20 "$log" | sed 's/^/       | /'
  return 1
}

output_is() { # expected command...
  local want=$1 got; shift
  got=$("$@" 2>&1) || { echo "$got"; return 1; }
  [ "$got" = "$want" ] || { printf 'expected: %s\n     got: %s\n' "$want" "$got"; return 1; }
}

# --- images and the chart's pods ------------------------------------------------------------------------

unpack() { # image
  mkdir -p "$work/$1"
  skopeo copy --quiet "docker-archive:$images/$1.tar" "oci:$work/$1/oci:check"
  umoci unpack --image "$work/$1/oci:check" "$work/$1/bundle" >/dev/null
  skopeo inspect --config "docker-archive:$images/$1.tar" >"$work/$1/image-config.json"
}

# Writes, for each image, what the kubelet would run: argv and env (NUL-separated), mounts
# ("host-dir path ro|rw"), user ("uid gid"), workdir, port (the probes' containerPort), stopsignal.
render_pods() {
  "$(cd "$root" && scripts/chart/venv.sh)/bin/python" - "$root" "$work" "$redis_password" "$postgres_password" <<'PY'
import base64, json, os, re, sys
from pathlib import Path

root, work = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(root / "scripts" / "chart"))
import chartgen  # noqa: E402
import yaml  # noqa: E402

values = yaml.safe_load((chartgen.CHART / "ci" / "local-node-values.yaml").read_text())
values["redis"]["auth"] = {"enabled": True, "password": sys.argv[3]}
values["postgresql"]["auth"] = {"password": sys.argv[4]}
values["postgresql"]["extraArgs"] = ["-c", "max_connections=42"]
objs = chartgen.render(values, name="wbc", namespace="wbc-check")
by_kind = lambda kind: {o.name: o.obj for o in objs if o.kind == kind}
secrets, configmaps, statefulsets = by_kind("Secret"), by_kind("ConfigMap"), by_kind("StatefulSet")


def expand(text, env):  # the kubelet's $(VAR) references; $$ escapes
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


for statefulset, image in (("wbc-redis", "redis"), ("wbc-postgresql", "postgres")):
    pod = statefulsets[statefulset]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    config = json.loads((work / image / "image-config.json").read_text())["config"]
    out = work / image
    env = dict(e.split("=", 1) for e in config.get("Env", []))
    for e in c.get("env", []):
        assert "value" in e, f"{e['name']} is not a plain value: the chart passes no credential through the environment"
        env[e["name"]] = expand(e["value"], env)
    if "command" in c:
        argv = c["command"] + c.get("args", [])
    else:
        argv = config.get("Entrypoint", []) + (c["args"] if "args" in c else config.get("Cmd", []))
    security = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
    assert security["readOnlyRootFilesystem"] is True and security["runAsNonRoot"] is True
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = []
    for m in c["volumeMounts"]:
        host = out / "volumes" / m["name"]
        host.mkdir(parents=True)
        volume = volumes.get(m["name"], {})  # not there: a claim of the volumeClaimTemplates
        if "configMap" in volume:
            for key, text in configmaps[volume["configMap"]["name"]]["data"].items():
                (host / key).write_text(text)
        elif "secret" in volume:  # the kubelet's files: root-owned, 0644 (defaultMode)
            data = secrets[volume["secret"]["secretName"]]["data"]
            for item in volume["secret"]["items"]:
                (host / item["path"]).write_bytes(base64.b64decode(data[item["key"]]))
                (host / item["path"]).chmod(0o644)
        else:  # an emptyDir or a claim, group-owned by fsGroup as the kubelet leaves them (not hostPath PVs)
            os.chown(host, 0, security.get("fsGroup", 0))
            host.chmod(0o2777)
        mounts.append(f"{host} {m['mountPath']} {'ro' if m.get('readOnly') else 'rw'}\n")
    (out / "argv").write_text("".join(expand(a, env) + "\0" for a in argv))
    (out / "env").write_text("".join(f"{k}={v}\0" for k, v in env.items()))
    (out / "mounts").write_text("".join(mounts))
    (out / "user").write_text(f"{security['runAsUser']} {security['runAsGroup']}\n")
    (out / "workdir").write_text(config.get("WorkingDir") or "/")
    (out / "port").write_text(str(c["ports"][0]["containerPort"]))
    (out / "stopsignal").write_text(config.get("StopSignal") or "SIGTERM")
PY
}

# --- containers -----------------------------------------------------------------------------------------

# PID 1 of a new container: mounts as runc would (read-only root, /proc, a small /dev, the volumes), then
# execs the image's process as its user. Runs as root in the new namespaces; $1 is the image's directory.
# shellcheck disable=SC2016
CONTAINER_INIT='
set -euo pipefail
d=$1 r=$1/bundle/rootfs
read -r host_pid _ </proc/self/stat # still the host /proc: the PID as the host sees it
echo "$host_pid" >"$d/pid.tmp" && mv "$d/pid.tmp" "$d/pid"
ip link set lo up
# as runc, which makes the mount points that a read-only image lacks (the mounted Secrets at /etc/*-auth)
while read -r _ dst _; do mkdir -p "$r$dst"; done <"$d/mounts"
mount --bind "$r" "$r"
mount -o remount,bind,ro "$r"
mount -t proc proc "$r/proc"
mount -t sysfs -o ro sysfs "$r/sys"
mount -t tmpfs -o nosuid,mode=0755 dev "$r/dev"
for n in null zero full random urandom; do touch "$r/dev/$n"; mount --bind "/dev/$n" "$r/dev/$n"; done
mkdir "$r/dev/shm" && mount -t tmpfs -o nosuid,nodev,mode=1777,size=64m shm "$r/dev/shm"
ln -s /proc/self/fd "$r/dev/fd"
for n in 0:stdin 1:stdout 2:stderr; do ln -s "/proc/self/fd/${n%%:*}" "$r/dev/${n#*:}"; done
while read -r src dst mode; do
  mount --bind "$src" "$r$dst"
  [ "$mode" = rw ] || mount -o remount,bind,ro "$r$dst"
done <"$d/mounts"
mapfile -d "" -t env <"$d/env"
mapfile -d "" -t argv <"$d/argv"
read -r uid gid <"$d/user"
exec env -i "${env[@]}" /usr/bin/unshare --root="$r" --wd="$(cat "$d/workdir")" --setgid="$gid" --setuid="$uid" -- "${argv[@]}"
'

# Starts the container of IMAGE; sets pid (its PID 1, seen from the host) and run (its unshare).
start() { # image log
  rm -f "$work/$1/pid"
  unshare --mount --pid --net --fork --propagation private /bin/bash -c "$CONTAINER_INIT" init "$work/$1" >>"$2" 2>&1 &
  run=$!
  for _ in $(seq 100); do
    [ -s "$work/$1/pid" ] && break
    sleep 0.05
  done
  [ -s "$work/$1/pid" ] || { echo "the container of $1 did not start" >&2; exit 1; }
  pid=$(cat "$work/$1/pid")
}

exited() { # seconds: waits up to SECONDS for the container's PID 1 to end
  local deadline=$((SECONDS + $1))
  while kill -0 "$pid" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

# Sends SIGNAL to PID 1 and waits up to SECONDS for the container to end; fails unless it exits 0.
stop() { # signal seconds
  local status=0
  kill -s "$1" "$pid"
  exited "$2" || { echo "still running $2 s after SIG$1"; return 1; }
  wait "$run" || status=$?
  [ "$status" -eq 0 ] || { echo "exit status $status"; return 1; }
}

crash() {
  kill -KILL "$pid" 2>/dev/null || true
  exited 10 || { echo "the container of PID $pid outlived SIGKILL" >&2; exit 1; }
  wait "$run" || true
}

# `kubectl exec`: a command inside the running container, as its user, with its environment.
exec_in() { # image command...
  local env_vars uid gid
  mapfile -d '' -t env_vars <"$work/$1/env"
  read -r uid gid <"$work/$1/user"
  shift
  env -i "${env_vars[@]}" /usr/bin/nsenter --target "$pid" --mount --net --pid --root --wd \
    --setgid "$gid" --setuid "$uid" -- "$@"
}

# the probes: a TCP connection to the container's port
tcp_open() { nsenter --target "$pid" --net bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }
ready() { # image seconds
  local deadline=$((SECONDS + $2))
  until tcp_open "$(cat "$work/$1/port")"; do
    kill -0 "$pid" 2>/dev/null || { echo "the container exited"; return 1; }
    [ $SECONDS -lt $deadline ] || { echo "port closed after $2 s"; return 1; }
    sleep 0.2
  done
}

listens_everywhere() { # port
  local sockets
  sockets=$(nsenter --target "$pid" --net ss -ltnH)
  if ! grep -q " 0\.0\.0\.0:$1 " <<<"$sockets" || ! grep -q " \[::\]:$1 " <<<"$sockets"; then
    echo "$sockets"
    return 1
  fi
}

# the chart's uid and gid (real, effective, saved, file system), no capabilities, and COMMAND is PID 1 itself
runs_unprivileged_as_pid_1() { # image command
  local status uid gid
  status=$(cat "/proc/$pid/status")
  read -r uid gid <"$work/$1/user"
  if ! grep -q "^Name:	$2\$" <<<"$status" ||
    [ "$(grep -E '^(Uid|Gid):' <<<"$status" | cut -f2- | tr '\t\n' '  ')" != "$uid $uid $uid $uid $gid $gid $gid $gid " ] ||
    ! grep -q '^CapEff:	0000000000000000$' <<<"$status"; then
    grep -E '^(Name|Uid|Gid|CapEff):' <<<"$status"
    return 1
  fi
}

password_not_in_cmdline() { # password
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
  if grep -qF -- "$1" <<<"$cmdline"; then echo "$cmdline"; return 1; fi
}

root_is_read_only() { # image
  local out
  if out=$(exec_in "$1" touch /probe 2>&1); then echo "wrote /probe"; return 1; fi
  grep -q 'Read-only file system' <<<"$out" || { echo "$out"; return 1; }
}

# the image's own user (its config's User) is the one the chart runs it as: the image's directories belong to it
image_user_is_the_chart_s() { # image
  local image_user chart_user
  image_user=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["config"].get("User", ""))' "$work/$1/image-config.json")
  chart_user=$(tr ' ' : <"$work/$1/user" | tr -d '\n')
  [ "$image_user" = "$chart_user" ] || { echo "image user $image_user, chart's runAsUser:runAsGroup $chart_user"; return 1; }
}

log_is_clean() { # log...
  ! grep -E 'Read-only file system|Permission denied|could not (open|create|write)|PANIC' "$@"
}

# --- Redis ----------------------------------------------------------------------------------------------

redis_cli() { exec_in redis redis-cli --no-auth-warning "$@"; }
redis_config() { redis_cli -a "$redis_password" CONFIG GET appendonly && redis_cli -a "$redis_password" CONFIG GET appendfsync; }

wrong_redis_password_refused() {
  local out
  out=$(redis_cli -a wrong PING 2>&1) || true
  if ! grep -q WRONGPASS <<<"$out" || grep -qx PONG <<<"$out"; then echo "$out"; return 1; fi
}

check_redis() {
  local log=$work/redis.log value=persisted-$RANDOM
  start redis "$log"
  require "$log" "redis: the probes' port 6379 opens (chart's command, args and redis.conf, read-only root)" \
    ready redis 20 || return 0
  check "redis: PID 1 is redis-server (the chart's shell exec'd it with the mounted password), as the chart's uid/gid, without capabilities" \
    runs_unprivileged_as_pid_1 redis redis-server
  check "redis: the password is not on PID 1's command line (redis-server's process title replaced it)" \
    password_not_in_cmdline "$redis_password"
  check "redis: PING with the Secret's password answers PONG (redis-cli in the image)" output_is PONG redis_cli -a "$redis_password" PING
  check "redis: PING without the password is refused" output_is "NOAUTH Authentication required." redis_cli PING
  check "redis: a wrong password is refused" wrong_redis_password_refused
  check "redis: listens on every address (0.0.0.0:6379, [::]:6379)" listens_everywhere 6379
  check "redis: the chart's AOF settings are in force (appendonly yes, appendfsync always)" \
    output_is "$(printf 'appendonly\nyes\nappendfsync\nalways')" redis_config
  check "redis: a SET is acknowledged" output_is OK redis_cli -a "$redis_password" SET wbc:check "$value"
  check "redis: the write is in the AOF on the data volume" grep -rq "$value" "$work/redis/volumes/data/appendonlydir"
  check "redis: the root file system is read-only" root_is_read_only redis
  crash
  start redis "$log"
  require "$log" "redis: after SIGKILL, it restarts on the same volume" ready redis 20 || return 0
  check "redis: the acknowledged write survived the crash" output_is "$value" redis_cli -a "$redis_password" GET wbc:check
  check "redis: SIGTERM stops it cleanly (exit 0)" stop TERM 15
  check "redis: it said so (\"ready to exit\")" grep -q "ready to exit, bye bye" "$log"
  check "redis: the log shows no write outside the volumes, no permission error" log_is_clean "$log"
}

# --- PostgreSQL -----------------------------------------------------------------------------------------

url() { echo "postgresql://wbc:$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1")@127.0.0.1:5432/wbc"; }
psql_as() { exec_in postgres psql "$(url "$1")" -XtAc "$2"; } # password sql

wrong_password_refused() {
  local out
  if out=$(psql_as wrong 'SELECT 1' 2>&1); then echo "accepted: $out"; return 1; fi
  grep -q 'password authentication failed for user "wbc"' <<<"$out" || { echo "$out"; return 1; }
}

# tests/e2e/cluster.py's query through the pod, with the pod's own credentials
# shellcheck disable=SC2016
E2E_PSQL='PGPASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")" psql -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v ON_ERROR_STOP=1 -q -c "$0"'

check_postgres() {
  local log=$work/postgres.log log2=$work/postgres-restart.log
  # what an initialisation killed half-way leaves behind
  mkdir -p "$work/postgres/volumes/data/pgdata.init" && echo 15 >"$work/postgres/volumes/data/pgdata.init/PG_VERSION"
  chown -R "$(tr ' ' : <"$work/postgres/user" | tr -d '\n')" "$work/postgres/volumes/data/pgdata.init"
  start postgres "$log"
  require "$log" "postgres: initialises the empty PGDATA and opens the probes' port 5432" ready postgres 90 || return 0
  check "postgres: the entrypoint ran initdb on the empty PGDATA" grep -q "entrypoint: initialising /var/lib/postgresql/data/pgdata" "$log"
  check "postgres: it started over the leftover of an interrupted initialisation (pgdata.init)" \
    test ! -e "$work/postgres/volumes/data/pgdata.init" -a -s "$work/postgres/volumes/data/pgdata/PG_VERSION"
  check "postgres: PID 1 is postgres (the entrypoint exec'd it), as the chart's uid/gid, without capabilities" runs_unprivileged_as_pid_1 postgres postgres
  check "postgres: psql with the Secret's password over 127.0.0.1 reaches the chart's database as its user" \
    output_is "wbc|wbc|UTF8|C.UTF-8|t" psql_as "$postgres_password" \
    "SELECT current_user, current_database(), current_setting('server_encoding'), datcollate, rolsuper FROM pg_database, pg_roles WHERE datname = current_database() AND rolname = current_user"
  check "postgres: a wrong password is refused" wrong_password_refused
  check "postgres: the password is stored as SCRAM-SHA-256" \
    output_is t psql_as "$postgres_password" "SELECT rolpassword LIKE 'SCRAM-SHA-256\$%' FROM pg_authid WHERE rolname = 'wbc'"
  check "postgres: listens on every address (0.0.0.0:5432, [::]:5432)" listens_everywhere 5432
  check "postgres: the container's args reach postgres (extraArgs -c max_connections=42)" \
    output_is 42 psql_as "$postgres_password" "SHOW max_connections"
  check "postgres: the local socket in /var/run/postgresql trusts, as in the official image (kubectl exec psql)" \
    output_is 1 exec_in postgres psql -XtAc "SELECT 1" -U wbc wbc
  check "postgres: the e2e suite's \`kubectl exec -- sh -c 'PGPASSWORD=\$(cat \$POSTGRES_PASSWORD_FILE) psql ...'\` works" \
    output_is "wbc,wbc" exec_in postgres sh -c "$E2E_PSQL" "COPY (SELECT current_user, current_database()) TO STDOUT WITH CSV"
  check "postgres: a table and a row are written" \
    output_is "$(printf 'CREATE TABLE\nINSERT 0 1')" psql_as "$postgres_password" "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')"
  check "postgres: the root file system is read-only" root_is_read_only postgres
  check "postgres: SIGTERM with no client connected stops it cleanly (exit 0)" stop TERM 30
  check "postgres: it said so (\"database system is shut down\")" grep -q "database system is shut down" "$log"

  start postgres "$log2"
  require "$log2" "postgres: restarts on the same PGDATA" ready postgres 30 || return 0
  check "postgres: without initialising it again" bash -c "grep -q 'skipping initialisation' '$log2' && ! grep -q initdb '$log2'"
  check "postgres: after a clean shutdown (no recovery)" \
    bash -c "grep -q 'database system was shut down at' '$log2' && ! grep -q 'not properly shut down' '$log2'"
  check "postgres: the row survived the restart" output_is "still here" psql_as "$postgres_password" "SELECT v FROM kept"
  check "postgres: the image's stop signal, which containerd sends, is SIGINT (fast shutdown)" output_is SIGINT cat "$work/postgres/stopsignal"
  exec_in postgres psql "$(url "$postgres_password")" -Xc "SELECT pg_sleep(600)" >"$work/client.log" 2>&1 &
  local client=$! deadline=$((SECONDS + 10))
  until [ "$(psql_as "$postgres_password" "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)'" 2>/dev/null)" = 1 ]; do
    [ $SECONDS -lt $deadline ] || break
    sleep 0.2
  done
  check "postgres: SIGINT with a client in a query stops it within 10 s (exit 0)" stop INT 10
  wait "$client" || true
  check "postgres: the client's session was ended by the shutdown" grep -q "terminating connection due to administrator command" "$work/client.log"
  check "postgres: the logs show no write outside the volumes, no permission error" log_is_clean "$log" "$log2"
}

unpack redis
unpack postgres
render_pods
echo "images in $images:"
for image in redis postgres; do
  echo "  $image.tar $(du -h "$images/$image.tar" | cut -f1), root file system $(du -sh "$work/$image/bundle/rootfs" | cut -f1)"
done
check "redis: the image's user is the chart's runAsUser:runAsGroup" image_user_is_the_chart_s redis
check "postgres: the image's user is the chart's runAsUser:runAsGroup" image_user_is_the_chart_s postgres
check_redis
check_postgres
if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed"
  exit 1
fi
echo "all checks passed"
