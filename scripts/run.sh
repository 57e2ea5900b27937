#!/usr/bin/env bash
# `make run`: a real Redis and PostgreSQL on loopback, migrations, the seed products, the API
# and one worker, in the foreground. Ctrl-C stops everything.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
REDIS_PORT=${REDIS_PORT:-6379}
PG_PORT=${PG_PORT:-5432}
API_PORT=${API_PORT:-8000}
WORKER_PORT=${WORKER_PORT:-8001}
PROM_PORT=${PROM_PORT:-9090}
# Redis AOF fsync policy: always (no acknowledged write lost on a Redis crash), everysec (up to ~1 s), no.
REDIS_APPENDFSYNC=${REDIS_APPENDFSYNC:-always}
DATA_DIR=${WBC_DATA_DIR:-$root/.data}
PROFILE=${PROFILE:-release}
target=${CARGO_TARGET_DIR:-$root/target}

for var in REDIS_PORT PG_PORT API_PORT WORKER_PORT PROM_PORT; do
  val=${!var}
  if ! [[ $val =~ ^[0-9]+$ ]] || [ "$val" -lt 1 ] || [ "$val" -gt 65535 ]; then
    echo "$var: '$val' is not a port number (1-65535)" >&2; exit 2
  fi
done
case $REDIS_APPENDFSYNC in always|everysec|no) ;; *)
  echo "REDIS_APPENDFSYNC: '$REDIS_APPENDFSYNC' must be always, everysec or no" >&2; exit 2;;
esac

"$root/scripts/ensure-deps.sh"
bindir=$(pg_config --bindir 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

echo "Building wbc-api and wbc-worker ($PROFILE) ..."
(cd "$root" && cargo build --profile "$PROFILE" -p wbc-api -p wbc-worker --quiet)
bin=$target/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")

pids=()
as_pg=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "Stopping ..."
  # API and worker first (they drain), then the stores.
  for pid in "${pids[@]:2}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]:2}"; do wait "$pid" 2>/dev/null || true; done
  [ -n "${pids[1]:-}" ] && "${as_pg[@]}" "$bindir/pg_ctl" -D "$DATA_DIR/pg" stop -m fast >/dev/null 2>&1 || true
  [ -n "${pids[0]:-}" ] && kill -TERM "${pids[0]}" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "Stopped."
}
trap cleanup INT TERM EXIT

mkdir -p "$DATA_DIR/redis" "$DATA_DIR/pg-socket"
if [ "$(id -u)" -eq 0 ]; then
  as_pg=(runuser -u postgres --)
  chown postgres: "$DATA_DIR/pg-socket"
  if ! runuser -u postgres -- test -x "$DATA_DIR"; then
    echo "The postgres user cannot reach $DATA_DIR; set WBC_DATA_DIR to a directory it can reach." >&2; exit 1
  fi
fi

wait_port() { # port what
  for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "$2 did not start on port $1" >&2; exit 1
}

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DATA_DIR/redis" --daemonize no \
  --appendonly yes --appendfsync "$REDIS_APPENDFSYNC" --save "" --logfile redis.log &
pids+=($!)
wait_port "$REDIS_PORT" redis-server

if [ ! -f "$DATA_DIR/pg/PG_VERSION" ]; then
  mkdir -p "$DATA_DIR/pg"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$DATA_DIR/pg"
  "${as_pg[@]}" "$bindir/initdb" -D "$DATA_DIR/pg" -U wbc --auth=trust -E UTF8 --no-locale >/dev/null
fi
"${as_pg[@]}" "$bindir/postgres" -D "$DATA_DIR/pg" -p "$PG_PORT" -k "$DATA_DIR/pg-socket" \
  -c listen_addresses=127.0.0.1 >"$DATA_DIR/postgres.log" 2>&1 &
pids+=($!)
until "$bindir/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; do sleep 0.1; done
psql=(psql -q -h 127.0.0.1 -p "$PG_PORT" -U wbc -v ON_ERROR_STOP=1)
"${psql[@]}" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'wbc'" | grep -q 1 ||
  "${psql[@]}" -d postgres -c "CREATE DATABASE wbc"

# The admin token: the caller's ADMIN_TOKEN or ADMIN_TOKEN_FILE, else one made once and kept in the
# data directory, passed as a file so that it stays out of the API's environment.
if [ -z "${ADMIN_TOKEN:-}" ] && [ -z "${ADMIN_TOKEN_FILE:-}" ]; then
  ADMIN_TOKEN_FILE=$DATA_DIR/admin-token
  if [ ! -s "$ADMIN_TOKEN_FILE" ]; then
    (umask 077; od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$ADMIN_TOKEN_FILE")
  fi
  export ADMIN_TOKEN_FILE
fi
admin_token=${ADMIN_TOKEN:-$(cat "$ADMIN_TOKEN_FILE" 2>/dev/null)}

export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
export DATABASE_URL="postgres://wbc@127.0.0.1:$PG_PORT/wbc"

LISTEN_ADDR="127.0.0.1:$API_PORT" "$bin/wbc-api" &
pids+=($!)
wait_port "$API_PORT" wbc-api   # the API applies the migrations before it listens
"${psql[@]}" -d wbc -f "$root/scripts/seed.sql"

METRICS_ADDR="127.0.0.1:$WORKER_PORT" "$bin/wbc-worker" &
pids+=($!)
wait_port "$WORKER_PORT" wbc-worker

mkdir -p "$DATA_DIR/prometheus"
cat >"$DATA_DIR/prometheus/prometheus.yml" <<YAML
global: {scrape_interval: 5s, evaluation_interval: 5s}
rule_files: ['$root/observability/prometheus/alerts.yaml']
scrape_configs:
  - job_name: wbc-api
    static_configs: [{targets: ['127.0.0.1:$API_PORT']}]
  - job_name: wbc-worker
    static_configs: [{targets: ['127.0.0.1:$WORKER_PORT']}]
YAML
prometheus --config.file="$DATA_DIR/prometheus/prometheus.yml" --storage.tsdb.path="$DATA_DIR/prometheus/data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$DATA_DIR/prometheus.log" 2>&1 &
pids+=($!)
wait_port "$PROM_PORT" prometheus

cat <<INFO

wbc is running (Ctrl-C stops it):
  API          http://127.0.0.1:$API_PORT   (try: curl http://127.0.0.1:$API_PORT/products/seed-001)
  admin token  $admin_token   (from ${ADMIN_TOKEN_FILE:-ADMIN_TOKEN})
               export ADMIN_TOKEN=$admin_token
               curl -H "Authorization: Bearer \$ADMIN_TOKEN" http://127.0.0.1:$API_PORT/admin/queue
  worker       http://127.0.0.1:$WORKER_PORT/metrics
  Prometheus   http://127.0.0.1:$PROM_PORT   (alerts: /alerts; dashboard JSON: observability/grafana/wbc.json)
  Redis        $REDIS_URL   (appendfsync $REDIS_APPENDFSYNC)
  PostgreSQL   $DATABASE_URL
  data         $DATA_DIR

INFO
# Stay in the foreground until Ctrl-C or until any process exits.
wait -n "${pids[@]}"
echo "A process exited; stopping the rest." >&2
exit 1
