#!/usr/bin/env bash
# The chart's render-level tests (tests/chart): Helm's engine renders the chart for its defaults and
# variants; every object is checked against the Kubernetes schemas (kubernetes-validate --strict, 1.29
# and 1.20), the WriteBehindCache against its CRD, the values against values.schema.json; generated
# files must not drift; network-config-analyzer checks what the NetworkPolicies allow, and checkov scans
# every variant (each in a venv of its own, scripts/tool-venv.sh). No cluster and no network (after
# the venvs exist). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=$(scripts/chart/venv.sh)
# no __pycache__ or .pytest_cache in the tree
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/chart "$@"
