"""A steady mixed write load through the API's Service that records every write in a ledger, and the
verdict on those writes, which `wbc-verify` reaches with the rules of wbc-core's testkit (the same
as worker/tests/chaos.rs): this file records and dumps, it never judges."""
from __future__ import annotations

import collections
import http.client
import json
import os
import random
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

HOT_KEYS = 20


@dataclass
class Failure:
    at: float
    reason: str


def as_fields(fields: tuple | None) -> dict | None:
    """A write's (name, price, quantity) as the ledger spells it; None for a delete."""
    if fields is None:
        return None
    name, price, quantity = fields
    return {"name": name, "price": price, "quantity": quantity}


class Ledger:
    """Every write of a load with an id, as the JSON lines that `wbc-verify --ledger` reads: the
    acknowledged ones with their versions, and the failed ones, which may still have been applied."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[dict] = []
        self.acked = 0
        self.failures: list[Failure] = []

    def ack(self, id_: str, version: int, fields: tuple | None) -> None:
        with self.lock:
            self.acked += 1
            self.entries.append({"outcome": "acked", "id": id_, "version": version, "fields": as_fields(fields)})

    def fail(self, id_: str | None, fields: tuple | None, reason: str) -> None:
        with self.lock:
            self.failures.append(Failure(time.monotonic(), reason))
            if id_ is not None:
                self.entries.append({"outcome": "unsure", "id": id_, "fields": as_fields(fields), "reason": reason})

    def failures_between(self, start: float, end: float) -> list[Failure]:
        with self.lock:
            return [f for f in self.failures if start <= f.at <= end]

    def failure_reasons(self) -> dict[str, int]:
        with self.lock:
            return dict(collections.Counter(f.reason for f in self.failures))

    def write(self, path: Path) -> None:
        with self.lock:
            path.write_text("".join(json.dumps(e) + "\n" for e in self.entries))


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
        fields = (f"w{w}-{seq}", (seq % 100_000) / 100, seq)
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
            body = json.dumps({"name": name, "price": price, "quantity": quantity})
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


def verifier() -> str:
    """The `wbc-verify` binary that $WBC_VERIFY names (scripts/k8s/e2e.sh and scripts/kind/kind.sh build it
    and set it); without it there is no verdict, so the test fails rather than skips."""
    exe = os.environ.get("WBC_VERIFY", "")
    if not exe:
        raise AssertionError("WBC_VERIFY is not set: it names the wbc-verify binary (`cargo build -p wbc-worker "
                             "--features testkit --bin wbc-verify`; scripts/k8s/e2e.sh builds and sets it)")
    if not os.access(exe, os.X_OK):
        raise AssertionError(f"WBC_VERIFY={exe!r} is not an executable file: build it with `cargo build -p "
                             "wbc-worker --features testkit --bin wbc-verify`")
    return exe


@dataclass
class Verdict:
    """What `wbc-verify` found: its JSON verdict, and its summary for people."""
    json: dict
    summary: str

    @property
    def holds(self) -> bool:
        return self.json["holds"]

    @property
    def violations(self) -> list[str]:
        return self.json["violations"]


def verify(cluster, ledger: Ledger, workdir: Path) -> Verdict:
    """Dumps into `workdir` the ledger, every product row (through psql, with the query `wbc-verify`
    prints) and every dead letter (GET /admin/dlq), and has `wbc-verify` judge them."""
    exe = verifier()
    query = subprocess.run([exe, "--rows-query"], capture_output=True, text=True, check=True, timeout=30).stdout
    rows = cluster.psql(query.strip())
    status, listing = cluster.http("GET", "/admin/dlq?limit=10000")
    assert status == 200, f"GET /admin/dlq answered {status}: {listing}"
    files = {"--ledger": workdir / "ledger.jsonl", "--rows": workdir / "rows.jsonl",
             "--dead-letters": workdir / "dead-letters.json"}
    ledger.write(files["--ledger"])
    files["--rows"].write_text("".join(row[0] + "\n" for row in rows))
    files["--dead-letters"].write_text(json.dumps(listing))
    args = [exe] + [str(a) for pair in files.items() for a in pair]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if done.returncode not in (0, 1):
        raise AssertionError(f"wbc-verify could not judge (exit {done.returncode}, files in {workdir}): {done.stderr}")
    verdict = Verdict(json.loads(done.stdout), done.stderr.strip())
    assert verdict.holds == (done.returncode == 0), f"wbc-verify exit {done.returncode} disagrees with {verdict.json}"
    return verdict


def wait_drained(cluster, timeout: float = 180) -> float:
    """Seconds until no acknowledged write waits in Redis."""
    from cluster import wait_for

    began = time.monotonic()

    def drained():
        status, q = cluster.http("GET", "/admin/queue")
        return status == 200 and q["queue_size"] == 0 and q.get("in_flight", 0) == 0
    wait_for("the queue to drain", drained, timeout)
    return time.monotonic() - began
