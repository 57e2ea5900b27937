#!/usr/bin/env bash
# Creates (once) the venv of the API contract's fuzzer, schemathesis, and prints its path:
#   VENV=$(scripts/contract-venv.sh) && "$VENV/bin/schemathesis" --version
# It lives outside the tree ($WBC_CONTRACT_VENV, default ~/.cache/wbc-contract-venv), apart from the
# chart tests' venv, and is rebuilt only when tests/contract/requirements.txt or this script change.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
requirements="$here/tests/contract/requirements.txt"
venv="${WBC_CONTRACT_VENV:-$HOME/.cache/wbc-contract-venv}"
stamp="$venv/.wbc-stamp"
want="$(cat "$requirements" "$0" | sha256sum | cut -d' ' -f1)"

ready() { [[ -x "$venv/bin/schemathesis" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; }

if ! ready; then
    exec 9>"${venv%/}.lock" # two first runs at once must not build one venv twice
    flock 9
    if ! ready; then
        echo "contract venv: installing $(grep -v '^#' "$requirements" | tr '\n' ' ')into $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" --quiet --disable-pip-version-check install -r "$requirements" >&2
        echo "$want" >"$stamp"
    fi
fi
echo "$venv"
