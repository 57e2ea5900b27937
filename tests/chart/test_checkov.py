"""The security scan: checkov (in a venv of its own) checks the rendered chart of every variant. Any finding
that tests/chart/checkov-skips.yaml does not name fails, and so does a skip that no variant needs any
more, so that the list stays the list of what the chart does not satisfy on purpose, each with its reason."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from conftest import VARIANTS, Variant, render_variant, tool

SKIPS = Path(__file__).with_name("checkov-skips.yaml")
IDS = [v.name for v in VARIANTS]

Finding = tuple[str, str]  # check id, "Kind/name"


def scan(variant: Variant) -> set[Finding]:
    """checkov's failed checks on one variant's render. One run per variant: checkov's graph checks
    (a pod without a NetworkPolicy) match labels across every file of a run, whatever their namespace."""
    objs = [o.obj for o in render_variant(variant)]
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / f"{variant.name}.yaml"
        manifest.write_text(yaml.safe_dump_all(objs))
        # --skip-download: no network (guidelines and severities come from Prisma Cloud otherwise)
        run = subprocess.run(
            [str(tool("checkov")), "--file", str(manifest), "--framework", "kubernetes", "--output", "json",
             "--quiet", "--compact", "--skip-download"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600,
            env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    # 1: findings; anything else but 0 is checkov failing
    assert run.returncode in (0, 1), f"checkov failed ({run.returncode}):\n{run.stderr[-3000:]}"
    reports = json.loads(run.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert reports and reports[0]["summary"]["passed"] > 100, f"checkov checked almost nothing: {run.stdout[:2000]}"
    findings = set()
    for report in reports:
        for failed in report["results"]["failed_checks"]:
            kind, _namespace, name = failed["resource"].split(".")[:3]
            findings.add((failed["check_id"], f"{kind}/{name}"))
    return findings


@functools.lru_cache(maxsize=None)
def all_findings() -> dict[str, set[Finding]]:
    # two at a time: checkov takes a few seconds of one core per run
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(IDS, pool.map(scan, VARIANTS)))


def skips() -> dict[str, dict]:
    return yaml.safe_load(SKIPS.read_text())


def skipped(finding: Finding, skip_list: dict[str, dict]) -> bool:
    check, resource = finding
    entry = skip_list.get(check)
    return entry is not None and ("resources" not in entry or resource in entry["resources"])


def test_every_skip_names_a_check_and_gives_its_reason():
    for check, entry in skips().items():
        assert check.startswith(("CKV_K8S_", "CKV2_K8S_")), f"{check} is not a Kubernetes check of checkov"
        assert set(entry) <= {"reason", "resources"}, f"{check}: unknown keys {set(entry) - {'reason', 'resources'}}"
        reason = entry.get("reason", "")
        assert isinstance(reason, str) and len(reason) > 30 and "\n" not in reason.strip(), \
            f"{check}: the reason must be one line that says why"


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_checkov_finds_nothing_that_the_skip_list_does_not_name(variant):
    skip_list = skips()
    new = sorted(f for f in all_findings()[variant.name] if not skipped(f, skip_list))
    assert not new, "checkov findings (fix them, or skip them with a reason in tests/chart/checkov-skips.yaml):\n" + \
        "\n".join(f"  {check} {resource}" for check, resource in new)


def test_every_skip_is_still_needed_by_some_variant():
    found = set().union(*all_findings().values())
    for check, entry in skips().items():
        for resource in entry.get("resources", [None]):
            used = any(c == check and (resource is None or r == resource) for c, r in found)
            assert used, f"{check} {resource or ''}: no variant fails it any more; remove it from {SKIPS.name}"
