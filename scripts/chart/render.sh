#!/usr/bin/env bash
# Regenerates the chart's generated files with Helm's own engine (helm-python-sdk):
#   charts/wbc/files/{wbc.json,alerts.yaml}  copies of observability/ (Helm reads only files in the chart)
#   charts/wbc/values.yaml's `cache` spec keys and their schema in values.schema.json, from the CRD
#                                             (manifests/crd.yaml: run `make crds` first)
#   charts/wbc/README.md                      the values table, from values.yaml's `# --` comments
#   manifests/rendered/wbc.yaml               the chart rendered as plain YAML (scripts/chart/rendered-values.yaml)
# `scripts/chart/render.sh check` only reports drift (exit 1); tests/chart fails on drift too.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=$(scripts/chart/venv.sh)
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" scripts/chart/chartgen.py "${1:-write}"
