#!/usr/bin/env python3
"""Generates the Grafana dashboard of wbc (grafana/wbc.json) from the panel list below.

    python3 observability/dashboard.py          # writes grafana/wbc.json
    python3 observability/dashboard.py --check  # fails if the committed file differs
"""
import json
import pathlib
import sys

OUT = pathlib.Path(__file__).parent / "grafana" / "wbc.json"
DS = {"type": "prometheus", "uid": "${datasource}"}

# (title, panel type, unit, [(legend, expr)], description)
PANELS = [
    ("Write queue size", "timeseries", "short", [
        ("dirty keys", "max(wbc_queue_dirty_keys)"),
        ("in flight", "max(wbc_queue_in_flight_keys)"),
    ], "Keys waiting to be flushed (coalesced: one per key), and keys a worker is flushing."),
    ("Data at risk: oldest unpersisted write", "timeseries", "s", [
        ("oldest unpersisted write", "max(wbc_queue_oldest_unpersisted_age_seconds)"),
        ("persistence lag p99", "histogram_quantile(0.99, sum by (le) (rate(wbc_worker_persistence_lag_seconds_bucket[1m])))"),
    ], "How long acknowledged writes have been waiting for PostgreSQL: the window a Redis loss would cost."),
    ("API latency", "timeseries", "s", [
        ("p50", 'histogram_quantile(0.5, sum by (le) (rate(wbc_http_request_duration_seconds_bucket{route=~"/products.*"}[1m])))'),
        ("p99", 'histogram_quantile(0.99, sum by (le) (rate(wbc_http_request_duration_seconds_bucket{route=~"/products.*"}[1m])))'),
    ], "Latency of product requests."),
    ("Cache hit rate", "timeseries", "percentunit", [
        ("hit rate", "sum(rate(wbc_cache_hits_total[1m])) / (sum(rate(wbc_cache_hits_total[1m])) + sum(rate(wbc_cache_misses_total[1m])))"),
    ], "Reads answered by Redis, against those that fell back to PostgreSQL."),
    ("Worker write rate", "timeseries", "rowsps", [
        ("rows persisted", "sum(rate(wbc_worker_rows_persisted_total[1m]))"),
        ("rows skipped as stale", "sum(rate(wbc_worker_rows_stale_total[1m]))"),
    ], "Rows committed to PostgreSQL per second."),
    ("Writes coalesced", "timeseries", "wps", [
        ("coalesced", "sum(rate(wbc_writes_coalesced_total[1m]))"),
        ("accepted", "sum(rate(wbc_writes_total[1m]))"),
    ], "Writes that replaced a queued write of the same key, so they cost no database write."),
    ("Retries", "timeseries", "ops", [
        ("{{class}}", "sum by (class) (rate(wbc_worker_retries_total[1m]))"),
    ], "Transient retries are whole batches (database down); permanent ones are single refused records."),
    ("Dead letters", "timeseries", "short", [
        ("in the dead-letter queue", "max(wbc_queue_dead_letters)"),
        ("dead-lettered (5m)", 'sum(increase(wbc_worker_records_total{outcome="dead_lettered"}[5m]))'),
    ], "Records that kept failing; GET /admin/dlq lists them, POST /admin/dlq/replay retries them."),
    ("Data-loss events", "stat", "short", [
        ("detected (24h)", "sum(increase(wbc_data_loss_detected_total[24h]))"),
    ], "Times Redis lost its data (FLUSHALL, restart without persistence). Anything above 0 needs a look."),
    ("Mode in effect", "stat", "none", [
        ("{{mode}}", "max by (mode) (wbc_mode_info)"),
    ], "The write mode the API runs with."),
    ("Writes by mode and rejections", "timeseries", "wps", [
        ("{{mode}} {{op}}", "sum by (mode, op) (rate(wbc_writes_total[1m]))"),
        ("rejected: {{reason}}", "sum by (reason) (rate(wbc_writes_rejected_total[1m]))"),
    ], "Acknowledged writes by how they were carried, and refused writes by reason."),
    ("Flush duration and batch size", "timeseries", "s", [
        ("flush p99", "histogram_quantile(0.99, sum by (le) (rate(wbc_worker_flush_duration_seconds_bucket[1m])))"),
        ("mean batch size", "sum(rate(wbc_worker_batch_size_sum[1m])) / sum(rate(wbc_worker_batch_size_count[1m]))"),
    ], "Time to upsert and acknowledge one batch, and keys per batch."),
    ("Queue fill", "gauge", "percentunit", [
        ("fill", "max(wbc_queue_dirty_keys) / max(wbc_queue_capacity_keys)"),
    ], "Dirty keys against QUEUE_CAPACITY; at 100% the overflow policy applies."),
]


def panel(i, title, kind, unit, targets, description):
    return {
        "id": i + 1,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
        "targets": [
            {"refId": chr(65 + j), "datasource": DS, "expr": expr, "legendFormat": legend}
            for j, (legend, expr) in enumerate(targets)
        ],
    }


def dashboard():
    return {
        "uid": "wbc-pipeline",
        "title": "wbc write-behind pipeline",
        "tags": ["wbc"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "5s",
        "time": {"from": "now-15m", "to": "now"},
        "templating": {"list": [{
            "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0,
        }]},
        "panels": [panel(i, *p) for i, p in enumerate(PANELS)],
    }


def main():
    text = json.dumps(dashboard(), indent=2) + "\n"
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            sys.exit(f"{OUT} is out of date: run python3 observability/dashboard.py")
        return
    OUT.write_text(text)


if __name__ == "__main__":
    main()
