"""The pieces fit: the controller finds exactly the API and worker, they read the ConfigMap it renders,
its RBAC covers what its code does and no more, the connection settings point where the values say, and
the monitoring objects match the alert rules' and dashboard's expectations."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import (CR_SERVED, KUBE_LOCAL, MONITORING, NAMESPACE, RELEASE, ROOT, VARIANTS, ci_values, env_of, find,
                      one, pod_templates, render, render_variant)

IDS = [v.name for v in VARIANTS]
CONTROLLER_SRC = ROOT / "controller" / "src"


def controller_default_selector(cache: dict) -> dict[str, str]:
    """controller/src/crd.rs, WriteBehindCache::target_labels."""
    selector = cache["spec"].get("targetSelector")
    if selector:
        return selector["matchLabels"]
    return {"app.kubernetes.io/part-of": "wbc", "app.kubernetes.io/instance": cache["metadata"]["name"]}


def container(objs, kind, name):
    return one(objs, kind, name)["spec"]["template"]["spec"]["containers"][0]


# --- the controller and its targets ------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_the_controller_rolls_exactly_the_api_and_worker_of_the_release(variant):
    objs = render_variant(variant)
    (cache,) = [o.obj for o in objs if o.kind == "WriteBehindCache"]
    assert cache["metadata"]["name"] == RELEASE
    selector = controller_default_selector(cache)
    targets = sorted(o.name for o in find(objs, "Deployment")
                     if all(o.obj["metadata"]["labels"].get(k) == v for k, v in selector.items()))
    assert targets == ["wbc-api", "wbc-worker"]


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_the_api_and_worker_read_the_configmap_the_controller_renders(variant):
    objs = render_variant(variant)
    (cache,) = [o.obj for o in objs if o.kind == "WriteBehindCache"]
    wait = variant.all_values().get("cache", {}).get("waitForConfig", False)
    for name in ("wbc-api", "wbc-worker"):
        c = container(objs, "Deployment", name)
        # controller/src/crd.rs: config_map_name() is "<name>-config"
        assert c["envFrom"] == [{"configMapRef": {"name": f"{cache['metadata']['name']}-config", "optional": not wait}}]


def test_the_write_behind_cache_spec_is_the_values():
    objs = render_variant(next(v for v in VARIANTS if v.name == "write-through"))
    (cache,) = [o.obj for o in objs if o.kind == "WriteBehindCache"]
    from conftest import chart

    # every key of `cache` but the chart's own two, the defaults included
    values = chart().merge_values(ci_values("write-through-values.yaml"))["cache"]
    expected = {key: value for key, value in values.items() if key not in ("create", "waitForConfig")}
    assert cache["spec"] == expected


def test_on_a_first_install_the_write_behind_cache_is_a_hook_that_the_next_upgrade_adopts():
    first = [o for o in render() if o.kind == "WriteBehindCache"][0]
    annotations = first.obj["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install"
    # what lets `helm upgrade` adopt it as an ordinary object of the release
    assert annotations["meta.helm.sh/release-name"] == RELEASE
    assert annotations["meta.helm.sh/release-namespace"] == NAMESPACE
    assert first.obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    later = [o for o in render(api_versions=CR_SERVED) if o.kind == "WriteBehindCache"][0]
    assert not later.is_hook and "annotations" not in later.obj["metadata"]
    assert later.obj["spec"] == first.obj["spec"]


def test_the_crd_is_kept_on_uninstall_and_can_be_left_out():
    crd = one(render(), "CustomResourceDefinition", "writebehindcaches.wbc.dev")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not find(render({"crds": {"create": False}}), "CustomResourceDefinition")
    assert not find(render({"cache": {"create": False}}), "WriteBehindCache")


def rules(role) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


LEAST_PRIVILEGE = {
    # delete: the chart's own cache only, by its pre-delete hook (tests/chart/test_operator.py)
    ("wbc.dev", "writebehindcaches"): {"get", "list", "watch", "delete"},
    ("wbc.dev", "writebehindcaches/status"): {"get", "patch"},
    ("", "configmaps"): {"get", "list", "watch", "create", "patch"},
    ("apps", "deployments"): {"get", "list", "watch", "patch"},
    ("", "pods"): {"list"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("", "events"): {"create", "patch"},
}


def test_the_controller_gets_a_role_in_its_namespace_by_default():
    objs = render()
    role = one(objs, "Role", "wbc-controller")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert rules(role) == LEAST_PRIVILEGE
    binding = one(objs, "RoleBinding", "wbc-controller")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "wbc-controller"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "wbc-controller", "namespace": NAMESPACE}]
    assert env_of(container(objs, "Deployment", "wbc-controller"))["WATCH_NAMESPACE"]["value"] == NAMESPACE
    assert not find(objs, "ClusterRole") and not find(objs, "ClusterRoleBinding")


def test_a_controller_for_another_namespace_gets_its_role_there():
    objs = render({"controller": {"watchNamespace": "caches"}})
    assert one(objs, "Role", "wbc-controller")["metadata"]["namespace"] == "caches"
    assert one(objs, "RoleBinding", "wbc-controller")["subjects"][0]["namespace"] == NAMESPACE
    assert env_of(container(objs, "Deployment", "wbc-controller"))["WATCH_NAMESPACE"]["value"] == "caches"


def test_a_cluster_wide_controller_gets_a_cluster_role_named_after_its_namespace():
    objs = render({"controller": {"clusterWide": True}})
    (role,) = find(objs, "ClusterRole")
    assert role.name == f"wbc-{NAMESPACE}-controller" and "namespace" not in role.obj["metadata"]
    assert rules(role.obj) == LEAST_PRIVILEGE
    (binding,) = find(objs, "ClusterRoleBinding")
    assert binding.obj["roleRef"]["name"] == role.name
    assert env_of(container(objs, "Deployment", "wbc-controller"))["WATCH_NAMESPACE"]["value"] == ""
    assert not find(objs, "Role")


def test_the_rbac_covers_what_the_controller_code_uses():
    # a drift guard: when the controller starts to need more, this names what to add to controller/rbac.yaml
    source = "\n".join(p.read_text() for p in CONTROLLER_SRC.rglob("*.rs"))
    granted = rules(one(render(), "Role", "wbc-controller"))
    if re.search(r"\bLease\b|coordination::v1|leader", source):
        assert ("coordination.k8s.io", "leases") in granted, "the controller uses leases"
    if re.search(r"finalizer", source, re.I):
        assert "patch" in granted[("wbc.dev", "writebehindcaches")], "finalizers need patch on writebehindcaches"
    if re.search(r"Api<Secret>|core::v1::Secret\b", source):
        assert ("", "secrets") in granted, "the controller reads Secrets"
    for kind, key in [("ConfigMap", ("", "configmaps")), ("Deployment", ("apps", "deployments"))]:
        assert f"Api<{kind}>" in source and key in granted


def clap_env_names(*crates: str) -> set[str]:
    names = set()
    for crate in crates:
        for path in (ROOT / crate / "src").rglob("*.rs"):
            names |= set(re.findall(r'env\s*=\s*"([A-Z_]+)"', path.read_text()))
    return names


def test_every_variable_the_chart_sets_is_one_the_binaries_read():
    for variant in (v for v in VARIANTS if v.name in ("monitoring", "external-redis-and-postgresql")):
        objs = render_variant(variant)
        for name, crates in [("wbc-api", ("api", "core")), ("wbc-worker", ("worker", "core")),
                             ("wbc-controller", ("controller", "core"))]:
            unknown = set(env_of(container(objs, "Deployment", name))) - clap_env_names(*crates)
            assert not unknown, f"{variant.name}: {name} sets {unknown}, which its binary does not read"


def test_ports_probes_and_listen_addresses_agree():
    objs = render()
    for name, env, port_name, port in [("wbc-api", "LISTEN_ADDR", "http", 8000), ("wbc-worker", "METRICS_ADDR", "metrics", 8001),
                                       ("wbc-controller", "METRICS_ADDR", "metrics", 8080)]:
        c = container(objs, "Deployment", name)
        assert env_of(c)[env]["value"] == f"0.0.0.0:{port}"
        assert c["ports"] == [{"name": port_name, "containerPort": port, "protocol": "TCP"}]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port_name}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port_name}
        service = one(objs, "Service", name)
        assert service["spec"]["ports"][0]["targetPort"] == port_name
        pod_labels = one(objs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert all(pod_labels[k] == v for k, v in service["spec"]["selector"].items())


def test_the_worker_drains_before_kubernetes_kills_it():
    objs = render()
    spec = one(objs, "Deployment", "wbc-worker")["spec"]["template"]["spec"]
    assert env_of(spec["containers"][0])["SHUTDOWN_GRACE"]["value"] == "10s"
    assert spec["terminationGracePeriodSeconds"] > 10


def test_the_controller_never_runs_twice_at_once():
    deployment = one(render(), "Deployment", "wbc-controller")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}


# --- the stores ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("appendfsync", ["always", "everysec", "no"])
def test_redis_persists_its_aof_with_the_configured_fsync_policy(appendfsync):
    objs = render({"redis": {"appendfsync": appendfsync, "maxmemory": "256mb"}})
    conf = one(objs, "ConfigMap", "wbc-redis")["data"]["redis.conf"].splitlines()
    assert "appendonly yes" in conf and f"appendfsync {appendfsync}" in conf
    assert "maxmemory 256mb" in conf and "maxmemory-policy volatile-lru" in conf
    statefulset = one(objs, "StatefulSet", "wbc-redis")
    assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert {"name": "data", "mountPath": "/data"} in statefulset["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]


def test_the_default_fsync_policy_loses_no_acknowledged_write():
    conf = one(render(), "ConfigMap", "wbc-redis")["data"]["redis.conf"]
    assert "appendfsync always" in conf.splitlines()


def test_without_persistence_the_databases_use_empty_dirs():
    off = {"persistence": {"enabled": False}}
    objs = render({"redis": off, "postgresql": off})
    for name in ("wbc-redis", "wbc-postgresql"):
        statefulset = one(objs, "StatefulSet", name)
        assert "volumeClaimTemplates" not in statefulset["spec"]
        assert {"name": "data", "emptyDir": {}} in statefulset["spec"]["template"]["spec"]["volumes"]


def test_the_local_node_values_use_imported_images_that_are_never_pulled():
    objs = render_variant(next(v for v in VARIANTS if v.name == "local-node"))
    for where, spec in pod_templates(objs):
        for c in spec["containers"]:
            assert c["image"].startswith("k8s.local/") and c["imagePullPolicy"] == "Never", f"{where}: {c['image']}"
    assert one(objs, "Service", "wbc-api")["spec"]["ports"][0]["nodePort"] == 30800


def test_long_release_names_give_valid_names():
    objs = render(name="a-release-name-of-fifty-three-characters-for-the-test")
    for o in objs:
        limit = 52 if o.kind == "StatefulSet" else 63
        if o.kind != "CustomResourceDefinition":
            assert len(o.name) <= limit, f"{o.kind} {o.name} is {len(o.name)} characters long"
    assert len({(o.kind, o.name) for o in objs}) == len(objs)


# --- observability -------------------------------------------------------------------------------------------

def test_without_the_prometheus_operator_no_servicemonitor_or_rule_is_made():
    kinds = {o.kind for o in render()}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    off = {"monitoring": {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}}}
    assert not {o.kind for o in render(off, api_versions=MONITORING)} & {"ServiceMonitor", "PrometheusRule"}


def test_the_servicemonitors_give_the_jobs_the_alert_rules_expect():
    objs = render_variant(next(v for v in VARIANTS if v.name == "monitoring"))
    monitors = {o.name: o.obj for o in find(objs, "ServiceMonitor")}
    assert set(monitors) == {"wbc-api", "wbc-worker", "wbc-controller"}
    alerts = (ROOT / "observability" / "prometheus" / "alerts.yaml").read_text()
    assert 'job="wbc-worker"' in alerts
    services = {o.name: o.obj for o in find(objs, "Service")}
    for name, monitor in monitors.items():
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["relabelings"] == [{"action": "replace", "targetLabel": "job", "replacement": name}]
        assert endpoint["path"] == "/metrics" and endpoint["interval"] == "30s"
        service = services[name]
        assert all(service["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        # kube-prometheus-stack selects by release label by default; additionalLabels for others
        assert monitor["metadata"]["labels"]["release"] == RELEASE and monitor["metadata"]["labels"]["team"] == "storage"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}


def test_the_prometheus_rule_holds_the_alert_rules():
    objs = render_variant(next(v for v in VARIANTS if v.name == "monitoring"))
    rule = one(objs, "PrometheusRule", "wbc")
    assert rule["spec"] == yaml.safe_load((ROOT / "observability" / "prometheus" / "alerts.yaml").read_text())
    assert rule["metadata"]["labels"]["release"] == RELEASE


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed")
def test_promtool_accepts_the_rendered_rules(tmp_path):
    objs = render_variant(next(v for v in VARIANTS if v.name == "monitoring"))
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(one(objs, "PrometheusRule", "wbc")["spec"]))
    result = subprocess.run(["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_grafana_dashboard_configmap_holds_the_dashboard_for_the_sidecar():
    objs = render_variant(next(v for v in VARIANTS if v.name == "monitoring"))
    dashboard = one(objs, "ConfigMap", "wbc-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "wbc"}
    source = json.loads((ROOT / "observability" / "grafana" / "wbc.json").read_text())
    assert json.loads(dashboard["data"]["wbc.json"]) == source
    assert not find(render({"monitoring": {"grafanaDashboard": {"enabled": False}}}), "ConfigMap", "wbc-dashboard")


def test_the_otlp_endpoint_reaches_the_api_and_worker_only():
    objs = render_variant(next(v for v in VARIANTS if v.name == "monitoring"))
    for name in ("wbc-api", "wbc-worker"):
        env = env_of(container(objs, "Deployment", name))
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector.observability:4318"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env_of(container(objs, "Deployment", "wbc-controller"))
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env_of(container(render(), "Deployment", "wbc-api"))


# --- disruption budgets, helm test, notes --------------------------------------------------------------------

def test_pod_disruption_budgets_use_the_api_version_the_cluster_serves():
    variant = next(v for v in VARIANTS if v.name == "pod-disruption-budgets")
    current = {o.name: o.obj for o in find(render_variant(variant), "PodDisruptionBudget")}
    local = {o.name: o.obj for o in find(render_variant(variant, kube_version=KUBE_LOCAL), "PodDisruptionBudget")}
    assert set(current) == set(local) == {"wbc-api", "wbc-worker"}
    assert {p["apiVersion"] for p in current.values()} == {"policy/v1"}
    assert {p["apiVersion"] for p in local.values()} == {"policy/v1beta1"}
    assert current["wbc-api"]["spec"]["minAvailable"] == 2 and current["wbc-worker"]["spec"]["minAvailable"] == "50%"
    objs = render_variant(variant)
    for name, pdb in current.items():
        pod_labels = one(objs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert all(pod_labels[k] == v for k, v in pdb["spec"]["selector"]["matchLabels"].items())
    assert not find(render(), "PodDisruptionBudget")


def test_the_helm_test_checks_health_and_a_round_trip_through_the_api_service():
    objs = render()
    pod = one(objs, "Pod", "wbc-test-api")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["args"][0]
    service = f"http://wbc-api.{NAMESPACE}.svc.cluster.local:8000"
    assert f'base="{service}"' in script
    for step in ('"$base/healthz"', "--post-data", '"$base/products"', '"$base/products/$id"'):
        assert step in script
    assert pod["spec"]["containers"][0]["image"] == "busybox:1.36"
    assert not find(render({"tests": {"enabled": False}}), "Pod")


def test_the_notes_tell_how_to_reach_the_api_and_check_the_cache():
    from conftest import chart, chartgen

    notes = chartgen.render_templates({"api": {"service": {"type": "NodePort", "nodePort": 30800}}},
                                      name=RELEASE, namespace=NAMESPACE, chart=chart())["wbc/templates/NOTES.txt"]
    assert f"kubectl get wbc -n {NAMESPACE}" in notes
    assert "kubectl get svc wbc-api" in notes and "localhost:8000" in notes
    assert f"helm test {RELEASE} -n {NAMESPACE}" in notes
