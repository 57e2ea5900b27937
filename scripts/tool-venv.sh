#!/usr/bin/env bash
# Creates (once) the venv of one Python tool whose pins clash with the chart tests' venv
# (scripts/chart/venv.sh) and with each other, and prints its path:
#   CHECKOV=$(scripts/tool-venv.sh checkov)/bin/checkov
#   NCA=$(scripts/tool-venv.sh nca)/bin/nca
#   SCHEMATHESIS=$(scripts/tool-venv.sh schemathesis)/bin/schemathesis
# TOOL's pins are scripts/venvs/TOOL.txt; its venv lives outside the tree
# (~/.cache/wbc-TOOL-venv, or $WBC_TOOL_VENV_DIR/wbc-TOOL-venv) and is rebuilt only when those pins or
# this script change. Two first runs at once wait for each other (flock) instead of building it twice.
set -euo pipefail

tool="${1:?usage: tool-venv.sh checkov|nca|schemathesis}"
here="$(cd "$(dirname "$0")" && pwd)"
requirements="$here/venvs/$tool.txt"
[[ -f "$requirements" ]] || { echo "tool-venv.sh: no $requirements" >&2; exit 2; }
venv="${WBC_TOOL_VENV_DIR:-$HOME/.cache}/wbc-$tool-venv"
stamp="$venv/.wbc-stamp"
want="$(cat "$requirements" "$0" | sha256sum | cut -d' ' -f1)"

ready() { [[ -x "$venv/bin/python" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; }

if ! ready; then
    mkdir -p "$(dirname "$venv")"
    exec 9>"${venv%/}.lock"
    flock 9
    if ! ready; then
        echo "$tool venv: installing $(grep -v '^#' "$requirements" | tr '\n' ' ')into $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" --quiet --disable-pip-version-check install -r "$requirements" >&2
        echo "$want" >"$stamp"
    fi
fi
echo "$venv"
