"""Every pod the chart makes is hardened by default: non-root, read-only root file system, no
capabilities, seccomp RuntimeDefault, no service-account token unless it needs one, resource requests and
limits, probes, and a checksum of the chart-managed configuration it reads."""
from __future__ import annotations

import pytest

from conftest import VARIANTS, pod_templates, render_variant

IDS = [v.name for v in VARIANTS]
# the only pod that talks to the Kubernetes API
# the controller, and its pre-delete hook that deletes the chart's cache (controller/uninstall-hook.yaml)
NEEDS_A_TOKEN = {"Deployment/wbc-controller", "Job/wbc-delete-cache"}
# pods whose configuration the chart manages (Secrets, ConfigMaps, connection settings)
CHECKSUMMED = {"Deployment/wbc-api", "Deployment/wbc-worker", "StatefulSet/wbc-redis", "StatefulSet/wbc-postgresql"}


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_every_pod_runs_non_root_with_a_read_only_root_and_no_capabilities(variant):
    problems = []
    for where, spec in pod_templates(render_variant(variant)):
        pod = spec.get("securityContext", {})
        if pod.get("runAsNonRoot") is not True:
            problems.append(f"{where}: pod runAsNonRoot is not true")
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile is not RuntimeDefault")
        if not pod.get("runAsUser"):
            problems.append(f"{where}: no non-zero runAsUser")
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c.get("securityContext", {})
            name = f"{where} container {c['name']}"
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{name}: root file system is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}: privilege escalation is allowed")
            if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
                problems.append(f"{name}: capabilities are not all dropped")
            if sc.get("privileged"):
                problems.append(f"{name}: privileged")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_every_container_has_requests_limits_and_probes(variant):
    problems = []
    for where, spec in pod_templates(render_variant(variant)):
        # a test Pod or a hook Job runs to completion: nothing probes it
        is_test = where.startswith(("Pod/", "Job/"))
        for c in spec["containers"]:
            name = f"{where} container {c['name']}"
            for kind in ("requests", "limits"):
                if set(c.get("resources", {}).get(kind, {})) != {"cpu", "memory"}:
                    problems.append(f"{name}: no cpu and memory {kind}")
            if not is_test and not (c.get("livenessProbe") and c.get("readinessProbe")):
                problems.append(f"{name}: no liveness and readiness probes")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_only_the_controller_mounts_a_service_account_token(variant):
    for where, spec in pod_templates(render_variant(variant)):
        mounts = spec.get("automountServiceAccountToken")
        if where in NEEDS_A_TOKEN:
            assert mounts is True and spec["serviceAccountName"] == "wbc-controller", where
        else:
            assert mounts is False, f"{where} mounts a token it does not need"
            assert "serviceAccountName" not in spec, where


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_pods_reading_chart_managed_configuration_carry_its_checksum(variant):
    found = {where: spec for where, spec in pod_templates(render_variant(variant))}
    objs = {f"{o.kind}/{o.name}": o.obj for o in render_variant(variant)}
    for where in CHECKSUMMED & set(found):
        annotations = objs[where]["spec"]["template"]["metadata"].get("annotations", {})
        checksum = annotations.get("checksum/config", "")
        assert len(checksum) == 64 and int(checksum, 16) >= 0, f"{where}: checksum/config is {checksum!r}"


def test_a_changed_password_or_connection_changes_the_checksum_and_nothing_else_does():
    from conftest import one, render

    def checksum(values, name="wbc-api"):
        return one(render(values), "Deployment", name)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    base = checksum({})
    assert checksum({}) == base, "the checksum is not stable across renders (a random value leaks into it)"
    assert checksum({"cache": {"batchSize": 10}}) == base, "the WriteBehindCache is the controller's business"
    assert checksum({"postgresql": {"auth": {"password": "another"}}}) != base
    assert checksum({"redis": {"auth": {"enabled": True}}}) != base
    assert checksum({"api": {"databaseMaxConnections": 20}}) == base

    def redis_checksum(values):
        return one(render(values), "StatefulSet", "wbc-redis")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert redis_checksum({"redis": {"appendfsync": "everysec"}}) != redis_checksum({})
