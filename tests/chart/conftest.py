"""Shared helpers of the chart tests: renders through Helm's engine (scripts/chart/chartgen.py), the
Kubernetes schemas, the CRD's schema, and the variants every render test runs on.

Run them with `make chart-test` (scripts/chart/test.sh), which creates the venv they need.
"""
from __future__ import annotations

import copy
import functools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "chart"))

import chartgen  # noqa: E402

CHART = chartgen.CHART
RELEASE = "wbc"
NAMESPACE = "wbc-test"
# the Kubernetes versions every object is checked against: a current one, and the local test node's
KUBE_CURRENT = "1.29"
KUBE_LOCAL = "v1.20.2"
MONITORING = ["monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor",
              "monitoring.coreos.com/v1/PrometheusRule"]
CR_SERVED = ["wbc.dev/v1alpha1", "wbc.dev/v1alpha1/WriteBehindCache"]


def ci_values(name: str) -> dict[str, Any]:
    return yaml.safe_load((CHART / "ci" / name).read_text())


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass(frozen=True)
class Variant:
    """One way to install the chart: values, plus what the cluster serves."""

    name: str
    values_file: str | None = None
    values: dict[str, Any] = field(default_factory=dict, hash=False)
    api_versions: tuple[str, ...] = ()

    def all_values(self) -> dict[str, Any]:
        base = ci_values(self.values_file) if self.values_file else {}
        return merge(base, self.values)


VARIANTS = [
    Variant("defaults"),
    Variant("external-redis-and-postgresql", "external-values.yaml"),
    Variant("external-urls-from-secrets", "external-url-values.yaml"),
    Variant("monitoring", "monitoring-values.yaml", api_versions=tuple(MONITORING)),
    Variant("pod-disruption-budgets", "pdb-values.yaml"),
    Variant("write-through", "write-through-values.yaml"),
    Variant("local-node", "local-node-values.yaml"),
    Variant("kind-e2e", "kind-e2e-values.yaml"),
    # the bundled stacks are not in charts/ offline (`helm dependency build` fetches them on kind)
    Variant("kind", "kind-values.yaml", values={"kube-prometheus-stack": {"enabled": False}, "jaeger": {"enabled": False}}),
    Variant("cluster-wide-and-redis-auth", "cluster-wide-values.yaml"),
    Variant("upgrade-with-the-crd-served", api_versions=tuple(CR_SERVED)),
]


@functools.lru_cache(maxsize=None)
def chart():
    return chartgen.load_chart()


@functools.lru_cache(maxsize=None)
def _render(values_json: str, api_versions: tuple[str, ...], kube_version: str | None, name: str, namespace: str):
    return chartgen.render(json.loads(values_json), name=name, namespace=namespace, api_versions=api_versions,
                           kube_version=kube_version, chart=chart())


def render(values: dict[str, Any] | None = None, *, api_versions=(), kube_version: str | None = None,
           name: str = RELEASE, namespace: str = NAMESPACE) -> list[chartgen.Rendered]:
    """The objects of one render (cached; callers must not change them)."""
    return _render(json.dumps(values or {}, sort_keys=True), tuple(api_versions), kube_version, name, namespace)


def render_variant(variant: Variant, kube_version: str | None = None) -> list[chartgen.Rendered]:
    return render(variant.all_values(), api_versions=variant.api_versions, kube_version=kube_version)


def find(objs, kind: str, name: str | None = None) -> list[chartgen.Rendered]:
    return [o for o in objs if o.kind == kind and (name is None or o.name == name)]


def one(objs, kind: str, name: str) -> dict[str, Any]:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {[o.name for o in find(objs, kind)]}"
    return found[0].obj


def pod_templates(objs) -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload and bare Pod."""
    specs = []
    for o in objs:
        if o.kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            specs.append((f"{o.kind}/{o.name}", o.obj["spec"]["template"]["spec"]))
        elif o.kind == "Pod":
            specs.append((f"Pod/{o.name}", o.obj["spec"]))
    return specs


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


# --- Kubernetes 1.20 schemas: kubernetes-validate dropped them, venv.sh keeps its 1.24.1 copy ------------

LEGACY_SCHEMAS = Path(sys.prefix) / "k8s-schemas" / "v1.20.0-local-strict"


@functools.lru_cache(maxsize=None)
def _legacy_registry() -> referencing.Registry:
    if not LEGACY_SCHEMAS.is_dir():
        pytest.fail(f"{LEGACY_SCHEMAS} is missing: create the venv with scripts/chart/venv.sh")
    definitions = json.loads((LEGACY_SCHEMAS / "_definitions.json").read_text())
    resource = referencing.Resource(contents=definitions, specification=referencing.jsonschema.DRAFT4)
    return referencing.Registry().with_resource(LEGACY_SCHEMAS.as_uri() + "/_definitions.json", resource)


class SchemaNotFound(Exception):
    pass


def validate_k8s_1_20(obj: dict[str, Any]) -> None:
    """Strict validation against Kubernetes 1.20's OpenAPI (unknown fields refused)."""
    group_version = obj["apiVersion"]
    group, _, version = group_version.rpartition("/")
    prefix = f"{group.split('.')[0]}-" if group else ""
    path = LEGACY_SCHEMAS / f"{obj['kind'].lower()}-{prefix}{version}.json"
    if not path.exists():
        raise SchemaNotFound(f"Kubernetes 1.20 has no {obj['kind']} in {group_version}")
    schema = json.loads(path.read_text())
    schema.pop("$schema", None)
    # {"$ref": "_definitions.json#/definitions/…"}: draft 4 ignores an "id" beside "$ref", so make it absolute
    schema["$ref"] = f"{LEGACY_SCHEMAS.as_uri()}/{schema['$ref']}"
    validator = jsonschema.Draft4Validator(schema, registry=_legacy_registry())
    validator.validate(obj)


# --- the WriteBehindCache's own schema --------------------------------------------------------------------

def crd() -> dict[str, Any]:
    objs = render({"crds": {"create": True}})
    return one(objs, "CustomResourceDefinition", "writebehindcaches.wbc.dev")


def strict(schema: Any) -> Any:
    """An OpenAPI schema of a CRD as JSON Schema that refuses unknown fields (like kubectl --validate=strict)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items() if k not in ("nullable", "format")}
        if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema:
            out["additionalProperties"] = False
        if schema.get("nullable"):
            out = {"anyOf": [out, {"type": "null"}]}
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def validate_cr(obj: dict[str, Any]) -> None:
    version = obj["apiVersion"].split("/")[1]
    (served,) = [v for v in crd()["spec"]["versions"] if v["name"] == version]
    schema = strict(served["schema"]["openAPIV3Schema"])
    # metadata is Kubernetes' own; the CRD schema leaves it out
    schema["properties"]["metadata"] = {"type": "object"}
    schema["properties"]["apiVersion"] = {"const": obj["apiVersion"]}
    schema["properties"]["kind"] = {"const": crd()["spec"]["names"]["kind"]}
    jsonschema.Draft7Validator(schema).validate(obj)


# --- tools with venvs of their own (scripts/tool-venv.sh): checkov, nca --------------------------------

@functools.lru_cache(maxsize=None)
def tool(name: str) -> Path:
    """The executable of a tool whose pins clash with this venv's, from its own venv (made on first use)."""
    import subprocess

    venv = subprocess.run([str(ROOT / "scripts" / "tool-venv.sh"), name], check=True,
                          stdout=subprocess.PIPE, text=True).stdout.strip()
    return Path(venv) / "bin" / name
