"""The API's bearer tokens: the chart makes a random admin token in a Secret (or takes the user's),
mounts it as a file into the API and the `helm test` Pod only, and passes no token through the
environment; the products token is the same, off by default."""
from __future__ import annotations

import base64

import pytest
from test_values import helm_refusal

from conftest import VARIANTS, env_of, find, one, pod_templates, render, render_variant

TOKENS = "/etc/wbc/tokens"


def token_files(spec) -> dict[str, tuple[str, str]]:
    """The token files mounted into a pod: path -> (Secret, key)."""
    (container,) = [c for c in spec["containers"] if c["name"] == "api"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "api-tokens"]
    assert mount == {"name": "api-tokens", "mountPath": TOKENS, "readOnly": True}
    (volume,) = [v for v in spec["volumes"] if v["name"] == "api-tokens"]
    return {f"{TOKENS}/{item['path']}": (source["secret"]["name"], item["key"])
            for source in volume["projected"]["sources"] for item in source["secret"]["items"]}


def api(objs):
    return one(objs, "Deployment", "wbc-api")["spec"]["template"]["spec"]


def token_env(spec) -> dict[str, str]:
    return {k: e["value"] for k, e in env_of(spec["containers"][0]).items() if "_TOKEN" in k}


def test_by_default_a_random_admin_token_is_made_and_mounted_into_the_api_as_a_file():
    objs = render()
    secret = one(objs, "Secret", "wbc-api-tokens")
    assert set(secret["data"]) == {"admin-token"}
    token = base64.b64decode(secret["data"]["admin-token"]).decode()
    assert len(token) == 32 and token.isalnum(), "a random token the API accepts (16 or more characters)"
    assert token != base64.b64decode(one(render({"logLevel": "debug"}), "Secret", "wbc-api-tokens")["data"]["admin-token"]).decode(), \
        "each fresh install (no Secret to look up) gets a token of its own"
    assert token_env(api(objs)) == {"ADMIN_TOKEN_FILE": f"{TOKENS}/admin-token"}
    assert token_files(api(objs)) == {f"{TOKENS}/admin-token": ("wbc-api-tokens", "admin-token")}


def test_the_helm_test_pod_mounts_the_admin_token_and_sends_it():
    objs = render()
    pod = one(objs, "Pod", "wbc-test-api")["spec"]
    assert token_files(pod) == {f"{TOKENS}/admin-token": ("wbc-api-tokens", "admin-token")}
    script = pod["containers"][0]["args"][0]
    assert f'tokens="{TOKENS}"' in script and 'Authorization: Bearer $(cat "$tokens/admin-token")' in script


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_only_the_api_and_its_test_mount_a_token_and_no_token_is_in_the_environment(variant):
    for kind_name, spec in pod_templates(render_variant(variant)):
        volumes = {v["name"] for v in spec.get("volumes", [])}
        assert ("api-tokens" in volumes) == (kind_name in ("Deployment/wbc-api", "Pod/wbc-test-api")), kind_name
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            names = {e["name"] for e in c.get("env", [])}
            assert not names & {"ADMIN_TOKEN", "PRODUCTS_TOKEN"}, f"{kind_name}: a token in the environment"
            for e in c.get("env", []):
                assert "valueFrom" not in e or "secretKeyRef" not in e["valueFrom"], f"{kind_name}: {e}"


def test_an_existing_secret_is_used_instead_and_no_secret_is_made():
    objs = render({"api": {"adminToken": {"existingSecret": "my-tokens", "existingSecretKey": "admin"}}})
    assert not find(objs, "Secret", "wbc-api-tokens")
    assert token_files(api(objs)) == {f"{TOKENS}/admin-token": ("my-tokens", "admin")}
    assert token_files(one(objs, "Pod", "wbc-test-api")["spec"]) == {f"{TOKENS}/admin-token": ("my-tokens", "admin")}


def test_the_products_token_is_off_by_default_and_made_or_taken_like_the_admin_token():
    objs = render({"api": {"productsToken": {"enabled": True}}})
    secret = one(objs, "Secret", "wbc-api-tokens")
    assert set(secret["data"]) == {"admin-token", "products-token"}
    assert secret["data"]["admin-token"] != secret["data"]["products-token"]
    assert token_env(api(objs)) == {"ADMIN_TOKEN_FILE": f"{TOKENS}/admin-token",
                                    "PRODUCTS_TOKEN_FILE": f"{TOKENS}/products-token"}
    assert token_files(api(objs))[f"{TOKENS}/products-token"] == ("wbc-api-tokens", "products-token")
    assert 'Bearer $(cat "$tokens/products-token")' in one(objs, "Pod", "wbc-test-api")["spec"]["containers"][0]["args"][0]
    objs = render({"api": {"adminToken": {"existingSecret": "mine"},
                           "productsToken": {"enabled": True, "existingSecret": "theirs", "existingSecretKey": "t"}}})
    assert not find(objs, "Secret", "wbc-api-tokens")
    assert token_files(api(objs)) == {f"{TOKENS}/admin-token": ("mine", "token"), f"{TOKENS}/products-token": ("theirs", "t")}


@pytest.mark.parametrize("values,field", [
    ({"api": {"adminToken": {"existingSecretKey": ""}}}, "/api/adminToken/existingSecretKey"),
    ({"api": {"extraEnv": [{"name": "ADMIN_TOKEN", "value": "x" * 32}]}},
     "api.extraEnv: ADMIN_TOKEN comes from a mounted Secret; name your own with api.adminToken.existingSecret"),
    ({"api": {"extraEnv": [{"name": "PRODUCTS_TOKEN_FILE", "value": "/t"}]}},
     "api.extraEnv: PRODUCTS_TOKEN_FILE comes from a mounted Secret; name your own with api.productsToken.existingSecret"),
    ({"api": {"productsToken": {"enabled": "yes"}}}, "/api/productsToken/enabled"),
    ({"api": {"adminToken": {"token": "inline"}}}, "additional properties 'token' not allowed"),
])
def test_bad_token_values_are_refused_by_name(values, field):
    message = helm_refusal(values)
    assert field in message, message
