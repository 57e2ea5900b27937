"""Switching the write mode by editing the WriteBehindCache while a steady load runs through the API's
Service: the controller updates the ConfigMap and rolls the API and the worker, not one request fails,
new writes take the new path, and no acknowledged write is lost or overwritten by an older one."""
from __future__ import annotations

import json
import os
import threading
import time
import uuid

from cluster import Cluster, log, wait_for
from load import Load, verify, wait_drained

LABELS = {"WriteThrough": "write-through", "WriteBehind": "write-behind"}


class ConditionLog:
    """Samples the cache's Ready and Progressing conditions in the background."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster, self.seen, self.stop = cluster, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                status = self.cluster.cache().get("status") or {}
                self.seen.append({c["type"]: c["status"] for c in status.get("conditions") or []})
            except Exception:  # a sample lost to a busy API server is only a gap
                pass
            time.sleep(0.3)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def switch(cluster: Cluster, load: Load, mode: str) -> None:
    label = LABELS[mode]
    generation = cluster.cache()["metadata"]["generation"]
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    began = time.monotonic()
    with ConditionLog(cluster) as conditions:
        cluster.kubectl("patch", "wbc", cluster.release, "--type=merge", "-p", json.dumps({"spec": {"mode": mode}}))
        wait_for(f"the ConfigMap to say {label}", lambda: cluster.get(
            "configmap", f"{cluster.release}-config")["data"]["WRITE_MODE"] == label, timeout=60)
        cache = cluster.wait_cache_ready(timeout=300)
        cluster.wait_rolled_out()
        # Ready follows the pods: one that misses a probe on this busy machine is PodsUnavailable a moment
        cache = cluster.wait_cache_ready(timeout=120)
    seconds = time.monotonic() - began
    assert cache["metadata"]["generation"] > generation
    seen = conditions.seen
    rolling = next((i for i, s in enumerate(seen) if s.get("Progressing") == "True"), None)
    assert rolling is not None, f"never Progressing: {seen}"
    assert any(s.get("Ready") == "True" for s in seen[rolling:]), f"never Ready after Progressing: {seen}"
    # pods of the old ReplicaSet serve out their shutdown delay, and kube-proxy may lag a moment behind
    # the Endpoints: wait until ten answers in a row (spread over the pods) report the new mode
    wait_for(f"the Service to answer {label} only", lambda: all(
        cluster.http("GET", "/admin/config")[1].get("mode") == label for _ in range(10)), timeout=60)
    id_ = f"switch-{uuid.uuid4().hex[:8]}"
    status, body = cluster.http("PUT", f"/products/{id_}", {"name": f"after {label}", "price": 2, "quantity": 2})
    assert status == 200, body
    if mode == "WriteThrough":
        assert body["source"] == "database", body
        rows = cluster.psql(f"SELECT version FROM products WHERE id = '{id_}'")
        assert rows == [[str(body["version"])]], "a write-through write is in PostgreSQL when acknowledged"
    else:
        assert body["source"] == "cache", body
    short = cache["status"]["configHash"][:12]
    events = cluster.events_since(since)
    for reason in ("ConfigApplied", "RolloutStarted", "RolloutComplete"):
        assert any(r == reason and short in m for r, m in events), f"no {reason} event of {short}: {events}"
    failed = load.ledger.failures_between(began, time.monotonic())
    log(f"switch to {mode}: {seconds:.1f} s from the patch to the finished rollout, "
        f"{len(failed)} failed requests during it ({load.ledger.acked} writes acknowledged so far)")


def test_switching_the_mode_under_load_fails_no_request_and_loses_no_write(release, cluster: Cluster, tmp_path):
    cluster.wait_cache_ready()
    rate = float(os.environ.get("WBC_SWITCH_RATE", "100"))
    with Load(cluster.api_url, writers=4, keys=300, rate=rate) as load:
        time.sleep(3)
        switch(cluster, load, "WriteThrough")
        time.sleep(3)
        switch(cluster, load, "WriteBehind")
        time.sleep(3)
    reasons = load.ledger.failure_reasons()
    log(f"load: {load.ledger.acked} writes acknowledged, {sum(reasons.values())} failed {reasons}")
    assert load.ledger.acked > 0
    assert not reasons, f"requests failed during the switches: {reasons}"
    log(f"queue drained in {wait_drained(cluster):.1f} s")
    verdict = verify(cluster, load.ledger, tmp_path)
    log(f"wbc-verify: {verdict.summary}")
    assert verdict.holds, verdict.violations
