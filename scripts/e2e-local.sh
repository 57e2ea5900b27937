#!/usr/bin/env bash
# End-to-end: starts `make run`'s stack on spare ports, drives the seed exercises with curl as a
# user would, then stops it with Ctrl-C (SIGINT) and checks that everything stopped.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export REDIS_PORT=$(port) PG_PORT=$(port) API_PORT=$(port) WORKER_PORT=$(port) PROM_PORT=$(port)
export WBC_DATA_DIR=$(mktemp -d /tmp/wbc-e2e-XXXXXX) PROFILE=${PROFILE:-dev}
chmod 755 "$WBC_DATA_DIR"
A=http://127.0.0.1:$API_PORT
log=$WBC_DATA_DIR/run.log
passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "  ok    $1"; }
fail() { failed=$((failed + 1)); echo "  FAIL  $1"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {'d': d}))" "$1"; }
psql_q() { psql -h 127.0.0.1 -p "$PG_PORT" -U wbc -d wbc -tAc "$1"; }
redis() { redis-cli -p "$REDIS_PORT" "$@"; }

setsid "$root/scripts/run.sh" >"$log" 2>&1 &
run_pid=$!
cleanup() { kill -TERM -- "-$run_pid" 2>/dev/null; sleep 1; rm -rf "$WBC_DATA_DIR"; }
trap cleanup EXIT
for _ in $(seq 1 1800); do grep -q 'wbc is running' "$log" && break; kill -0 $run_pid 2>/dev/null || break; sleep 0.2; done
if ! grep -q 'wbc is running' "$log"; then cat "$log"; echo "0 passed, 1 failed"; exit 1; fi
echo "e2e: stack up (API $A)"

# The banner says what runs where.
check "banner names the API, Redis and PostgreSQL URLs" grep -q "redis://127.0.0.1:$REDIS_PORT" "$log"
check "ten seed products are in PostgreSQL" test "$(psql_q "SELECT count(*) FROM products WHERE id LIKE 'seed-%'")" = 10

# POST answers 201 at once from the cache, and the row reaches PostgreSQL within the flush interval.
r=$(curl -s -w '\n%{http_code}' -X POST "$A/products" -H 'Content-Type: application/json' \
  -d '{"name": "Test Widget", "price": 29.99, "quantity": 100}')
body=$(head -1 <<<"$r"); code=$(tail -1 <<<"$r")
id=$(json 'd["id"]' <<<"$body")
check "POST /products answers 201" test "$code" = 201
check "POST answers source=cache with a version" test "$(json 'd["source"], d["version"] > 0' <<<"$body")" = "('cache', True)"
for _ in $(seq 1 40); do [ "$(psql_q "SELECT name FROM products WHERE id = '$id'")" = "Test Widget" ] && break; sleep 0.1; done
check "the row is in PostgreSQL within the flush interval" test "$(psql_q "SELECT name, price, quantity FROM products WHERE id = '$id'")" = "Test Widget|29.99|100"

# Reads: cache, then PostgreSQL on a miss, which fills the cache again.
check "GET answers from the cache" test "$(curl -s "$A/products/$id" | json 'd["source"]')" = cache
redis DEL "write_behind:product:$id" >/dev/null
check "GET after a cache miss answers from the database" test "$(curl -s "$A/products/$id" | json 'd["source"]')" = database
check "the miss filled the cache again" test "$(curl -s "$A/products/$id" | json 'd["source"]')" = cache

# PUT creates or replaces; DELETE writes a persisted tombstone.
check "PUT creates an absent product" test "$(curl -s -X PUT "$A/products/e2e-1" -H 'Content-Type: application/json' \
  -d '{"name":"Created","price":1,"quantity":1}' -o /dev/null -w '%{http_code}')" = 200
check "PUT replaces it" test "$(curl -s -X PUT "$A/products/e2e-1" -H 'Content-Type: application/json' \
  -d '{"name":"Replaced","price":2,"quantity":2}' | json 'd["name"]')" = Replaced
check "DELETE answers with the tombstone's version" test "$(curl -s -X DELETE "$A/products/e2e-1" | json 'd["deleted"]')" = True
check "GET of a deleted product is 404" test "$(curl -s -o /dev/null -w '%{http_code}' "$A/products/e2e-1")" = 404
for _ in $(seq 1 40); do [ "$(psql_q "SELECT deleted FROM products WHERE id = 'e2e-1'")" = t ] && break; sleep 0.1; done
check "the tombstone is persisted" test "$(psql_q "SELECT deleted FROM products WHERE id = 'e2e-1'")" = t

# Admin endpoints, with the token the banner prints.
token=$(sed -n 's/^  admin token  \([^ ]*\) .*/\1/p' "$log")
check "the banner prints the admin token it made" test "$token" = "$(cat "$WBC_DATA_DIR/admin-token")"
admin() { curl -s -H "Authorization: Bearer $token" "$@"; }
check "/admin/queue without the token is 401" test "$(curl -s -o /dev/null -w '%{http_code}' "$A/admin/queue")" = 401
check "/admin/queue with a wrong token is 403 naming ADMIN_TOKEN" test "$(curl -s -H 'Authorization: Bearer not-the-admin-token' \
  "$A/admin/queue" | json 'd["error"]')" = "authorization: the bearer token is not ADMIN_TOKEN"
check "/admin/queue shows the queue" test "$(admin "$A/admin/queue" | json 'sorted(d)')" = \
  "['dead_letters', 'in_flight', 'last_data_loss_at_ms', 'oldest_unpersisted_age_ms', 'queue_size']"
check "/admin/config shows the effective configuration" test "$(admin "$A/admin/config" | \
  json '(d["mode"], d["flush_interval"], d["batch_size"], d["max_retries"], d["queue_capacity"])')" = \
  "('write-behind', '1s', 500, 3, 100000)"

# Ten concurrent PUTs to seed-001: at most one queued entry, one database write with the last value.
for i in $(seq 1 10); do
  curl -s -X PUT "$A/products/seed-001" -H 'Content-Type: application/json' \
    -d "{\"name\":\"concurrent $i\",\"price\":$i,\"quantity\":$i}" >"$WBC_DATA_DIR/put-$i" &
done
wait $(jobs -p | grep -v "^$run_pid$") 2>/dev/null
check "ten PUTs leave at most one queued entry for seed-001" test "$(redis ZRANGE write_behind:dirty 0 -1 | grep -c '^seed-001$')" -le 1
last=$(for f in "$WBC_DATA_DIR"/put-*; do cat "$f"; echo; done | python3 -c 'import json,sys; print(max((json.loads(l) for l in sys.stdin), key=lambda d: d["version"])["name"])')
for _ in $(seq 1 40); do [ "$(psql_q "SELECT name FROM products WHERE id = 'seed-001'")" = "$last" ] && break; sleep 0.1; done
check "seed-001 in PostgreSQL carries the last acknowledged value ($last)" test "$(psql_q "SELECT name FROM products WHERE id = 'seed-001'")" = "$last"

# Operational endpoints on the API and the worker.
for base in "$A" "http://127.0.0.1:$WORKER_PORT"; do
  check "$base/healthz" test "$(curl -s -o /dev/null -w '%{http_code}' "$base/healthz")" = 200
  check "$base/readyz" test "$(curl -s "$base/readyz" | json 'd["ready"]')" = True
  check "$base/metrics is Prometheus text" bash -c "curl -s '$base/metrics' | grep -q '^# TYPE wbc_queue_dirty_keys gauge'"
done

# Prometheus scrapes the API and the worker, with the alert rules loaded.
prom_up() { curl -s "127.0.0.1:$PROM_PORT/api/v1/query?query=sum(up)" | json 'd["data"]["result"][0]["value"][1]' 2>/dev/null; }
for _ in $(seq 1 60); do [ "$(prom_up)" = 2 ] && break; sleep 0.5; done
check "Prometheus scrapes the API and the worker" test "$(prom_up)" = 2
# every rule of observability/prometheus/alerts.yaml
check "Prometheus loaded the alert rules" test "$(curl -s "127.0.0.1:$PROM_PORT/api/v1/rules" | \
  json 'sum(len(g["rules"]) for g in d["data"]["groups"])')" = "$(grep -c -- '- alert:' "$root/observability/prometheus/alerts.yaml")"

# Write-through, selected either way, answers from the database with the row already committed.
bin=${CARGO_TARGET_DIR:-$root/target}/debug
[ "$PROFILE" = dev ] || bin=${CARGO_TARGET_DIR:-$root/target}/$PROFILE
for mode_env in WRITE_MODE=write-through WRITE_BEHIND_ENABLED=false; do
  wt_port=$(port)
  env "$mode_env" LISTEN_ADDR="127.0.0.1:$wt_port" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    DATABASE_URL="postgres://wbc@127.0.0.1:$PG_PORT/wbc" RUST_LOG=warn "$bin/wbc-api" &
  wt_pid=$!
  for _ in $(seq 1 100); do curl -s "127.0.0.1:$wt_port/healthz" >/dev/null && break; sleep 0.1; done
  body=$(curl -s -X POST "127.0.0.1:$wt_port/products" -H 'Content-Type: application/json' -d '{"name":"Through","price":3,"quantity":3}')
  wid=$(json 'd["id"]' <<<"$body")
  check "$mode_env answers source=database" test "$(json 'd["source"]' <<<"$body")" = database
  check "$mode_env committed before answering" test "$(psql_q "SELECT name FROM products WHERE id = '$wid'")" = Through
  kill -TERM $wt_pid; wait $wt_pid 2>/dev/null
done

# Bad configuration is refused at start, naming the setting.
refused() { # flag command...: the command exits non-zero and names the flag
  local flag=$1 out; shift
  out=$("$@" 2>&1) && return 1
  grep -q -- "$flag" <<<"$out"
}
check "FLUSH_INTERVAL=soon is refused by name" refused --flush-interval env FLUSH_INTERVAL=soon "$bin/wbc-api"
check "WRITE_MODE=sideways is refused by name" refused --write-mode env WRITE_MODE=sideways "$bin/wbc-worker"
check "a short ADMIN_TOKEN is refused by name" refused "ADMIN_TOKEN: has 5 characters" env ADMIN_TOKEN=short "$bin/wbc-api"

# Ctrl-C stops everything.
kill -INT -- "-$run_pid"
for _ in $(seq 1 100); do kill -0 $run_pid 2>/dev/null || break; sleep 0.1; done
check "Ctrl-C stops make run" bash -c "! kill -0 $run_pid 2>/dev/null"
sleep 0.5
stack_gone() { ! pgrep -f -- "-D $WBC_DATA_DIR/pg" >/dev/null && ! pgrep -f "redis-server 127.0.0.1:$REDIS_PORT" >/dev/null &&
  ! pgrep -f "$bin/wbc-(api|worker)" >/dev/null; }
check "no process of the stack is left" stack_gone
trap - EXIT
rm -rf "$WBC_DATA_DIR"

echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
