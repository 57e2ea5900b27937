#!/usr/bin/env bash
# wbc on kind, for machines with Docker, kind and helm (the reference place to run it):
#   scripts/kind/kind.sh up     cluster (kind-config.yaml), images built by the Dockerfile and loaded,
#                               kube-prometheus-stack and Jaeger (the chart's optional dependencies), the
#                               chart with charts/wbc/ci/kind-values.yaml; prints the URLs
#   scripts/kind/kind.sh e2e [pytest args]
#                               cluster and images, then the end-to-end suite (tests/e2e), which installs
#                               and removes its own release; the release of `up` is removed first;
#                               needs cargo too, for wbc-verify (scripts/build-verify.sh)
#   scripts/kind/kind.sh down   deletes the cluster
# WBC_KIND_NAME (default wbc), WBC_NAMESPACE (default wbc) and WBC_TAG (default dev) change the names.
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${WBC_KIND_NAME:-wbc}
namespace=${WBC_NAMESPACE:-wbc}
tag=${WBC_TAG:-dev}

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "kind.sh: $tool is not installed (see README, 'On kind')" >&2; exit 1; }
  done
}

cluster() {
  need docker kind kubectl
  if ! kind get clusters 2>/dev/null | grep -qx "$name"; then
    kind create cluster --name "$name" --config kind-config.yaml --wait 120s
  fi
  kubectl config use-context "kind-$name" >/dev/null
}

images() {
  for bin in wbc-api wbc-worker wbc-controller; do
    docker build --build-arg "BIN=$bin" -t "$bin:$tag" .
    kind load docker-image --name "$name" "$bin:$tag"
  done
}

up() {
  need helm
  cluster
  images
  helm dependency build charts/wbc
  local args=(upgrade --install wbc charts/wbc --namespace "$namespace" --create-namespace
    -f charts/wbc/ci/kind-values.yaml --set "api.image.tag=$tag,worker.image.tag=$tag,controller.image.tag=$tag"
    --wait --timeout 15m)
  helm "${args[@]}"
  # ServiceMonitors and the PrometheusRule render once the cluster serves their CRDs: a second pass
  helm "${args[@]}"
  cat <<URLS

wbc is up on kind cluster '$name' (namespace $namespace):
  API         http://localhost:8000   (curl -X POST localhost:8000/products -H 'content-type: application/json' -d '{"name":"Widget","price":9.99,"quantity":5}')
  admin token \$(kubectl -n $namespace get secret wbc-api-tokens -o jsonpath='{.data.admin-token}' | base64 -d)   (/admin/* needs it)
  Jaeger      http://localhost:16686
  Prometheus  http://localhost:9090
  Grafana     http://localhost:3001   (admin / $(kubectl -n "$namespace" get secret wbc-grafana -o jsonpath='{.data.admin-password}' 2>/dev/null | base64 -d || echo '<see the wbc-grafana Secret>'))
  kubectl -n $namespace get wbc     kubectl -n $namespace describe wbc wbc
URLS
}

e2e() {
  need cargo
  cluster
  images
  if command -v helm >/dev/null && helm status wbc --namespace "$namespace" >/dev/null 2>&1; then
    helm uninstall wbc --namespace "$namespace" --wait
    # the kept CRD still names that release; the suite's release (namespace wbc-e2e) installs its own
    kubectl delete crd writebehindcaches.wbc.dev --ignore-not-found
  fi
  local venv verify
  venv=$(scripts/chart/venv.sh)
  verify=$(scripts/build-verify.sh)  # judges the load tests' writes
  KUBECONFIG=$(mktemp) && kind get kubeconfig --name "$name" > "$KUBECONFIG" && export KUBECONFIG
  WBC_VERIFY=$verify WBC_E2E_VALUES=charts/wbc/ci/kind-e2e-values.yaml WBC_E2E_API_URL=http://localhost:8000 \
    WBC_E2E_API_IMAGE="wbc-api:$tag" WBC_E2E_WORKER_IMAGE="wbc-worker:$tag" WBC_E2E_CONTROLLER_IMAGE="wbc-controller:$tag" \
    WBC_E2E_PAUSE_IMAGE=registry.k8s.io/pause:3.9 \
    PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" -m pytest -p no:cacheprovider -s -v tests/e2e "$@"
}

down() {
  need kind
  kind delete cluster --name "$name"
}

case "${1:-}" in
  up) up ;;
  e2e) shift; e2e "$@" ;;
  down) down ;;
  *) echo "usage: $0 up | e2e [pytest args] | down" >&2; exit 2 ;;
esac
