"""Renders the wbc chart with Helm's own engine (helm-python-sdk) and produces the chart's generated files.

    python scripts/chart/chartgen.py write   # regenerate them (scripts/chart/render.sh runs this)
    python scripts/chart/chartgen.py check   # exit 1 and name the files that drifted

Generated, and checked by tests/chart:
  charts/wbc/files/wbc.json, charts/wbc/files/alerts.yaml   copies of observability/ (Helm reads only
                                                             files inside the chart)
  charts/wbc/values.yaml (the spec's keys of `cache`),       from the CRD (manifests/crd.yaml, which
  charts/wbc/values.schema.json (their schema)               `make crds` generates): cache_values.py
  charts/wbc/README.md                                       the values table, from values.yaml's `# --`
  manifests/rendered/wbc.yaml                                the chart as plain YAML, for kubectl users
"""
from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

import cache_values

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "wbc"
RENDERED = ROOT / "manifests" / "rendered" / "wbc.yaml"
RENDERED_VALUES = Path(__file__).resolve().parent / "rendered-values.yaml"
README = CHART / "README.md"
# chart copy -> source of truth
COPIES = {
    CHART / "files" / "wbc.json": ROOT / "observability" / "grafana" / "wbc.json",
    CHART / "files" / "alerts.yaml": ROOT / "observability" / "prometheus" / "alerts.yaml",
}
REGENERATE = "scripts/chart/render.sh"

# Helm's install order (pkg/release/util/kind_sorter.go); unknown kinds, such as custom resources, last.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList",
    "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList",
    "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
]


@dataclass
class Rendered:
    """One object of a render, with the template it came from."""

    template: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.obj["kind"]

    @property
    def name(self) -> str:
        return self.obj["metadata"]["name"]

    @property
    def is_hook(self) -> bool:
        return "helm.sh/hook" in (self.obj["metadata"].get("annotations") or {})


def load_chart():
    import helm_python

    return helm_python.Chart.load(str(CHART))


# --- installing without the internet -------------------------------------------------------------------------

def _enabled(values: dict[str, Any], condition: str) -> bool:
    node: Any = values
    for part in condition.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return node is True


def offline_chart_dir(values: dict[str, Any] | None, destination: Path) -> Path:
    """A copy of the chart under `destination` that installs without the internet.

    Helm's install (the CLI, and the SDK given a path or a freshly loaded chart) refuses a chart that
    declares a dependency missing from charts/, even a disabled one. A disabled dependency contributes
    nothing, so the copy leaves the optional dependencies that `values` turn off, and that are not in
    charts/, out of its Chart.yaml. An enabled one that is missing is an error: it needs
    `helm dependency build charts/wbc`, which needs the internet."""
    import shutil

    chart = load_chart()
    merged = chart.merge_values(values or {})
    present = {d["name"] for d in chart.dependencies}
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    kept = []
    for dependency in meta.get("dependencies", []):
        if dependency["name"] in present:
            kept.append(dependency)
        elif _enabled(merged, dependency.get("condition", "")):
            raise RuntimeError(f"{dependency['condition']} is true, but the {dependency['name']} chart is not in "
                               f"charts/wbc/charts: run `helm dependency build charts/wbc` (it needs the internet) first")
    target = destination / CHART.name
    shutil.copytree(CHART, target, ignore=shutil.ignore_patterns("ci"))
    meta["dependencies"] = kept
    if not kept:
        del meta["dependencies"]
    (target / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return target


def offline_chart(values: dict[str, Any] | None = None):
    """The chart, loaded from offline_chart_dir: hand it to helm_python.Config.install or upgrade."""
    import tempfile

    import helm_python

    with tempfile.TemporaryDirectory() as tmp:
        return helm_python.Chart.load(str(offline_chart_dir(values, Path(tmp))))


def render_templates(
    values: dict[str, Any] | None = None,
    *,
    name: str = "wbc",
    namespace: str = "default",
    api_versions: Iterable[str] = (),
    kube_version: str | None = None,
    is_upgrade: bool = False,
    chart=None,
) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` renders it. Values are validated against
    values.schema.json first (HelmValuesError). `api_versions` are added to the capabilities and
    `kube_version` replaces the SDK's (e.g. v1.20.2): options of the library's render call that the
    Python wrapper (Chart.render) does not expose."""
    from helm_python import _native

    chart = chart or load_chart()
    opts: dict[str, Any] = {"name": name, "namespace": namespace}
    opts["is_upgrade" if is_upgrade else "is_install"] = True
    if api_versions:
        opts["api_versions"] = list(api_versions)
    if kube_version:
        opts["kube_version"] = kube_version
    text = _native.call_string("helm_render", chart._raw(), json.dumps(values or {}), json.dumps(opts))
    return json.loads(text)


def objects(templates: dict[str, str]) -> list[Rendered]:
    """Every object of a render, NOTES.txt left out."""
    found = []
    for template, text in sorted(templates.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                found.append(Rendered(template, doc))
    return found


def render(values: dict[str, Any] | None = None, **kw) -> list[Rendered]:
    return objects(render_templates(values, **kw))


def install_order(objs: list[Rendered]) -> list[Rendered]:
    rank = {kind: i for i, kind in enumerate(INSTALL_ORDER)}
    return sorted(objs, key=lambda o: (rank.get(o.kind, len(rank)), o.kind, o.name))


# --- manifests/rendered/wbc.yaml -------------------------------------------------------------------------

MANIFEST_HEADER = """\
# Generated by {regenerate} from charts/wbc with scripts/chart/rendered-values.yaml; do not edit.
# The wbc chart as plain YAML, for the default namespace, without Helm:
#   kubectl apply -f manifests/crd.yaml
#   kubectl wait --for condition=established crd/writebehindcaches.wbc.dev
#   kubectl create secret generic wbc-postgresql --from-literal=password="$(openssl rand -hex 16)"
#   kubectl apply -f manifests/rendered/wbc.yaml
# With Helm, install the chart instead: it makes the password Secret, the CRD and `helm test`.
"""


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (a script, redis.conf, the dashboard) as literal blocks."""


_BlockDumper.add_representer(
    str, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def rendered_manifest() -> str:
    values = yaml.safe_load(RENDERED_VALUES.read_text())
    # the CRD is applied first (manifests/crd.yaml), so the resource is an ordinary object, not a hook
    objs = render(values, name="wbc", namespace="default",
                  api_versions=["wbc.dev/v1alpha1", "wbc.dev/v1alpha1/WriteBehindCache"])
    docs = [f"# Source: {o.template}\n" + yaml.dump(o.obj, Dumper=_BlockDumper, sort_keys=False, width=120)
            for o in install_order(objs)]
    return MANIFEST_HEADER.format(regenerate=REGENERATE) + "---\n" + "---\n".join(docs)


# --- charts/wbc/README.md ---------------------------------------------------------------------------------

@dataclass
class ValueDoc:
    key: str
    description: str
    default: Any


KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-\"']+):(?P<rest>.*)$")


def value_docs(text: str | None = None) -> tuple[list[ValueDoc], list[str]]:
    """The `# --` description of every key of values.yaml, and the keys that have none."""
    text = text if text is not None else (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    docs, missing = [], []
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        if not stripped:
            comment = []
            continue
        match = KEY_LINE.match(line)
        if not match or stripped.startswith("- "):
            comment = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([k for _, k in stack] + [match["key"].strip("\"'")])
        stack.append((indent, match["key"].strip("\"'")))
        described = [c for c in comment if c.startswith("--")]
        if described:
            start = comment.index(described[0])
            words = [described[0][2:].strip()] + comment[start + 1:]
            default: Any = values
            for part in key.split("."):
                default = default[part]
            docs.append(ValueDoc(key, " ".join(w for w in words if w), default))
        else:
            missing.append(key)
        comment = []
    return docs, missing


README_HEAD = """\
# wbc chart

<!-- Generated by {regenerate} from values.yaml and its `# --` comments; do not edit. -->

Installs wbc with one `helm install`: the `WriteBehindCache` CRD, the controller (Deployment,
ServiceAccount, least-privilege Role or ClusterRole), the API (Deployment and Service), the workers,
a `WriteBehindCache` named after the release, Redis and PostgreSQL (StatefulSets with volumes, or
external ones), NetworkPolicies around every pod, ServiceMonitors, a PrometheusRule and a Grafana
dashboard, and a `helm test` Pod.

```sh
helm dependency build charts/wbc     # once: the helm CLI wants the optional dependencies in charts/
helm install wbc charts/wbc --namespace wbc --create-namespace
kubectl get wbc -n wbc
helm test wbc -n wbc
```

How it fits together:

- The controller renders the `WriteBehindCache` into the ConfigMap `<release>-config`; the API and
  worker read it with `envFrom`, and the controller rolls them (the Deployments labelled
  `app.kubernetes.io/part-of=wbc` and `app.kubernetes.io/instance=<release>`) when it changes.
  Connection settings (`REDIS_URL`, `DATABASE_URL`) are environment variables of the Deployments,
  without credentials: passwords, URLs with passwords, CA and client certificates come from Secrets
  mounted as files under `/etc/wbc/stores`, named by `REDIS_PASSWORD_FILE`, `DATABASE_CA_FILE` and
  the like. Redis and PostgreSQL read their passwords from mounted Secrets too.
- On a first install the `WriteBehindCache` is a post-install hook, because Helm cannot map an object
  whose CRD is created by the same release; the next `helm upgrade` adopts it. The pods do not wait
  for the ConfigMap unless `cache.waitForConfig` is true (see below).
- The optional dependencies kube-prometheus-stack and jaeger are off by default. Helm still refuses to
  install a chart that declares dependencies missing from `charts/`, even disabled ones: with the helm
  CLI, run `helm dependency build charts/wbc` once (it needs the internet). Without the internet, install
  through the Helm SDK with `offline_chart(values)` of `scripts/chart/chartgen.py`, which leaves the
  disabled, absent dependencies out. Turning one on without its chart present fails with a message.
- ServiceMonitors and the PrometheusRule are made only when the cluster serves
  `monitoring.coreos.com/v1`; PodDisruptionBudgets use `policy/v1beta1` before Kubernetes 1.21.
- NetworkPolicies (`networkPolicy.*`, on by default): a default deny for the release's pods but DNS;
  Redis and PostgreSQL accept only the API and the worker; the API accepts anyone, or only
  `networkPolicy.api.from`; the controller reaches the API server and its targets' `/readyz`; the
  namespaces of `networkPolicy.metrics` scrape `/metrics`. The top-level README's "Network policies"
  lists every allowed connection, which network-config-analyzer checks (tests/chart).
- Redis and PostgreSQL run as uid and gid 10001 (the official images run as any uid). A volume made by
  an older chart belongs to 999: set `runAsUser`, `runAsGroup` and `fsGroup` of their
  `podSecurityContext` to 999 for it.
- For images imported into a node without a registry: `--set api.image.repository=k8s.local/wbc-api
  --set api.image.pullPolicy=Never` and so on (see `ci/local-node-values.yaml`).

## Values

| Key | Type | Default | Description |
|-----|------|---------|-------------|
"""


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if value is None:
        return "null"
    return "object"


def readme(values_text: str | None = None) -> str:
    docs, _ = value_docs(values_text)
    rows = []
    for doc in docs:
        nested = isinstance(doc.default, dict) and doc.default
        default = "" if nested else f"`{json.dumps(doc.default)}`"
        description = doc.description.replace("|", "\\|")
        rows.append(f"| {doc.key} | {type_name(doc.default)} | {default} | {description} |")
    return README_HEAD.format(regenerate=REGENERATE) + "\n".join(rows) + "\n"


# --- write / check ----------------------------------------------------------------------------------------

def generated() -> dict[Path, str]:
    files = {copy: source.read_text() for copy, source in COPIES.items()}
    files.update(cache_values.generated())
    files[README] = readme(files[cache_values.VALUES])
    files[RENDERED] = rendered_manifest()
    return files


def drifted() -> list[Path]:
    return [path for path, text in generated().items() if not path.exists() or path.read_text() != text]


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "write"
    if command == "write":
        # the values first: the rendered manifest renders the chart as it is on disk
        for files in (cache_values.generated, generated):
            for path, text in files().items():
                path.parent.mkdir(parents=True, exist_ok=True)
                if not path.exists() or path.read_text() != text:
                    path.write_text(text)
                    print(f"wrote {path.relative_to(ROOT)}")
        return 0
    if command == "check":
        stale = drifted()
        for path in stale:
            print(f"{path.relative_to(ROOT)} differs from what {REGENERATE} generates", file=sys.stderr)
        return 1 if stale else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
