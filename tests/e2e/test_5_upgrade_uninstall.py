"""`helm upgrade` with a changed value rolls only what the value feeds; `helm uninstall` leaves no pod
behind and keeps the CRD (helm.sh/resource-policy: keep)."""
from __future__ import annotations

from cluster import Cluster, log, uids, wait_for


def test_an_upgrade_rolls_only_what_changed(release, cluster: Cluster):
    cluster.wait_cache_ready()
    cluster.wait_rolled_out()
    components = ("api", "worker", "controller", "redis", "postgresql")
    # pods of an earlier rollout may still be shutting down: only the live ones count
    before = wait_for("no pod shutting down", lambda: (live := {c: uids(cluster.live_pods(c)) for c in components})
                      and all(uids(cluster.pods(c)) == live[c] for c in components) and live)
    token = cluster.admin_token()
    upgraded = cluster.upgrade({"worker": {"flushConcurrency": 3}})
    log(f"helm upgrade: revision {upgraded['revision']}")
    cluster.kubectl("rollout", "status", f"deployment/{cluster.release}-worker", "--timeout=300s", timeout=310)
    env = cluster.get("deployment", f"{cluster.release}-worker")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "FLUSH_CONCURRENCY", "value": "3"} in env
    after = {c: uids(cluster.live_pods(c)) for c in components}
    assert after["worker"] and not after["worker"] & before["worker"], "the worker pods were replaced"
    for component in ("api", "controller", "redis", "postgresql"):
        assert after[component] == before[component], f"{component} pods were replaced by an unrelated change"
    assert cluster.admin_token() == token, "the upgrade kept the generated admin token"
    assert cluster.http("GET", "/admin/queue", token=token)[0] == 200
    cluster.wait_cache_ready()


def test_uninstall_leaves_no_pods_and_keeps_the_crd(release, cluster: Cluster):
    cluster.uninstall()
    wait_for("every pod of the release to be gone", lambda: not cluster.pods(), timeout=300)
    crd = cluster.kubectl("get", "crd", "writebehindcaches.wbc.dev", "-o", "name", namespaced=False).stdout
    assert crd.strip() == "customresourcedefinition.apiextensions.k8s.io/writebehindcaches.wbc.dev"
