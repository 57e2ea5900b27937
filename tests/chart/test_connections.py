"""How the API and worker reach Redis and PostgreSQL: addresses, TLS, and credentials that come only
from Secrets mounted as files, never through the environment."""
from __future__ import annotations

import re

import pytest

from conftest import NAMESPACE, VARIANTS, env_of, find, merge, one, pod_templates, render, render_variant

STORE_FILES = "/etc/wbc/stores"


def container(objs, kind, name):
    return one(objs, kind, name)["spec"]["template"]["spec"]["containers"][0]


def pod_spec(objs, kind, name):
    return one(objs, kind, name)["spec"]["template"]["spec"]


def store_files(objs, name) -> dict[str, tuple[str, str]]:
    """The files of the stores mounted into a Deployment's pods: path -> (Secret, key)."""
    spec = pod_spec(objs, "Deployment", name)
    (mount,) = [m for m in spec["containers"][0].get("volumeMounts", []) if m["name"] == "store-files"]
    assert mount == {"name": "store-files", "mountPath": STORE_FILES, "readOnly": True}
    (volume,) = [v for v in spec["volumes"] if v["name"] == "store-files"]
    files = {}
    for source in volume["projected"]["sources"]:
        for item in source["secret"]["items"]:
            files[f"{STORE_FILES}/{item['path']}"] = (source["secret"]["name"], item["key"])
    return files


def file_settings(objs, name) -> dict[str, tuple[str, str]]:
    """Each *_FILE variable of a store of a Deployment -> the (Secret, key) mounted where it points
    (the API's tokens are mounted elsewhere: test_auth.py)."""
    env, files = env_of(container(objs, "Deployment", name)), store_files(objs, name)
    return {k: files[e["value"]] for k, e in env.items() if k.endswith("_FILE") and "_TOKEN_" not in k}


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_no_credential_passes_through_the_environment(variant):
    for kind_name, spec in pod_templates(render_variant(variant)):
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for e in c.get("env", []):
                assert "secretKeyRef" not in e.get("valueFrom", {}), f"{kind_name}: {e['name']} comes from a Secret"
                assert "PASSWORD" not in e["name"] or e["name"].endswith("_FILE"), f"{kind_name}: {e['name']}"
                assert not re.search(r"\$\([A-Z_][A-Z0-9_]*\)", str(e.get("value", ""))), f"{kind_name}: {e['name']}"
            # the kubelet's $(VAR), not a shell's $(command)
            assert not re.search(r"\$\([A-Z_][A-Z0-9_]*\)", " ".join(c.get("args", []))), f"{kind_name}: {c['args']}"


@pytest.mark.parametrize("name", ["wbc-api", "wbc-worker"])
def test_the_bundled_redis_and_postgresql_are_reached_by_service_name_with_the_generated_password(name):
    objs = render()
    env = env_of(container(objs, "Deployment", name))
    assert env["REDIS_URL"]["value"] == f"redis://wbc-redis.{NAMESPACE}.svc.cluster.local:6379"
    assert env["DATABASE_URL"]["value"] == f"postgres://wbc@wbc-postgresql.{NAMESPACE}.svc.cluster.local:5432/wbc"
    assert file_settings(objs, name) == {"DATABASE_PASSWORD_FILE": ("wbc-postgresql", "password")}
    postgres_spec = pod_spec(objs, "StatefulSet", "wbc-postgresql")
    postgres = postgres_spec["containers"][0]
    assert env_of(postgres)["POSTGRES_PASSWORD_FILE"]["value"] == "/etc/postgresql-auth/password"
    assert {"name": "auth", "mountPath": "/etc/postgresql-auth", "readOnly": True} in postgres["volumeMounts"]
    auth = next(v for v in postgres_spec["volumes"] if v["name"] == "auth")
    assert auth["secret"] == {"secretName": "wbc-postgresql", "items": [{"key": "password", "path": "password"}]}
    secret = one(objs, "Secret", "wbc-postgresql")
    assert len(secret["data"]["password"]) > 20
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_a_redis_password_is_read_from_its_mounted_secret_by_redis_and_the_binaries():
    objs = render({"redis": {"auth": {"enabled": True}}})
    env = env_of(container(objs, "Deployment", "wbc-api"))
    assert env["REDIS_URL"]["value"] == f"redis://wbc-redis.{NAMESPACE}.svc.cluster.local:6379"
    assert file_settings(objs, "wbc-api")["REDIS_PASSWORD_FILE"] == ("wbc-redis", "password")
    spec = pod_spec(objs, "StatefulSet", "wbc-redis")
    redis = spec["containers"][0]
    assert redis["command"] == ["/bin/sh", "-c"]
    assert redis["args"] == ['exec redis-server /etc/redis/redis.conf --requirepass "$(cat /etc/redis-auth/password)"']
    assert "env" not in redis
    assert {"name": "auth", "mountPath": "/etc/redis-auth", "readOnly": True} in redis["volumeMounts"]
    auth = next(v for v in spec["volumes"] if v["name"] == "auth")
    assert auth["secret"] == {"secretName": "wbc-redis", "items": [{"key": "password", "path": "password"}]}
    assert one(objs, "Secret", "wbc-redis")["data"]["password"]


def test_redis_without_a_password_runs_redis_server_directly():
    redis = container(render(), "StatefulSet", "wbc-redis")
    assert redis["command"] == ["redis-server"] and redis["args"] == ["/etc/redis/redis.conf"]


@pytest.mark.parametrize("name", ["wbc-api", "wbc-worker"])
def test_external_stores_are_reached_over_tls_with_certificates_and_passwords_from_secrets(name):
    objs = render_variant(next(v for v in VARIANTS if v.name == "external-redis-and-postgresql"))
    env = env_of(container(objs, "Deployment", name))
    assert env["REDIS_URL"]["value"] == "rediss://wbc@redis.example.internal:6380"
    assert env["DATABASE_URL"]["value"] == "postgres://wbc_app@postgres.example.internal:5433/wbc_prod?sslmode=verify-full"
    assert file_settings(objs, name) == {
        "REDIS_PASSWORD_FILE": ("wbc-external-redis", "redis-password"),
        "REDIS_CA_FILE": ("wbc-external-ca", "ca.crt"),
        "REDIS_CLIENT_CERT_FILE": ("wbc-external-redis-client", "tls.crt"),
        "REDIS_CLIENT_KEY_FILE": ("wbc-external-redis-client", "tls.key"),
        "DATABASE_PASSWORD_FILE": ("wbc-external-postgresql", "postgres-password"),
        "DATABASE_CA_FILE": ("wbc-external-ca", "ca.crt"),
        "DATABASE_CLIENT_CERT_FILE": ("wbc-external-postgresql-client", "tls.crt"),
        "DATABASE_CLIENT_KEY_FILE": ("wbc-external-postgresql-client", "tls.key"),
    }
    # no store of the chart's, and no Secret but the API's generated admin token
    assert not find(objs, "StatefulSet") and [o.name for o in find(objs, "Secret")] == ["wbc-api-tokens"]
    assert {o.name for o in find(objs, "Service")} == {"wbc-api", "wbc-worker", "wbc-controller"}


def test_external_urls_can_come_whole_from_a_secret():
    objs = render_variant(next(v for v in VARIANTS if v.name == "external-urls-from-secrets"))
    env = env_of(container(objs, "Deployment", "wbc-api"))
    assert "REDIS_URL" not in env and "DATABASE_URL" not in env
    assert file_settings(objs, "wbc-api") == {
        "REDIS_URL_FILE": ("wbc-connections", "redis-url"),
        "DATABASE_URL_FILE": ("wbc-connections", "database-url"),
    }


def test_the_controller_mounts_no_store_credential():
    spec = pod_spec(render_variant(next(v for v in VARIANTS if v.name == "external-redis-and-postgresql")),
                    "Deployment", "wbc-controller")
    assert not any("projected" in v or "secret" in v for v in spec.get("volumes", []))


def test_tls_certificates_for_an_external_redis_need_rediss():
    values = {"redis": {"enabled": False}, "externalRedis": {"host": "r", "caSecret": "ca"}}
    with pytest.raises(Exception, match="externalRedis.tls"):
        render(values)
    assert render(merge(values, {"externalRedis": {"tls": True}}))
