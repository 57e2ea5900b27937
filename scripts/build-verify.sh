#!/usr/bin/env bash
# Builds wbc-verify (debug, with the test build's features, so that `make test` reuses what its
# cargo tests built; no image carries it) and prints its path, for the
# end-to-end suite's WBC_VERIFY; scripts/k8s/e2e.sh and scripts/kind/kind.sh call it.
#   WBC_VERIFY=$(scripts/build-verify.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
(cd "$root" && cargo build --quiet -p wbc-worker --all-features --bin wbc-verify >&2)
target=${CARGO_TARGET_DIR:-$root/target}
case $target in /*) ;; *) target=$root/$target ;; esac  # cargo resolved a relative one from $root
exe=$target/debug/wbc-verify
test -x "$exe" || { echo "build-verify.sh: cargo built no $exe" >&2; exit 1; }
echo "$exe"
