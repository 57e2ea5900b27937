"""The `helm test` Pod's script, run here against a stand-in of the API on loopback: it passes when a
write reads back and the admin endpoints take the mounted admin token and refuse a request without
it, and fails when either does not hold. (Its image is busybox; GNU wget takes the same options.)"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
import shutil
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import one, render

pytestmark = pytest.mark.skipif(not (shutil.which("wget") and shutil.which("sh")), reason="needs sh and wget")


ADMIN_TOKEN = "stand-in-admin-token-0123456789"


def stand_in(corrupt: bool, admin_open: bool = False):
    products: dict[str, dict] = {}

    class Api(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status: int, body: dict):
            data = json.dumps(body, separators=(",", ":")).encode()  # compact, like axum's Json
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/healthz":
                return self.answer(200, {"status": "ok"})
            if self.path == "/admin/queue":
                if admin_open or self.headers.get("Authorization") == f"Bearer {ADMIN_TOKEN}":
                    return self.answer(200, {"queue_size": 0})
                return self.answer(401, {"error": "authorization: missing", "field": "authorization"})
            match = re.fullmatch(r"/products/([^/]+)", self.path)
            if match and match[1] in products:
                product = dict(products[match[1]])
                if corrupt:
                    product["name"] = "something else"
                return self.answer(200, {**product, "source": "cache"})
            self.answer(404, {"error": "not found"})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            assert self.headers["Content-Type"] == "application/json"
            product = {"id": str(uuid.uuid4()), **body, "version": 1}
            products[product["id"]] = product
            self.answer(201, {**product, "source": "cache"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_script(corrupt: bool, admin_open: bool = False) -> subprocess.CompletedProcess:
    pod = one(render(), "Pod", "wbc-test-api")
    script = pod["spec"]["containers"][0]["args"][0]
    server = stand_in(corrupt, admin_open)
    try:
        with tempfile.TemporaryDirectory() as tokens:
            (Path(tokens) / "admin-token").write_text(ADMIN_TOKEN)
            local = re.sub(r'^base=".*"$', f'base="http://127.0.0.1:{server.server_port}"', script, flags=re.M)
            local = re.sub(r'^tokens=".*"$', f'tokens="{tokens}"', local, flags=re.M)
            return subprocess.run(["sh", "-c", local], capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()


def test_the_helm_test_passes_when_a_write_reads_back():
    result = run_script(corrupt=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: the API is healthy and a write reads back" in result.stdout


def test_the_helm_test_fails_when_the_read_differs_from_the_write():
    result = run_script(corrupt=True)
    assert result.returncode != 0
    assert "does not return what was written" in result.stdout


def test_the_helm_test_fails_when_the_admin_endpoints_answer_without_a_token():
    result = run_script(corrupt=False, admin_open=True)
    assert result.returncode != 0
    assert "/admin/queue answered without a token" in result.stdout
