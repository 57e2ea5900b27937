#!/usr/bin/env bash
# The API contract: starts `make run`'s stack on spare ports (Redis, PostgreSQL, the API, a worker), and
# runs schemathesis against the document the API serves at /openapi.json, with every check (no 5xx,
# answers conform to the document, invalid requests refused with 4xx, valid ones accepted, auth,
# unsupported methods, stateful links) plus our own (tests/contract/hooks.py: every refusal names its
# field). Then it stops the stack.
#
# Kept lean for `make test`: CONTRACT_EXAMPLES (default 30) cases per operation and phase, and
# CONTRACT_MAX_TIME (default 60 s) for the whole run. `make contract` runs a longer one.
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
examples=${CONTRACT_EXAMPLES:-30}
max_time=${CONTRACT_MAX_TIME:-60}
venv=$("$root/scripts/tool-venv.sh" schemathesis) || exit 1

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export REDIS_PORT=$(port) PG_PORT=$(port) API_PORT=$(port) WORKER_PORT=$(port) PROM_PORT=$(port)
export WBC_DATA_DIR=$(mktemp -d /tmp/wbc-contract-XXXXXX) PROFILE=${PROFILE:-dev}
# The admin endpoints take this token; schemathesis sends it where the document asks for it.
export ADMIN_TOKEN=${ADMIN_TOKEN:-contract-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
chmod 755 "$WBC_DATA_DIR"
log=$WBC_DATA_DIR/run.log
report=$WBC_DATA_DIR/report

setsid "$root/scripts/run.sh" >"$log" 2>&1 &
run_pid=$!
cleanup() {
  kill -INT -- "-$run_pid" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$run_pid" 2>/dev/null
  rm -rf "$WBC_DATA_DIR"
}
trap cleanup EXIT
for _ in $(seq 1 1800); do grep -q 'wbc is running' "$log" && break; kill -0 $run_pid 2>/dev/null || break; sleep 0.2; done
if ! grep -q 'wbc is running' "$log"; then cat "$log"; echo "contract: the stack did not start"; exit 1; fi
api=http://127.0.0.1:$API_PORT
echo "contract: stack up (API $api); schemathesis $("$venv/bin/schemathesis" --version | awk '{print $NF}'), $examples examples per operation, at most ${max_time}s"

# One worker: hypothesis describes its filters by parsing their source with `ast.parse`, which CPython
# 3.11 before 3.11.8 breaks on when two threads do it at once ("AST constructor recursion depth mismatch").
start=$(date +%s)
cd "$root/tests/contract" &&
  PYTHONDONTWRITEBYTECODE=1 SCHEMATHESIS_HOOKS=hooks "$venv/bin/schemathesis" --config-file schemathesis.toml run "$api/openapi.json" \
    --url "$api" --checks all --mode all --phases examples,coverage,fuzzing,stateful \
    --max-examples "$examples" --max-time "$max_time" --seed "${CONTRACT_SEED:-$RANDOM}" \
    --workers 1 --report junit --report-dir "$report" "$@"
status=$?
echo "contract: schemathesis took $(($(date +%s) - start)) s, exit $status"
if [ "$status" -ne 0 ] && [ -d "$report" ]; then ls "$report"; fi
if grep -qE 'panicked|ERROR' "$WBC_DATA_DIR"/run.log; then
  echo "contract: the API or the worker logged an error or a panic:"; grep -E 'panicked|ERROR' "$WBC_DATA_DIR"/run.log | head -20
  status=1
fi
exit $status
