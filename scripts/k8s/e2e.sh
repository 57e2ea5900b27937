#!/usr/bin/env bash
# The end-to-end suite (tests/e2e) on this machine's own single-node Kubernetes: builds the node's
# binaries and the images once (cached in ~/.cache/wbc-k8s), starts the node, imports the images, runs
# the suite, and stops the node whatever happens.
#   scripts/k8s/e2e.sh [pytest args]        e.g. -k chaos, or tests/e2e/test_1_install.py
# It builds wbc-verify first (scripts/build-verify.sh), which judges the load tests' writes.
# The chaos test's size comes from WBC_CHAOS_DURATION, WBC_CHAOS_INTERVAL, WBC_CHAOS_WRITERS and
# WBC_CHAOS_KEYS (tests/e2e/conftest.py). Exit status 0 with a message when this machine cannot run a
# node (the build says so with exit status 3).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
cache=${WBC_K8S_CACHE:-$HOME/.cache/wbc-k8s}
tag=${WBC_TAG:-dev}
started=$SECONDS

# The load tests' verdict comes from wbc-verify. Its own test (test_0_verdict.py) needs no cluster, so
# it runs first, even where no node can.
WBC_VERIFY=$(scripts/build-verify.sh)
export WBC_VERIFY
venv=$(scripts/chart/venv.sh)
PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest -p no:cacheprovider -q --rootdir "$root/tests/e2e" \
  tests/e2e/test_0_verdict.py

status=0
scripts/k8s/node.sh build || status=$?
if [ "$status" = 3 ]; then
  echo "e2e: SKIPPED: this machine cannot run the local Kubernetes node (see the messages above)" >&2
  exit 0
elif [ "$status" != 0 ]; then
  exit "$status"
fi
scripts/k8s/images.sh "$cache/images/wbc" "$tag"
echo "e2e: binaries and images ready after $((SECONDS - started)) s" >&2

trap 'scripts/k8s/node.sh down >/dev/null 2>&1 || true' EXIT
WBC_NODE_OWNER_PID=$$ scripts/k8s/node.sh up
scripts/k8s/node.sh load "$cache"/images/wbc/*.tar
eval "$(scripts/k8s/node.sh env)"
echo "e2e: node up after $((SECONDS - started)) s; running tests/e2e" >&2
suite=0
WBC_E2E_VALUES=charts/wbc/ci/local-node-values.yaml WBC_E2E_API_URL=${WBC_E2E_API_URL:-http://10.99.0.1:30800} \
  WBC_E2E_API_IMAGE="k8s.local/wbc-api:$tag" WBC_E2E_WORKER_IMAGE="k8s.local/wbc-worker:$tag" \
  WBC_E2E_CONTROLLER_IMAGE="k8s.local/wbc-controller:$tag" PYTHONDONTWRITEBYTECODE=1 \
  "$venv/bin/python" -m pytest -p no:cacheprovider -s -v --rootdir "$root/tests/e2e" \
  --ignore=tests/e2e/test_0_verdict.py tests/e2e "$@" || suite=$?
echo "e2e: finished in $((SECONDS - started)) s (exit $suite)" >&2
exit "$suite"
