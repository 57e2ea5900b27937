"""Generated files are what their command generates (scripts/chart/render.sh)."""
from __future__ import annotations

import difflib

import pytest
import yaml

from conftest import ROOT, chartgen


def first_difference(committed: str, generated: str) -> str:
    diff = difflib.unified_diff(committed.splitlines(), generated.splitlines(), "committed", "generated", n=1, lineterm="")
    return "\n".join(list(diff)[:20])


@pytest.mark.parametrize("path", list(chartgen.generated()), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_committed_file_is_what_render_sh_generates(path):
    generated = chartgen.generated()[path]
    assert path.exists(), f"{path.relative_to(ROOT)} is missing: run {chartgen.REGENERATE}"
    committed = path.read_text()
    assert committed == generated, (
        f"{path.relative_to(ROOT)} differs from what {chartgen.REGENERATE} generates; run it and commit the result\n"
        + first_difference(committed, generated))


def test_the_chart_reads_its_copies_of_the_dashboard_and_the_alert_rules():
    for copy, source in chartgen.COPIES.items():
        assert copy.parent == chartgen.CHART / "files", "Helm's .Files reads only files inside the chart"
        assert source.is_relative_to(ROOT / "observability")


def test_the_rendered_manifest_is_the_whole_release_except_the_crd_secret_and_tests():
    docs = [d for d in yaml.safe_load_all(chartgen.RENDERED.read_text()) if d]
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == ["ConfigMap", "Deployment", "NetworkPolicy", "Role", "RoleBinding", "Service", "ServiceAccount",
                     "StatefulSet", "WriteBehindCache"]
    (cache,) = [d for d in docs if d["kind"] == "WriteBehindCache"]
    assert "annotations" not in cache["metadata"], "kubectl users apply the CRD first: no Helm hook"
    assert all(d["metadata"].get("namespace") == "default" for d in docs)
    # the kinds are in Helm's install order: what a pod references exists before the pod
    order = [d["kind"] for d in docs]
    assert order.index("NetworkPolicy") < order.index("ServiceAccount") < order.index("ConfigMap") < order.index("Role") < order.index("Deployment")
