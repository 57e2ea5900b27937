"""A steady mixed write load through the API's Service that records every acknowledged write, and the
check of those writes against PostgreSQL (the same ledger and verdict as worker/tests/chaos.rs)."""
from __future__ import annotations

import collections
import decimal
import http.client
import json
import random
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

HOT_KEYS = 20


@dataclass
class KeyLog:
    acked: tuple[int, tuple | None] | None = None  # (version, fields or None for a delete)
    unsure: list = field(default_factory=list)  # failed writes that may still have been applied


@dataclass
class Failure:
    at: float
    reason: str


class Ledger:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: dict[str, KeyLog] = {}
        self.acked = 0
        self.failures: list[Failure] = []

    def ack(self, id_: str, version: int, fields: tuple | None) -> None:
        with self.lock:
            self.acked += 1
            log = self.keys.setdefault(id_, KeyLog())
            if log.acked is None or version > log.acked[0]:
                log.acked = (version, fields)

    def fail(self, id_: str | None, fields: tuple | None, reason: str) -> None:
        with self.lock:
            self.failures.append(Failure(time.monotonic(), reason))
            if id_ is not None:
                self.keys.setdefault(id_, KeyLog()).unsure.append(fields)

    def failures_between(self, start: float, end: float) -> list[Failure]:
        with self.lock:
            return [f for f in self.failures if start <= f.at <= end]

    def failure_reasons(self) -> dict[str, int]:
        with self.lock:
            return dict(collections.Counter(f.reason for f in self.failures))


class Load:
    """`writers` threads writing as fast as the API answers, or at `rate` writes/s in all. Each keeps
    one HTTP/1.1 connection and reconnects when the server closes it."""

    def __init__(self, api_url: str, writers: int = 4, keys: int = 200, rate: float | None = None,
                 seed: int = 1, timeout: float = 10) -> None:
        self.url = urllib.parse.urlsplit(api_url)
        self.writers, self.keys, self.rate, self.timeout = writers, keys, rate, timeout
        self.ledger = Ledger()
        self.stop_flag = threading.Event()
        self.threads = [threading.Thread(target=self._writer, args=(w, random.Random(seed * 1000 + w)), daemon=True)
                        for w in range(writers)]
        self.started = 0.0

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=self.timeout + 5)

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.url.hostname, self.url.port or 80, timeout=self.timeout)

    def _writer(self, w: int, rng: random.Random) -> None:
        conn, seq = self._connect(), 0
        pause = self.writers / self.rate if self.rate else 0.0
        while not self.stop_flag.is_set():
            seq += 1
            id_, fields = self._next(rng, w, seq)
            began = time.monotonic()
            conn = self._write(conn, id_, fields)
            if pause:
                time.sleep(max(0.0, pause - (time.monotonic() - began)))
        conn.close()

    def _next(self, rng: random.Random, w: int, seq: int) -> tuple[str | None, tuple | None]:
        fields = (f"w{w}-{seq}", decimal.Decimal(seq % 100_000).scaleb(-2), seq)
        any_key = f"k-{rng.randrange(self.keys)}"
        roll = rng.randrange(100)
        if roll < 10:
            return None, fields
        if roll < 50:
            return f"k-{rng.randrange(min(self.keys, HOT_KEYS))}", fields
        if roll < 85:
            return any_key, fields
        return any_key, None

    def _write(self, conn: http.client.HTTPConnection, id_: str | None, fields: tuple | None):
        if fields is None:
            method, path, body = "DELETE", f"/products/{id_}", None
        else:
            name, price, quantity = fields
            # The price as its decimal text, never through a binary float.
            body = '{"name": %s, "price": %s, "quantity": %d}' % (json.dumps(name), price, quantity)
            method, path = ("POST", "/products") if id_ is None else ("PUT", f"/products/{id_}")
        try:
            conn.request(method, path, body, {"content-type": "application/json"} if body else {})
            resp = conn.getresponse()
            raw = resp.read()
            if resp.will_close:
                conn.close()
                conn = self._connect()
            if not 200 <= resp.status < 300:
                self.ledger.fail(id_, fields, f"HTTP {resp.status}")
                time.sleep(0.02)
                return conn
            answer = json.loads(raw)
            acked_id, version = answer.get("id"), answer.get("version")
            if not isinstance(acked_id, str) or not isinstance(version, int) or (id_ and acked_id != id_):
                self.ledger.fail(id_, fields, "2xx without its id or version")
                return conn
            self.ledger.ack(acked_id, version, fields)
        except (OSError, http.client.HTTPException, ValueError) as e:
            self.ledger.fail(id_, fields, f"{type(e).__name__}")
            conn.close()
            conn = self._connect()
            time.sleep(0.02)
        return conn


@dataclass
class Verdict:
    checked: int = 0
    lost: list = field(default_factory=list)
    corrupt: list = field(default_factory=list)
    unacked_applied: int = 0
    in_dead_letters: int = 0

    def summary(self) -> str:
        return (f"checked {self.checked} keys: lost {len(self.lost)}, older-over-newer or corrupt "
                f"{len(self.corrupt)}, unacknowledged-but-applied {self.unacked_applied}, "
                f"dead-lettered {self.in_dead_letters}")


def holds(row: tuple, fields: tuple | None) -> bool:
    name, price, quantity, _version, deleted = row
    if fields is None:
        return deleted
    want_name, want_price, want_quantity = fields
    return not deleted and name == want_name and price == want_price and quantity == want_quantity


def judge(ledger: Ledger, rows: dict[str, tuple], dead_letters: dict[str, list[int]]) -> Verdict:
    """Sorts every acknowledged key into ok, lost, corrupt (an older or foreign value over the
    acknowledged one), dead-lettered, or overwritten by a write whose answer was lost."""
    v = Verdict()
    for id_, log in ledger.keys.items():
        if log.acked is None:
            continue
        v.checked += 1
        version, fields = log.acked
        row = rows.get(id_)
        if row and row[3] == version and holds(row, fields):
            continue
        if row and row[3] == version:
            v.corrupt.append(f"{id_}: acked v{version} {fields}, row {row}")
        elif row and row[3] > version and any(holds(row, f) for f in log.unsure):
            v.unacked_applied += 1
        elif row and row[3] > version:
            v.corrupt.append(f"{id_}: acked v{version}, newer row of no write {row}")
        elif any(dv >= version for dv in dead_letters.get(id_, [])):
            v.in_dead_letters += 1
        else:
            v.lost.append(f"{id_}: acked v{version} {fields}, row {row}")
    return v


def verify(cluster, ledger: Ledger) -> Verdict:
    """Reads every product row and every dead letter, and judges the ledger against them."""
    rows = {}
    for id_, name, price, quantity, version, deleted in cluster.psql(
            "SELECT id, name, price::text, quantity, version, deleted FROM products"):
        rows[id_] = (name, decimal.Decimal(price), int(quantity), int(version), deleted == "t")
    status, body = cluster.http("GET", "/admin/dlq?limit=10000")
    assert status == 200, f"GET /admin/dlq answered {status}: {body}"
    dead_letters: dict[str, list[int]] = {}
    for d in body["dead_letters"]:
        dead_letters.setdefault(d["id"], []).append(d["version"])
    return judge(ledger, rows, dead_letters)


def wait_drained(cluster, timeout: float = 180) -> float:
    """Seconds until no acknowledged write waits in Redis."""
    from cluster import wait_for

    began = time.monotonic()

    def drained():
        status, q = cluster.http("GET", "/admin/queue")
        return status == 200 and q["queue_size"] == 0 and q.get("in_flight", 0) == 0
    wait_for("the queue to drain", drained, timeout)
    return time.monotonic() - began
