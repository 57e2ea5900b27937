"""The chart's `cache` values, generated from the WriteBehindCache CRD (manifests/crd.yaml, which `make crds`
generates from core's settings model): the spec's fields in values.yaml with their defaults and `# --`
descriptions, and their JSON schema in values.schema.json. So the chart can never disagree with the CRD,
and a new setting needs no edit of the chart. The keys `cache.create` and `cache.waitForConfig` are the
chart's own and stay hand-written."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "manifests" / "crd.yaml"
VALUES = ROOT / "charts" / "wbc" / "values.yaml"
SCHEMA = ROOT / "charts" / "wbc" / "values.schema.json"
# the keys of `cache` that are not fields of the spec
CHART_KEYS = ("create", "waitForConfig")
MARKER = "  # The keys below are the WriteBehindCache's spec, generated from its CRD by scripts/chart/render.sh."
SCHEMA_COMMENT = "The properties other than create and waitForConfig are generated from the CRD by scripts/chart/render.sh."


def spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def _scalar(value: Any) -> str:
    """`value` as one line of YAML, e.g. 1s, 500, 2.0, false, {}."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).removesuffix("\n...\n").strip()


def _value_lines(schema: dict[str, Any], indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    for name, field in schema["properties"].items():
        lines.append(f"{pad}# -- {' '.join(field['description'].split())}")
        if field.get("type") == "object" and "properties" in field and "default" in field:
            lines.append(f"{pad}{name}:")
            lines += _value_lines(field, indent + 2)
        else:
            # a field without a default (targetSelector) is unset: an empty object, or null
            lines.append(f"{pad}{name}: {_scalar(field.get('default', {} if field.get('type') == 'object' else None))}")
    return lines


def values_yaml(text: str | None = None) -> str:
    """values.yaml with the spec's part of `cache` regenerated: everything after MARKER up to the next
    top-level key."""
    lines = (text if text is not None else VALUES.read_text()).split("\n")
    if MARKER not in lines:
        raise RuntimeError(f"{VALUES.relative_to(ROOT)}: the line {MARKER.strip()!r} under `cache:` is missing")
    start = lines.index(MARKER) + 1
    end = next(i for i in range(start, len(lines)) if lines[i] and not lines[i].startswith(" "))
    # a blank line before the next section stays
    generated = _value_lines(spec_schema(), 2) + [""]
    return "\n".join(lines[:start] + generated + lines[end:])


def _as_values_schema(schema: Any) -> Any:
    """A CRD's OpenAPI schema as the JSON schema of values: unknown keys refused, no `nullable`, `format`
    (Kubernetes' own) or defaults (values.yaml holds them)."""
    if isinstance(schema, list):
        return [_as_values_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _as_values_schema(v) for k, v in schema.items() if k not in ("nullable", "format", "default")}
    if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


def values_schema(text: str | None = None) -> str:
    """values.schema.json with the schema of the spec's fields under `cache` regenerated from the CRD."""
    schema = json.loads(text if text is not None else SCHEMA.read_text())
    cache = schema["properties"]["cache"]
    spec = spec_schema()
    own = {k: v for k, v in cache["properties"].items() if k in CHART_KEYS}
    cache["properties"] = own | {name: _as_values_schema(field) for name, field in spec["properties"].items()}
    # values.yaml sets every field that has a default; one set to null would leave the CRD to default it
    cache["required"] = [name for name, field in spec["properties"].items() if "default" in field]
    cache["additionalProperties"] = False
    cache["$comment"] = SCHEMA_COMMENT
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def generated() -> dict[Path, str]:
    """The two files, as they should be."""
    return {VALUES: values_yaml(), SCHEMA: values_schema()}
