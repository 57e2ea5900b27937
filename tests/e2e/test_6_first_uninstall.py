"""`helm uninstall` right after a first install (no upgrade since) removes the chart's WriteBehindCache,
which a first install creates as a post-install hook, and its ConfigMap; the namespace then goes too."""
from __future__ import annotations

from cluster import Cluster, log, wait_for

CRD = "writebehindcaches.wbc.dev"


def test_uninstall_right_after_a_first_install_removes_the_charts_cache(cluster: Cluster):
    # a first install: the cluster must not serve WriteBehindCache yet
    cluster.uninstall()
    cluster.kubectl("delete", "crd", CRD, "--ignore-not-found", "--wait=true", namespaced=False, timeout=120)
    cluster.install({"api": {"replicaCount": 0}, "worker": {"replicaCount": 0}})
    cache = cluster.cache()
    assert cache["metadata"]["annotations"]["helm.sh/hook"] == "post-install", "not the first-install path"
    wait_for("the controller to render the ConfigMap",
             lambda: cluster.kubectl("get", "configmap", f"{cluster.release}-config", check=False).returncode == 0)

    cluster.uninstall()
    caches = cluster.get("writebehindcaches")["items"]
    assert not caches, f"left behind: {[c['metadata']['name'] for c in caches]}"
    wait_for("the ConfigMap to go with the Deployments", lambda: cluster.kubectl(
        "get", "configmap", f"{cluster.release}-config", check=False).returncode != 0, timeout=120)
    cluster.kubectl("delete", "namespace", cluster.namespace, "--wait=true", namespaced=False, timeout=180)
    log("uninstalled: no cache, no ConfigMap, namespace gone")
