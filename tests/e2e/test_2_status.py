"""The WriteBehindCache's status tells the truth: a bad field is refused by the API server, a
semantically invalid edit leaves the running configuration alone and says why, and a store that is
down turns the cache Degraded with its reason until it is back, with events for each transition."""
from __future__ import annotations

import json
import time

import pytest

from cluster import Cluster, log, wait_for


def patch(cluster: Cluster, spec: dict, check: bool = True):
    return cluster.kubectl("patch", "wbc", cluster.release, "--type=merge", "-p", json.dumps({"spec": spec}),
                           check=check)


def test_a_bad_field_is_refused_with_a_message_that_names_it(release, cluster: Cluster):
    before = cluster.cache()["spec"]
    for spec, field in [({"mode": "Sometimes"}, "spec.mode"), ({"batchSize": 0}, "spec.batchSize"),
                        ({"flushInterval": "soon"}, "spec.flushInterval")]:
        done = patch(cluster, spec, check=False)
        assert done.returncode != 0, f"{spec} was accepted"
        assert field in done.stderr, f"{spec}: the refusal does not name {field}: {done.stderr}"
    assert cluster.cache()["spec"] == before


def test_a_semantically_invalid_edit_changes_nothing_and_says_why(release, cluster: Cluster):
    config_map = f"{cluster.release}-config"
    data = cluster.get("configmap", config_map)["data"]
    pods = {p["metadata"]["uid"] for p in cluster.pods("api")}
    patch(cluster, {"retry": {"initialDelay": "1m", "maxDelay": "1s"}})
    degraded = wait_for("Degraded=True InvalidSpec",
                        lambda: (c := cluster.condition("Degraded")).get("reason") == "InvalidSpec" and c)
    assert degraded["status"] == "True" and "initialDelay" in degraded["message"], degraded
    assert cluster.get("configmap", config_map)["data"] == data, "the running configuration must stay"
    assert {p["metadata"]["uid"] for p in cluster.pods("api")} == pods, "nothing may roll"
    described = cluster.kubectl("describe", "wbc", cluster.release).stdout
    assert "InvalidSpec" in described, described
    patch(cluster, {"retry": {"initialDelay": "100ms", "maxDelay": "30s"}})
    wait_for("Degraded=False again", lambda: cluster.condition("Degraded").get("status") == "False")
    assert cluster.get("configmap", config_map)["data"] == data


@pytest.mark.parametrize("store, reason", [("redis", "RedisUnavailable"), ("postgresql", "PostgresUnavailable")])
def test_a_store_that_is_down_turns_the_cache_degraded_until_it_is_back(release, cluster: Cluster, store, reason):
    cluster.wait_cache_ready()
    statefulset = f"statefulset/{cluster.release}-{store}"
    cluster.kubectl("scale", statefulset, "--replicas=0")
    try:
        degraded = wait_for(f"Degraded=True {reason}",
                            lambda: (c := cluster.condition("Degraded")).get("reason") == reason and c, timeout=120)
        log(f"Degraded: {degraded['message']}")
        assert degraded["status"] == "True" and "unreachable from" in degraded["message"], degraded
        table = cluster.kubectl("get", "wbc", cluster.release).stdout
        assert table.split("\n")[1].split()[4] == "True", f"the DEGRADED column says otherwise:\n{table}"
        status, body = cluster.http("POST", "/products", {"name": f"while {store} is down", "price": 1, "quantity": 1})
        if store == "redis":
            assert status == 503, f"a write without Redis is refused, not lost: {status} {body}"
        else:
            assert status == 201, f"write-behind accepts writes while PostgreSQL is down: {status} {body}"
    finally:
        cluster.kubectl("scale", statefulset, "--replicas=1")
    wait_for(f"Degraded=False after {store} is back",
             lambda: cluster.condition("Degraded").get("status") == "False", timeout=180)
    reasons = [e.get("reason") for e in cluster.events()]
    assert reason in reasons and "Recovered" in reasons, reasons
    described = cluster.kubectl("describe", "wbc", cluster.release).stdout
    assert reason in described and "Recovered" in described, described
    wait_for("the API to serve writes again",
             lambda: cluster.http("PUT", f"/products/after-{store}", {"name": "back", "price": 1, "quantity": 1})[0]
             == 200, timeout=120)


def test_a_loss_of_redis_data_is_one_warning_event_and_shows_in_the_status(release, cluster: Cluster):
    def data_loss() -> dict:
        return (cluster.cache().get("status") or {}).get("dataLoss") or {}

    def seq() -> int:
        rows = cluster.psql("SELECT value FROM wbc_meta WHERE key = 'seq'")
        return int(rows[0][0]) if rows else -1

    def announced() -> list[dict]:
        return [e for e in cluster.events() if e.get("reason") == "DataLossDetected"]

    cluster.wait_cache_ready()
    before, counted = data_loss().get("count", 0), seq()
    for i in range(3):
        status, body = cluster.http("PUT", f"/products/loss-{i}", {"name": "doomed", "price": 1, "quantity": 1})
        assert status == 200, body
    wait_for("the worker to count the writes", lambda: seq() >= counted + 3, timeout=60)
    cluster.kubectl("exec", f"{cluster.release}-redis-0", "-c", "redis", "--", "redis-cli", "FLUSHALL")
    loss = wait_for("status.dataLoss to count the loss", lambda: data_loss().get("count", 0) > before and data_loss(),
                    timeout=90)
    log(f"dataLoss: {loss}")
    assert loss["count"] == before + 1 and loss["atLeastWrites"] >= 3 and loss["lastDetectedAt"], loss
    events = wait_for("one DataLossDetected event per loss", lambda: len(announced()) == loss["count"] and announced(),
                      timeout=30)
    assert all(e["type"] == "Warning" for e in events), events
    assert any("at least" in (e.get("message") or e.get("note") or "") for e in events), events
    table = cluster.kubectl("get", "wbc", cluster.release, "-o", "wide").stdout
    assert "DATA LOSSES" in table, table
    # two more probes (every 10 s) find the same record: nothing more is announced
    time.sleep(25)
    assert len(announced()) == loss["count"], announced()
