"""Every variant of the chart renders, and every object it renders is valid: against the Kubernetes
schemas (strict: unknown fields fail) of a current Kubernetes and of the local node's 1.20, and the
WriteBehindCache against its CRD."""
from __future__ import annotations

import kubernetes_validate
import pytest

from conftest import (KUBE_CURRENT, KUBE_LOCAL, VARIANTS, SchemaNotFound, find, render_variant, validate_cr,
                      validate_k8s_1_20)

# custom resources that kubernetes-validate does not know; test_wiring checks them
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
IDS = [v.name for v in VARIANTS]


def check_objects(objs, validate_builtin) -> list[str]:
    problems = []
    for o in objs:
        where = f"{o.kind}/{o.name} ({o.template})"
        try:
            if o.kind == "WriteBehindCache":
                validate_cr(o.obj)
            elif o.kind in OPERATOR_KINDS:
                continue
            else:
                validate_builtin(o.obj)
        except (SchemaNotFound, kubernetes_validate.SchemaNotFoundError) as e:
            problems.append(f"{where}: {getattr(e, 'message', e)}")
        except Exception as e:  # jsonschema.ValidationError and kubernetes-validate's subclass
            path = ".".join(str(p) for p in getattr(e, "absolute_path", []) or getattr(e, "path", []))
            problems.append(f"{where}: {path}: {getattr(e, 'message', e)}")
    return problems


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_every_object_of_every_variant_is_valid_on_a_current_kubernetes(variant):
    objs = render_variant(variant)
    assert objs, "nothing rendered"
    problems = check_objects(objs, lambda obj: kubernetes_validate.validate(obj, KUBE_CURRENT, strict=True))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_every_object_of_every_variant_is_valid_on_the_local_kubernetes_1_20(variant):
    objs = render_variant(variant, kube_version=KUBE_LOCAL)
    problems = check_objects(objs, validate_k8s_1_20)
    assert not problems, "\n".join(problems)


def test_the_current_validation_catches_an_unknown_field():
    with pytest.raises(kubernetes_validate.ValidationError, match="bogus"):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                                      "spec": {"bogus": 1}}, KUBE_CURRENT, strict=True)


def test_the_1_20_validation_catches_an_unknown_field_and_a_missing_api():
    # the legacy schema set must really be strict, or the test above proves nothing
    with pytest.raises(Exception, match="bogus"):
        validate_k8s_1_20({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"bogus": 1}})
    with pytest.raises(SchemaNotFound):
        validate_k8s_1_20({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "x"}})


def test_the_default_render_holds_the_whole_installation():
    objs = render_variant(VARIANTS[0])
    kinds = sorted({o.kind for o in objs})
    assert kinds == sorted([
        "ConfigMap", "CustomResourceDefinition", "Deployment", "Job", "NetworkPolicy", "Pod", "Role", "RoleBinding",
        "Secret",
        "Service", "ServiceAccount", "StatefulSet", "WriteBehindCache",
    ])
    assert sorted(o.name for o in find(objs, "Deployment")) == ["wbc-api", "wbc-controller", "wbc-worker"]
    assert sorted(o.name for o in find(objs, "StatefulSet")) == ["wbc-postgresql", "wbc-redis"]


def test_the_write_behind_cache_validator_refuses_a_typo_and_a_bad_value():
    objs = render_variant(VARIANTS[0])
    (cache,) = [o.obj for o in objs if o.kind == "WriteBehindCache"]
    validate_cr(cache)
    for field, value in [("flushIntervall", "1s"), ("mode", "Sideways"), ("batchSize", 0), ("flushInterval", "soon")]:
        bad = {**cache, "spec": {**cache["spec"], field: value}}
        with pytest.raises(Exception):
            validate_cr(bad)
