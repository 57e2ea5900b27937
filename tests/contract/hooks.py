"""schemathesis hooks of the API contract (scripts/contract.sh).

- `refusal_names_the_field`: a check of our own (schemathesis has none like it): every 4xx answer is the
  API's JSON error body, `{"error": "<field>: <reason>", "field": "<field>"}`, and the field it names is
  one the request had or could have had (a field of the body or of its schema, a path or query
  parameter) or one of the named parts of a request (`body`, `content-type`, ...).
- `map_case` (exact prices): the document says a price is a number with `multipleOf: 0.01`, which is
  right: the API refuses a price with more than two decimals. A fuzzer that draws such numbers as binary
  floats (7 × 0.01 = 0.07000000000000001) sends prices that are not multiples of 0.01 in decimal, which
  the API rightly refuses, and reports a valid request refused. For the cases meant to be valid, the hook
  writes each price as the two-decimal number the float stands for; the document stays as it is.
  schemathesis 4.32.5 already draws them as exact decimals (measured: in a run without the hook, all 486
  valid cases' prices had at most two decimals), so today it changes nothing; it keeps a float from
  reaching the API as a valid price when the fuzzer's version changes.
- `sent_as_drawn`: for the replay's optional body, schemathesis 4.32 counts some cases it sends without
  a body as negative ones (it decides after generation that the case is negative), though no body is
  valid there, and then reports the API's 200 as a schema-violating request accepted. Only that failure,
  for a request sent without a body to an operation whose body is optional, is dropped.
"""

from decimal import Decimal

import schemathesis
from schemathesis.core import NotSet
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode

# Parts of a request a refusal names besides its fields and parameters (see api/src/error.rs).
REQUEST_PARTS = {"body", "query", "content-type", "authorization", "method", "path", "request"}


def _named_in_schema(case):
    """The property names of the operation's JSON request body schemas."""
    names = set()
    body = case.operation.definition.raw.get("requestBody") or {}
    for media in (body.get("content") or {}).values():
        schema = media.get("schema") or {}
        ref = schema.get("$ref")
        if ref:
            schema = case.operation.schema.raw_schema
            for part in ref.lstrip("#/").split("/"):
                schema = schema.get(part, {})
        names.update((schema.get("properties") or {}).keys())
    return names


@schemathesis.check
def refusal_names_the_field(ctx, response, case):
    """Every 4xx answer is the JSON error body naming the field (or part of the request) it refuses."""
    if not 400 <= response.status_code < 500:
        return None
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"a {response.status_code} answer without a JSON error body: {response.text[:200]!r}")
    if not isinstance(body, dict):
        raise AssertionError(f"a {response.status_code} answer whose body is not an object: {body!r}")
    field, error = body.get("field"), body.get("error")
    if not isinstance(field, str) or not field:
        raise AssertionError(f"a {response.status_code} answer that names no field: {body!r}")
    if not isinstance(error, str) or not error.startswith(f"{field}: "):
        raise AssertionError(f"the error does not start with the field it names ({field!r}): {body!r}")
    known = set(REQUEST_PARTS) | _named_in_schema(case)
    known |= set((case.path_parameters or {}).keys()) | set((case.query or {}).keys())
    if isinstance(case.body, dict):
        known |= set(case.body.keys())
    if field not in known:
        raise AssertionError(f"the refusal names {field!r}, which the request has no such field as: {body!r}")
    return None


def _two_decimals(value):
    """The price a float drawn for `multipleOf: 0.01` stands for, as a number with two decimals at most."""
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        cents = Decimal(repr(value)).quantize(Decimal("0.01"))
        # Python writes a float by its shortest round-trip text, which for these is the two decimals.
        return float(cents)
    return value


def _exact_prices(value):
    if isinstance(value, dict):
        return {k: _two_decimals(v) if k == "price" else _exact_prices(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_exact_prices(v) for v in value]
    return value


def _body_mode(case):
    info = case.meta.components.get(ParameterLocation.BODY) if case.meta else None
    return info.mode if info is not None else None


@schemathesis.hook
def map_case(ctx, case):
    if _body_mode(case) == GenerationMode.POSITIVE:
        case.body = _exact_prices(case.body)
    return case


def _sent_without_body(case):
    return case.body is None or isinstance(case.body, NotSet)


@schemathesis.hook("filter_failure")
def sent_as_drawn(ctx, failure, case, response):
    """Drops "schema-violating request accepted" for a request that was sent without a body to an
    operation whose body is optional: nothing in it breaks the document."""
    body = case.operation.definition.raw.get("requestBody") or {}
    optional = body and not body.get("required", False)
    return not (failure.code == "ST201" and optional and _sent_without_body(case))
