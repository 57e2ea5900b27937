"""`helm install` of the chart: every pod Ready, the API answers through its Service, a write reaches
PostgreSQL, and `helm test` passes."""
from __future__ import annotations

import uuid

from cluster import Cluster, is_ready, log, wait_for

COMPONENTS = {"api", "worker", "controller", "redis", "postgresql"}


def test_every_pod_becomes_ready_and_the_cache_reports_ready(release, cluster: Cluster):
    pods = wait_for("every pod of the release to be Ready",
                    lambda: (ps := cluster.pods()) and all(is_ready(p) for p in ps) and ps, timeout=300)
    components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods}
    assert COMPONENTS <= components, f"missing components: {COMPONENTS - components}"
    cache = cluster.wait_cache_ready()
    hash_ = cache["status"]["configHash"]
    for name in ("api", "worker"):
        template = cluster.get("deployment", f"{cluster.release}-{name}")["spec"]["template"]
        assert template["metadata"]["annotations"]["wbc.dev/config-hash"] == hash_, name
    log(f"{len(pods)} pods Ready; WriteBehindCache Ready with configuration {hash_[:12]}")


def test_the_api_answers_through_its_service_and_a_write_reaches_postgres(release, cluster: Cluster):
    name = f"e2e {uuid.uuid4().hex[:8]}"
    status, body = cluster.http("POST", "/products", {"name": name, "price": 12.5, "quantity": 7})
    assert status == 201, body
    assert body["source"] == "cache", "the default mode is write-behind"
    rows = wait_for("the write to reach PostgreSQL", lambda: cluster.psql(
        f"SELECT name, price, quantity, version FROM products WHERE id = '{body['id']}'"), timeout=60)
    assert rows == [[name, "12.50", "7", str(body["version"])]]
    status, got = cluster.http("GET", f"/products/{body['id']}")
    assert (status, got["name"]) == (200, name)


def test_the_admin_endpoints_need_the_generated_token_and_the_probes_do_not(release, cluster: Cluster):
    status, body = cluster.http("GET", "/admin/queue", token="")
    assert (status, body.get("field")) == (401, "authorization"), body
    status, body = cluster.http("GET", "/admin/queue", token="not-the-admin-token-at-all")
    assert status == 403, body
    status, body = cluster.http("GET", "/admin/queue")
    assert status == 200 and "queue_size" in body, body
    for path in ("/healthz", "/readyz", "/metrics"):
        assert cluster.http("GET", path, token="")[0] == 200, path


def test_helm_test_passes(release, cluster: Cluster):
    result = cluster.helm_test()
    assert "OK: the API is healthy and a write reads back" in result.get("logs", ""), result
