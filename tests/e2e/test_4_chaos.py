"""Pod-kill chaos: while a mixed load runs through the API's Service, force-delete random worker, API,
controller, Redis and PostgreSQL pods, then check every acknowledged write against PostgreSQL.
Sized by WBC_CHAOS_DURATION (s), WBC_CHAOS_INTERVAL (s between kills), WBC_CHAOS_WRITERS, WBC_CHAOS_KEYS
and WBC_CHAOS_RATE (writes/s in all; the control plane shares the machine with the load)
(`make chaos-k8s DURATION=… INTERVAL=… WRITERS=… KEYS=… RATE=…`)."""
from __future__ import annotations

import os
import random
import time
import uuid

from cluster import Cluster, log, uids, wait_for
from load import Load, verify, wait_drained

# every component is killed once before any is killed twice
TARGETS = ["worker", "api", "redis", "controller", "postgresql"]


def size(name: str, default: int) -> int:
    raw = os.environ.get(f"WBC_CHAOS_{name}", str(default))
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"WBC_CHAOS_{name}={raw!r}: expected a whole number of at least 1")
    return int(raw)


def kill(cluster: Cluster, component: str, rng: random.Random) -> tuple[str, float]:
    """Force-deletes one ready pod of `component`; returns its name and the seconds until the component
    is whole again (as many ready pods, none of them the killed one) and a probe write is acknowledged."""
    pods = wait_for(f"a ready {component} pod", lambda: cluster.live_pods(component), timeout=180)
    want = len(pods)
    victim = rng.choice(pods)
    name, uid = victim["metadata"]["name"], victim["metadata"]["uid"]
    began = time.monotonic()
    cluster.kubectl("delete", "pod", name, "--grace-period=0", "--force", "--wait=false")

    def whole():
        live = cluster.live_pods(component)
        return len(live) >= want and uid not in uids(live)
    wait_for(f"{component} to replace {name}", whole, timeout=240)
    probe = {"name": f"probe {uuid.uuid4().hex[:6]}", "price": 1, "quantity": 1}
    wait_for("a probe write to be acknowledged",
             lambda: cluster.http("PUT", "/products/chaos-probe", probe, timeout=5)[0] == 200, timeout=240)
    return name, time.monotonic() - began


def test_killing_pods_under_load_loses_no_acknowledged_write(release, cluster: Cluster, tmp_path):
    duration, interval = size("DURATION", 60), size("INTERVAL", 8)
    writers, keys, rate = size("WRITERS", 4), size("KEYS", 300), size("RATE", 200)
    rng = random.Random(int(os.environ.get("WBC_CHAOS_SEED", "7")))
    cluster.wait_cache_ready()
    faults = []
    with Load(cluster.api_url, writers=writers, keys=keys, rate=rate) as load:
        end = time.monotonic() + duration
        while time.monotonic() < end or len(faults) < len(TARGETS):
            component = TARGETS[len(faults)] if len(faults) < len(TARGETS) else rng.choice(TARGETS)
            name, seconds = kill(cluster, component, rng)
            faults.append((component, name, seconds))
            log(f"killed {name}: whole again and writing after {seconds:.1f} s")
            time.sleep(interval)
    reasons = load.ledger.failure_reasons()
    drain = wait_drained(cluster, timeout=300)
    verdict = verify(cluster, load.ledger, tmp_path)
    log(f"chaos: {len(faults)} pods killed in {duration} s with {writers} writers over {keys} keys")
    for component in TARGETS:
        times = [s for c, _, s in faults if c == component]
        if times:
            log(f"  {component:<11} killed {len(times)}x, recovered in {', '.join(f'{t:.1f}' for t in times)} s")
    log(f"  writes acknowledged {load.ledger.acked}, failed {sum(reasons.values())} {reasons}")
    log(f"  queue drained {drain:.1f} s after the load")
    log(f"wbc-verify: {verdict.summary}")
    assert verdict.holds, verdict.violations
