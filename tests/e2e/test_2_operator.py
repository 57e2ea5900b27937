"""The operator against what users do, on a real cluster: a second cache that selects the chart's
Deployments is refused and rolls nothing; a deleted cache leaves its Deployments their configuration (the
garbage collector keeps the ConfigMap they co-own) and the ConfigMap goes with the last of them."""
from __future__ import annotations

import json
import os
import time

from cluster import Cluster, log, uids, wait_for

# an image that only sleeps: the local node's (scripts/k8s/node.sh); kind has registry.k8s.io/pause
PAUSE_IMAGE = os.environ.get("WBC_E2E_PAUSE_IMAGE", "k8s.local/pause:3.4.1")


def apply(cluster: Cluster, obj: dict) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


def cache(name: str, spec: dict) -> dict:
    return {"apiVersion": "wbc.dev/v1alpha1", "kind": "WriteBehindCache", "metadata": {"name": name}, "spec": spec}


def degraded(cluster: Cluster, name: str) -> dict:
    conditions = (cluster.get("writebehindcache", name).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Degraded"), {})


def test_a_second_cache_selecting_the_charts_deployments_is_refused_and_rolls_nothing(release, cluster: Cluster):
    cluster.wait_cache_ready()
    cluster.wait_rolled_out()
    deployments = [f"{cluster.release}-api", f"{cluster.release}-worker"]
    generation = {d: cluster.get("deployment", d)["metadata"]["generation"] for d in deployments}
    pods = {c: uids(cluster.live_pods(c)) for c in ("api", "worker")}

    apply(cluster, cache("intruder", {"mode": "WriteThrough",
                                      "targetSelector": {"matchLabels": {"app.kubernetes.io/part-of": "wbc"}}}))
    refused = wait_for("the intruder refused with TargetConflict",
                       lambda: (c := degraded(cluster, "intruder")).get("reason") == "TargetConflict" and c)
    assert f"is held by WriteBehindCache {cluster.release}" in refused["message"], refused
    log(f"intruder: {refused['message']}")
    time.sleep(12)  # a window longer than the resync (10 s): both caches are reconciled again meanwhile
    assert {d: cluster.get("deployment", d)["metadata"]["generation"] for d in deployments} == generation
    assert {c: uids(cluster.live_pods(c)) for c in ("api", "worker")} == pods, "pods were replaced"
    assert cluster.condition("Ready")["status"] == "True"
    cluster.kubectl("delete", "writebehindcache", "intruder", "--wait=true")


def test_a_deleted_cache_leaves_its_deployments_their_configuration(release, cluster: Cluster):
    labels = {"app.kubernetes.io/part-of": "wbc", "app.kubernetes.io/instance": "leaving", "app": "leaving-reader"}
    apply(cluster, cache("leaving", {"batchSize": 42}))
    apply(cluster, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "leaving-reader", "labels": labels},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "leaving-reader"}},
                 "template": {"metadata": {"labels": {"app": "leaving-reader"}}, "spec": {
                     "automountServiceAccountToken": False,
                     "containers": [{"name": "reader", "image": PAUSE_IMAGE, "imagePullPolicy": "IfNotPresent",
                                     "envFrom": [{"configMapRef": {"name": "leaving-config"}}]}]}}}})
    owners = lambda: {o["kind"] for o in cluster.get("configmap", "leaving-config")["metadata"]["ownerReferences"]}
    wait_for("the reader to co-own leaving-config", lambda: owners() == {"WriteBehindCache", "Deployment"})
    cluster.kubectl("rollout", "status", "deployment/leaving-reader", "--timeout=120s", timeout=130)
    pods = uids(cluster.get("pods", "-l", "app=leaving-reader")["items"])

    cluster.kubectl("delete", "writebehindcache", "leaving", "--wait=true")
    # the garbage collector drops the deleted owner and keeps the ConfigMap for the other
    wait_for("the garbage collector to keep leaving-config", lambda: owners() == {"Deployment"}, timeout=120)
    assert cluster.get("configmap", "leaving-config")["data"]["BATCH_SIZE"] == "42"
    assert uids(cluster.get("pods", "-l", "app=leaving-reader")["items"]) == pods, "the reader was restarted"
    events = lambda: cluster.get("events", "--field-selector", "involvedObject.name=leaving-config")["items"]
    kept = wait_for("the ConfigKept event", lambda: [e for e in events() if e.get("reason") == "ConfigKept"])
    log(f"ConfigKept: {kept[0].get('message') or kept[0].get('note')}")

    cluster.kubectl("delete", "deployment", "leaving-reader", "--wait=true")
    wait_for("leaving-config to go with its last reader",
             lambda: cluster.kubectl("get", "configmap", "leaving-config", check=False).returncode != 0, timeout=120)
