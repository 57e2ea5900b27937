"""The cluster under test: kubectl, Helm's own engine (helm-python-sdk), the API through its Service
and PostgreSQL through `kubectl exec`. Nothing here knows whether the cluster is kind or the local node."""
from __future__ import annotations

import base64
import csv
import http.client
import io
import json
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "chart"))
import chartgen  # noqa: E402  (the chart without its absent optional dependencies)

T = TypeVar("T")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 180, interval: float = 0.5) -> T:
    """Calls `probe` until it returns something truthy; fails naming `what` and the last error."""
    deadline, last = time.monotonic() + timeout, None
    while True:
        try:
            value = probe()
            if value:
                return value
        except (subprocess.CalledProcessError, OSError, ValueError, KeyError) as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")
        time.sleep(interval)


def deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class Cluster:
    kubeconfig: str
    namespace: str
    api_url: str
    values: dict[str, Any]
    release: str = "wbc"
    # the admin token once read; a new install makes a new one
    _admin_token: str | None = None

    # ---- kubectl ------------------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60, check: bool = True,
                namespaced: bool = True) -> subprocess.CompletedProcess:
        cmd = ["kubectl", f"--kubeconfig={self.kubeconfig}"]
        if namespaced:
            cmd.append(f"--namespace={self.namespace}")
        done = subprocess.run(cmd + list(args), input=input, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, cmd + list(args), done.stdout, done.stderr)
        return done

    def get(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def pods(self, component: str | None = None) -> list[dict]:
        selector = f"app.kubernetes.io/instance={self.release}"
        if component:
            selector += f",app.kubernetes.io/component={component}"
        return self.get("pods", "-l", selector)["items"]

    def live_pods(self, component: str) -> list[dict]:
        """Pods that are running, ready and not being deleted."""
        return [p for p in self.pods(component) if not p["metadata"].get("deletionTimestamp") and is_ready(p)]

    def cache(self) -> dict:
        return self.get("writebehindcache", self.release)

    def condition(self, type_: str) -> dict:
        conditions = (self.cache().get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), {})

    def events(self) -> list[dict]:
        items = self.get("events", "--field-selector", f"involvedObject.name={self.release}")["items"]
        return [e for e in items if e["involvedObject"].get("kind") == "WriteBehindCache"]

    def events_since(self, since: str) -> list[tuple[str, str]]:
        """(reason, message) of the cache's events created or repeated at or after `since`
        (YYYY-MM-DDTHH:MM:SS): a repeated event updates its series instead of making a new object."""
        def last(e: dict) -> str:
            times = [e["metadata"].get("creationTimestamp"), e.get("lastTimestamp"), e.get("eventTime"),
                     (e.get("series") or {}).get("lastObservedTime")]
            return max(t[:19] for t in times if t)
        return [(e.get("reason"), e.get("message") or e.get("note") or "") for e in self.events() if last(e) >= since]

    def wait_cache_ready(self, timeout: float = 300) -> dict:
        def ready():
            cache = self.cache()
            status = cache.get("status") or {}
            fresh = status.get("observedGeneration") == cache["metadata"]["generation"]
            return fresh and self.condition("Ready").get("status") == "True" and cache
        return wait_for("the WriteBehindCache to be Ready", ready, timeout)

    def wait_rolled_out(self, timeout: float = 300) -> None:
        for name in ("api", "worker"):
            self.kubectl("rollout", "status", f"deployment/{self.release}-{name}", f"--timeout={int(timeout)}s",
                         timeout=timeout + 10)

    # ---- Helm ---------------------------------------------------------------------------------
    def _helm(self):
        import helm_python  # one Config per action: a Config keeps state from its previous action
        return helm_python.Config(kubeconfig_path=self.kubeconfig, namespace=self.namespace)

    @staticmethod
    def _chart(values: dict):
        return chartgen.offline_chart(values)

    def install(self, extra: dict | None = None, timeout: int = 600):
        values = deep_merge(self.values, extra or {})
        self._admin_token = None
        return self._helm().install(self._chart(values), self.release, values, namespace=self.namespace,
                                    create_namespace=True, wait="watcher", timeout=timeout)

    def upgrade(self, extra: dict, timeout: int = 600):
        values = deep_merge(self.values, extra)
        return self._helm().upgrade(self._chart(values), self.release, values, namespace=self.namespace,
                                    wait="watcher", timeout=timeout)

    def helm_test(self, timeout: int = 300):
        return self._helm().test(self.release, timeout=timeout, logs=True)

    def uninstall(self, timeout: int = 300):
        return self._helm().uninstall(self.release, wait="watcher", timeout=timeout, ignore_not_found=True)

    # ---- the API, from outside the cluster ----------------------------------------------------
    def admin_token(self) -> str:
        """The admin token the chart generated, read from its Secret as NOTES.txt says."""
        out = self.kubectl("get", "secret", f"{self.release}-api-tokens", "-o", "jsonpath={.data.admin-token}").stdout
        return base64.b64decode(out).decode()

    def http(self, method: str, path: str, body: Any = None, timeout: float = 10,
             token: str | None = None) -> tuple[int, Any]:
        """One request; /admin/* carries the release's admin token unless `token` names another ("" none)."""
        url = urllib.parse.urlsplit(self.api_url)
        headers = {"content-type": "application/json"} if body is not None else {}
        if token is None and path.startswith("/admin/"):
            if self._admin_token is None:
                self._admin_token = self.admin_token()
            token = self._admin_token
        if token:
            headers["authorization"] = f"Bearer {token}"
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout)
        try:
            payload = None if body is None else json.dumps(body)
            conn.request(method, path, payload, headers)
            resp = conn.getresponse()
            raw = resp.read()
            try:
                return resp.status, json.loads(raw)
            except ValueError:
                return resp.status, raw.decode(errors="replace")
        finally:
            conn.close()

    # ---- PostgreSQL, through kubectl exec ------------------------------------------------------
    def psql(self, sql: str, timeout: float = 60) -> list[list[str]]:
        """Rows of `sql` (CSV through psql in the PostgreSQL pod, with the pod's own credentials)."""
        script = ('PGPASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")" '
                  'psql -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v ON_ERROR_STOP=1 -q -c "$0"')
        copy = f"COPY ({sql}) TO STDOUT WITH CSV"
        out = self.kubectl("exec", f"{self.release}-postgresql-0", "-c", "postgresql", "--", "sh", "-c", script, copy,
                           timeout=timeout).stdout
        return list(csv.reader(io.StringIO(out)))


def is_ready(pod: dict) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def uids(pods: list[dict]) -> set[str]:
    return {p["metadata"]["uid"] for p in pods}
