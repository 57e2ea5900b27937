#!/usr/bin/env bash
# Creates (once) the Python venv of the chart's scripts and tests, and prints its path:
#   VENV=$(scripts/chart/venv.sh) && "$VENV/bin/python" -m pytest tests/chart
# It lives outside the tree ($WBC_VENV, default ~/.cache/wbc-venv) and is rebuilt only when
# requirements.txt or this script change. Everything comes from PyPI:
#   - the packages of requirements.txt;
#   - Kubernetes 1.20's JSON schemas, which kubernetes-validate dropped after its 1.24 releases: they are
#     taken from the kubernetes-validate 1.24.1 source archive into $venv/k8s-schemas (the local test
#     cluster runs Kubernetes 1.20).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
venv="${WBC_VENV:-$HOME/.cache/wbc-venv}"
legacy_release=1.24.1
legacy_schemas="v1.20.0-local-strict"
stamp="$venv/.wbc-stamp"
want="$(cat "$here/requirements.txt" "$0" | sha256sum | cut -d' ' -f1)"

if [[ -x "$venv/bin/python" && -d "$venv/k8s-schemas/$legacy_schemas" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
    echo "$venv"
    exit 0
fi

exec 9>"${venv%/}.lock" # two first runs at once must not build one venv twice
flock 9
if [[ ! -x "$venv/bin/python" || ! -d "$venv/k8s-schemas/$legacy_schemas" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "chart venv: installing $(grep -v '^#' "$here/requirements.txt" | tr '\n' ' ')into $venv" >&2
    python3 -m venv "$venv"
    pip=("$venv/bin/pip" --quiet --disable-pip-version-check)
    "${pip[@]}" install -r "$here/requirements.txt" >&2

    echo "chart venv: Kubernetes 1.20 schemas from kubernetes-validate $legacy_release" >&2
    download="$(mktemp -d)"
    trap 'rm -rf "$download"' EXIT
    "${pip[@]}" download --no-deps --no-binary :all: \
        "kubernetes-validate==$legacy_release" -d "$download" >&2
    rm -rf "$venv/k8s-schemas" && mkdir -p "$venv/k8s-schemas"
    tar -xzf "$download"/kubernetes-validate-*.tar.gz -C "$download" --wildcards "*/kubernetes-json-schema/$legacy_schemas/*"
    mv "$download"/kubernetes-validate-*/src/kubernetes_validate/kubernetes-json-schema/"$legacy_schemas" "$venv/k8s-schemas/"
    echo "$want" >"$stamp"
fi
echo "$venv"
