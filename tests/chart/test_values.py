"""values.yaml documents every key, and values.schema.json (with templates/validate.yaml) accepts what the
chart ships and refuses bad values with a message that names the field."""
from __future__ import annotations

import json

import helm_python
import jsonschema
import pytest
import yaml

from conftest import CHART, VARIANTS, chart, chartgen, render


def helm_refusal(values) -> str:
    """Helm's message when it refuses `values` (schema check or template check), or "" if it renders."""
    try:
        chartgen.render(values, chart=chart())
    except (helm_python.HelmValuesError, helm_python.HelmRenderError) as e:
        return str(e)
    return ""


def test_every_key_of_values_yaml_has_a_helm_docs_comment():
    docs, missing = chartgen.value_docs()
    assert not missing, f"keys of values.yaml without a `# --` comment: {missing}"
    assert len(docs) > 100


def test_the_schema_is_valid_json_schema_and_accepts_the_defaults_and_every_ci_file():
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    for variant in VARIANTS:
        merged = chart().merge_values(variant.all_values())
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(merged)]
        assert not errors, f"{variant.name}: {errors}"
        chart().validate_schema(merged)  # Helm's own validator agrees


def test_every_ci_values_file_is_a_variant_of_the_render_tests():
    files = {p.name for p in (CHART / "ci").glob("*.yaml")}
    assert files == {v.values_file for v in VARIANTS if v.values_file}


BAD_VALUES = [
    ({"redis": {"appendfsync": "sometimes"}}, "/redis/appendfsync", "'always', 'everysec', 'no'"),
    ({"cache": {"mode": "Sideways"}}, "/cache/mode", "'WriteBehind', 'WriteThrough'"),
    ({"api": {"replicaCount": -1}}, "/api/replicaCount", "minimum"),
    ({"worker": {"replicaCount": -1}}, "/worker/replicaCount", "minimum"),
    ({"controller": {"replicaCount": 2}}, "/controller/replicaCount", "maximum"),
    ({"api": {"replicas": 3}}, "/api", "'replicas' not allowed"),
    ({"cache": {"flushInterval": "soon"}}, "/cache/flushInterval", "does not match pattern"),
    ({"cache": {"leaseTimeout": "30"}}, "/cache/leaseTimeout", "does not match pattern"),
    ({"cache": {"batchSize": 0}}, "/cache/batchSize", "minimum"),
    ({"cache": {"batchSize": 10001}}, "/cache/batchSize", "maximum"),
    ({"cache": {"queueCapacity": 100000001}}, "/cache/queueCapacity", "maximum"),
    ({"cache": {"retry": {"multiplier": 0.5}}}, "/cache/retry/multiplier", "minimum"),
    ({"cache": {"failureSimulation": {"rate": 1.5}}}, "/cache/failureSimulation/rate", "maximum"),
    ({"cache": {"failureSimulation": {"kind": "Sometimes"}}}, "/cache/failureSimulation/kind", "'Transient', 'Permanent'"),
    ({"cache": {"overflowPolicy": "Drop"}}, "/cache/overflowPolicy", "'Reject', 'WriteThrough'"),
    ({"cache": {"targetSelector": {"matchLabels": {}}}}, "/cache/targetSelector/matchLabels", "minProperties"),
    ({"redis": {"maxmemoryPolicy": "allkeys-lru"}}, "/redis/maxmemoryPolicy", "volatile-lru"),
    ({"redis": {"maxmemory": "lots"}}, "/redis/maxmemory", "does not match pattern"),
    ({"redis": {"enabled": False}, "externalRedis": {"host": "r", "username": "a b"}}, "/externalRedis/username",
     "does not match pattern"),
    ({"redis": {"enabled": False}, "externalRedis": {"host": "r", "tls": True, "caSecret": "My_CA"}},
     "/externalRedis/caSecret", "does not match pattern"),
    ({"postgresql": {"enabled": False}, "externalPostgresql": {"host": "p", "clientCertSecret": "-x"}},
     "/externalPostgresql/clientCertSecret", "does not match pattern"),
    ({"redis": {"enabled": False}, "externalRedis": {"host": "r", "clientCertSecret": "client"}}, "/externalRedis/tls",
     "true"),
    ({"redis": {"persistence": {"size": "big"}}}, "/redis/persistence/size", "does not match pattern"),
    ({"api": {"image": {"pullPolicy": "Sometimes"}}}, "/api/image/pullPolicy", "'Always', 'IfNotPresent', 'Never'"),
    ({"api": {"image": {"repository": ""}}}, "/api/image/repository", "minLength"),
    ({"api": {"service": {"type": "NodePort", "nodePort": 80}}}, "/api/service/nodePort", "minimum"),
    ({"api": {"port": 70000}}, "/api/port", "maximum"),
    ({"api": {"threads": 0}}, "/api/threads", "minimum"),
    ({"worker": {"flushConcurrency": 65}}, "/worker/flushConcurrency", "maximum"),
    ({"worker": {"shutdownGraceSeconds": 0}}, "/worker/shutdownGraceSeconds", "minimum"),
    ({"logFormat": "xml"}, "/logFormat", "'text', 'json'"),
    ({"tracing": {"otlpEndpoint": "jaeger:4318"}}, "/tracing/otlpEndpoint", "does not match pattern"),
    ({"postgresql": {"auth": {"username": "Robert'); DROP"}}}, "/postgresql/auth/username", "does not match pattern"),
    ({"redis": {"enabled": False}}, "/externalRedis/host", "minLength"),
    ({"postgresql": {"enabled": False}}, "/externalPostgresql/host", "minLength"),
    ({"redis": {"enabled": False}, "externalRedis": {"existingSecretUrlKey": "url"}}, "/externalRedis/existingSecret", "minLength"),
    ({"postgresql": {"enabled": False}, "externalPostgresql": {"existingSecretUrlKey": "url"}},
     "/externalPostgresql/existingSecret", "minLength"),
    ({"networkPolicy": {"api": {"from": [{}]}}}, "/networkPolicy/api/from/0", "minProperties"),
    ({"networkPolicy": {"api": {"from": [{"namespace": "x"}]}}}, "/networkPolicy/api/from/0",
     "additional properties 'namespace' not allowed"),
    ({"networkPolicy": {"metrics": {"namespaces": ["Monitoring"]}}}, "/networkPolicy/metrics/namespaces/0",
     "does not match pattern"),
    ({"networkPolicy": {"kubeApiServer": {"cidrs": ["everywhere"]}}}, "/networkPolicy/kubeApiServer/cidrs/0",
     "does not match pattern"),
    ({"networkPolicy": {"kubeApiServer": {"ports": [0]}}}, "/networkPolicy/kubeApiServer/ports/0", "minimum"),
    ({"networkPolicy": {"extraEgress": [{"too": []}]}}, "/networkPolicy/extraEgress/0", "additional properties 'too'"),
    ({"unknownTopLevelKey": 1}, "additional properties 'unknownTopLevelKey' not allowed", ""),
]


@pytest.mark.parametrize("values,field,rule", BAD_VALUES, ids=[f for _, f, _ in BAD_VALUES])
def test_a_bad_value_is_refused_with_a_message_that_names_the_field(values, field, rule):
    message = helm_refusal(values)
    assert message, f"Helm accepted {values}"
    assert field in message and rule in message, message
    # the schema alone refuses it too, for editors and CI tools that read values.schema.json
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert list(jsonschema.Draft7Validator(schema).iter_errors(chart().merge_values(values)))


TEMPLATE_CHECKS = [
    ({"api": {"extraEnv": [{"name": "FLUSH_INTERVAL", "value": "1s"}]}},
     "api.extraEnv: FLUSH_INTERVAL is a pipeline setting; set it under `cache`"),
    ({"worker": {"extraEnv": [{"name": "WRITE_MODE", "value": "write-through"}]}},
     "worker.extraEnv: WRITE_MODE is a pipeline setting"),
    ({"commonLabels": {"app.kubernetes.io/part-of": "wbc"}}, "commonLabels: app.kubernetes.io/part-of is reserved"),
    ({"controller": {"clusterWide": True, "watchNamespace": "ops"}},
     "controller.watchNamespace: a cluster-wide controller (controller.clusterWide: true) watches every namespace"),
    ({"cache": {"targetSelector": {"matchLabels": {"app.kubernetes.io/component": "controller"}}}},
     "cache.targetSelector.matchLabels: {\"app.kubernetes.io/component\":\"controller\"} match the controller's own"),
    ({"worker": {"shutdownGraceSeconds": 30, "terminationGracePeriodSeconds": 30}},
     "worker.terminationGracePeriodSeconds (30) must be more than worker.shutdownGraceSeconds (30)"),
    ({"jaeger": {"enabled": True}}, "jaeger.enabled is true, but the jaeger chart is not in charts/wbc/charts: run `helm dependency build"),
    ({"kube-prometheus-stack": {"enabled": True}}, "kube-prometheus-stack.enabled is true, but the kube-prometheus-stack chart is not in"),
]


@pytest.mark.parametrize("values,message", TEMPLATE_CHECKS, ids=[m.split(":")[0] for _, m in TEMPLATE_CHECKS])
def test_a_value_the_schema_cannot_word_is_refused_by_the_templates_with_a_clear_message(values, message):
    assert message in helm_refusal(values)


def test_any_other_extra_variable_passes():
    objs = render({"api": {"extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}]}})
    (api,) = [o.obj for o in objs if o.kind == "Deployment" and o.name.endswith("-api")]
    assert {"name": "RUST_BACKTRACE", "value": "1"} in api["spec"]["template"]["spec"]["containers"][0]["env"]


def test_the_cache_defaults_are_the_crds_defaults():
    # values.yaml's cache section is generated from the CRD (render.sh), which carries the binaries' defaults
    from conftest import crd

    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    cache = yaml.safe_load((CHART / "values.yaml").read_text())["cache"]
    for field, schema in spec.items():
        if "default" in schema and field != "targetSelector":
            assert cache[field] == schema["default"], f"cache.{field}: {cache[field]!r} != CRD default {schema['default']!r}"
    assert set(spec) - {"targetSelector"} <= set(cache)
