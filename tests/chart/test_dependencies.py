"""The optional dependencies (kube-prometheus-stack, jaeger): declared, off by default, not vendored, and
the local render and install path works without them and without the internet.

Helm refuses `helm install`, `helm package` (and the SDK's install) of a chart whose declared
dependencies are missing from charts/, even disabled ones (helm/helm#2338 made it an error; #13214 shows it
still holds). Rendering does not care. scripts/chart/chartgen.py's offline_chart() gives the installable
chart: the disabled, absent dependencies left out of its Chart.yaml.
"""
from __future__ import annotations

import shutil

import helm_python
import pytest
import yaml

from conftest import CHART, NAMESPACE, RELEASE, chartgen, env_of, one

OPTIONAL = {"kube-prometheus-stack": "kube-prometheus-stack.enabled", "jaeger": "jaeger.enabled"}


def test_the_dependencies_are_declared_optional_and_off_by_default():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    declared = {d["name"]: d for d in meta["dependencies"]}
    assert {name: d["condition"] for name, d in declared.items()} == OPTIONAL
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert all(values[name]["enabled"] is False for name in OPTIONAL)
    for d in declared.values():
        assert d["repository"].startswith("https://") and d["version"]


def test_the_dependencies_are_not_vendored():
    # no stubs: a stub installs nothing when enabled, and stays beside the real chart after `helm dependency build`
    status = {d["name"]: d["status"] for d in helm_python.dependency_list(str(CHART))}
    assert status == {name: "missing" for name in OPTIONAL}


@pytest.fixture
def offline_config():
    # client-side dry runs: everything an install does before it talks to a cluster, and no cluster
    config = helm_python.Config(kube_apiserver="https://127.0.0.1:9", namespace=NAMESPACE)
    yield config
    config.close()


def test_helm_refuses_to_install_the_chart_as_it_is_without_its_dependencies(offline_config):
    with pytest.raises(helm_python.HelmChartInvalidError, match="missing in charts/ directory: kube-prometheus-stack, jaeger"):
        offline_config.install(str(CHART), RELEASE, {}, dry_run="client")
    with pytest.raises(helm_python.HelmChartInvalidError, match="missing in charts/ directory"):
        offline_config.install(chartgen.load_chart(), RELEASE, {}, dry_run="client")


def test_the_offline_chart_installs_without_the_internet(offline_config):
    release = offline_config.install(chartgen.offline_chart({}), RELEASE, {}, dry_run="client")
    manifest = [d for d in yaml.safe_load_all(release["manifest"]) if d]
    assert {d["kind"] for d in manifest} >= {"Deployment", "StatefulSet", "CustomResourceDefinition"}


def test_the_offline_chart_refuses_an_enabled_dependency_it_does_not_have():
    with pytest.raises(RuntimeError, match="run `helm dependency build charts/wbc`"):
        chartgen.offline_chart({"jaeger": {"enabled": True}})


def test_helm_lint_finds_nothing_but_the_missing_dependencies_and_the_icon(tmp_path):
    for kube_version in ("v1.29.0", "v1.20.2"):
        report = helm_python.lint(str(CHART), {}, strict=True, kube_version=kube_version)
        assert report["errors"] == ["chart directory is missing these dependencies: kube-prometheus-stack,jaeger"]
        offline = chartgen.offline_chart_dir({}, tmp_path / kube_version)
        report = helm_python.lint(str(offline), {}, strict=True, kube_version=kube_version)
        assert report["errors"] == [], report
        assert [m["error"] for m in report["messages"]] == ["icon is recommended"]


@pytest.fixture
def chart_with_dependencies(tmp_path):
    """The chart with minimal stand-ins of its dependencies in charts/, as after `helm dependency build`."""
    chart = tmp_path / "wbc"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("ci", "charts"))
    declared = yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"]
    for d in declared:
        sub = chart / "charts" / d["name"]
        (sub / "templates").mkdir(parents=True)
        (sub / "Chart.yaml").write_text(yaml.safe_dump({"apiVersion": "v2", "name": d["name"], "version": d["version"]}))
        (sub / "values.yaml").write_text("enabled: false\n")
    return helm_python.Chart.load(str(chart))


def test_with_the_jaeger_chart_present_traces_go_to_its_collector(chart_with_dependencies):
    values = {"jaeger": {"enabled": True}, "tracing": {"jaegerUi": {"nodePort": 30686}}}
    objs = chartgen.render(values, name=RELEASE, namespace=NAMESPACE, chart=chart_with_dependencies)
    api = one(objs, "Deployment", "wbc-api")["spec"]["template"]["spec"]["containers"][0]
    collector = f"http://{RELEASE}-jaeger-collector.{NAMESPACE}.svc.cluster.local:4318"
    assert env_of(api)["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == collector
    ui = one(objs, "Service", "wbc-jaeger-ui")
    assert ui["spec"]["ports"][0]["nodePort"] == 30686


def test_with_kube_prometheus_stack_present_it_can_be_enabled(chart_with_dependencies):
    objs = chartgen.render({"kube-prometheus-stack": {"enabled": True}}, name=RELEASE, namespace=NAMESPACE,
                           chart=chart_with_dependencies)
    assert one(objs, "ConfigMap", "wbc-dashboard")["metadata"]["labels"]["grafana_dashboard"] == "1"
