"""The verdict's plumbing without a cluster: load.py's Load and Ledger against a fake API, dumped and judged
by the `wbc-verify` binary that $WBC_VERIFY names (scripts/k8s/e2e.sh builds it and runs this file first,
before any node). The rules themselves are tested in Rust (wbc-core's testkit)."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from load import Ledger, Load, verifier, verify

# every so many writes the fake API applies the write but drops the answer, as a dying pod would
DROP_EVERY = 7


class FakeApi(ThreadingHTTPServer):
    """Applies creates, replaces and deletes to `rows` (as PostgreSQL would hold them) with rising
    versions, and answers as the API does, except that every DROP_EVERY-th answer is lost."""
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.rows: dict[str, dict] = {}
        self.writes = 0

    def apply(self, id_: str, fields: dict | None) -> tuple[int, bool]:
        with self.lock:
            self.writes += 1
            row = {"id": id_, "name": "", "price": 0.0, "quantity": 0, "version": self.writes, "deleted": True}
            self.rows[id_] = row | (dict(fields, deleted=False) if fields else {})
            return self.writes, self.writes % DROP_EVERY == 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _write(self, id_: str, fields: dict | None, status: int) -> None:
        version, drop = self.server.apply(id_, fields)
        if drop:
            self.close_connection = True
            return
        body = json.dumps({"id": id_, "version": version}).encode()
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _fields(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["content-length"])))

    def do_POST(self) -> None:
        self._write(f"new-{time.monotonic_ns()}", self._fields(), 201)

    def do_PUT(self) -> None:
        self._write(self.path.rsplit("/", 1)[1], self._fields(), 200)

    def do_DELETE(self) -> None:
        self._write(self.path.rsplit("/", 1)[1], None, 200)


class FakeCluster:
    """What verify() asks of a cluster: psql with the query wbc-verify prints, and GET /admin/dlq."""

    def __init__(self, rows: dict[str, dict], dead_letters: list[dict], count: int | None = None) -> None:
        self.rows, self.dead_letters = rows, dead_letters
        self.count = len(dead_letters) if count is None else count

    def psql(self, sql: str) -> list[list[str]]:
        assert sql.startswith("SELECT row_to_json(r) FROM ("), sql
        return [[json.dumps(row)] for row in self.rows.values()]

    def http(self, method: str, path: str) -> tuple[int, dict]:
        assert (method, path) == ("GET", "/admin/dlq?limit=10000")
        return 200, {"count": self.count, "dead_letters": self.dead_letters}


def letter(id_: str, version: int, error: str = "23514: violates check constraint") -> dict:
    return {"id": id_, "version": version, "deleted": True, "value": None, "error": error, "attempts": 3,
            "failed_at_ms": 1}


def test_a_load_recorded_by_load_py_is_read_and_judged_by_wbc_verify(tmp_path):
    api = FakeApi()
    threading.Thread(target=api.serve_forever, daemon=True).start()
    try:
        with Load(f"http://127.0.0.1:{api.server_address[1]}", writers=3, keys=20, timeout=5) as load:
            time.sleep(1)
    finally:
        api.shutdown()
    verdict = verify(FakeCluster(api.rows, []), load.ledger, tmp_path)
    assert verdict.holds, verdict.summary
    reasons = load.ledger.failure_reasons()
    assert verdict.json["acknowledged_writes"] == load.ledger.acked > 0
    assert verdict.json["unsure_writes"] > 0, f"no answer was lost: {reasons}"
    assert verdict.json["checked"] == verdict.json["ok"] + verdict.json["overwritten_by_unacked"], verdict.json


def test_a_write_neither_in_postgresql_nor_dead_lettered_fails_the_verdict(tmp_path):
    ledger = Ledger()
    ledger.ack("kept", 3, ("widget", 9.99, 3))
    ledger.ack("parked", 4, None)
    ledger.fail("parked", ("late", 1.0, 1), "timeout")
    rows = {"kept": {"id": "kept", "name": "widget", "price": 9.99, "quantity": 3, "version": 3, "deleted": False}}
    verdict = verify(FakeCluster(rows, [letter("parked", 4)]), ledger, tmp_path)
    assert verdict.holds and verdict.json["dead_lettered"] == 1, verdict.summary
    verdict = verify(FakeCluster(rows, [letter("parked", 4, error="")]), ledger, tmp_path)
    assert verdict.violations == ["dead letters without reason 1 (e.g. parked v4)"], verdict.summary
    verdict = verify(FakeCluster(rows, []), ledger, tmp_path)
    assert not verdict.holds and verdict.json["lost"] == ["parked: acked v4 None, row None"], verdict.summary


def test_a_truncated_dead_letter_listing_is_refused_rather_than_judged(tmp_path):
    ledger = Ledger()
    ledger.ack("k", 1, None)
    with pytest.raises(AssertionError, match=r"could not judge \(exit 2.*lists 1 of 2 letters"):
        verify(FakeCluster({}, [letter("k", 1)], count=2), ledger, tmp_path)


def test_without_wbc_verify_the_verdict_fails_instead_of_skipping(monkeypatch, tmp_path):
    monkeypatch.delenv("WBC_VERIFY", raising=False)
    with pytest.raises(AssertionError, match="WBC_VERIFY is not set"):
        verifier()
    monkeypatch.setenv("WBC_VERIFY", str(tmp_path / "wbc-verify"))
    with pytest.raises(AssertionError, match="is not an executable file"):
        verifier()
