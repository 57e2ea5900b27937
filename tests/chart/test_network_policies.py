"""The chart's NetworkPolicies, proven with a policy analyzer that someone else wrote: network-config-analyzer
(`nca`, in a venv of its own) computes from the rendered workloads and policies, placed in a small cluster
of other namespaces, which pod may open which connection. Each test compares its whole answer for the
release's pods with the connections the README's "Network policies" lists: any connection missing or
extra fails it. The local test node cannot enforce policies (its bridge CNI enforces none), so this is
where they are proven."""
from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from conftest import NAMESPACE, one, render, tool

ANYWHERE = ("0.0.0.0-255.255.255.255", "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
API, WORKER, CONTROLLER = (f"{NAMESPACE}/wbc-{c}[Deployment]" for c in ("api", "worker", "controller"))
REDIS, POSTGRESQL = (f"{NAMESPACE}/wbc-{c}[StatefulSet]" for c in ("redis", "postgresql"))
HELM_TEST = f"{NAMESPACE}/wbc-test-api[Pod]"
RELEASE_PODS = (API, WORKER, CONTROLLER, REDIS, POSTGRESQL, HELM_TEST)
# the rest of the cluster: a Prometheus in the monitoring namespace, cluster DNS, and two clients
PROMETHEUS, COREDNS = "monitoring/prometheus[Pod]", "kube-system/coredns[Pod]"
FRONTEND, ELSEWHERE = "frontend/client[Pod]", "elsewhere/client[Pod]"
OTHERS = (PROMETHEUS, COREDNS, FRONTEND, ELSEWHERE)

Connection = tuple[str, str, str, str]  # source, destination, protocol, port


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}}


def pod(ns: str, name: str, labels: dict, port: int) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": name, "image": name, "ports": [{"containerPort": port}]}]}}


def policy(ns: str, ingress: list) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "only", "namespace": ns},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": ingress}}


def the_rest_of_the_cluster() -> list[dict]:
    """Namespaces around the release. Their pods accept nothing but DNS (so that the answer shows what the
    release's pods may reach there), and open any connection (so that it shows what the release accepts)."""
    dns = [{"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]
    return [
        namespace(NAMESPACE), namespace("monitoring"), namespace("kube-system"), namespace("frontend"),
        namespace("elsewhere"),
        pod("monitoring", "prometheus", {"app.kubernetes.io/name": "prometheus"}, 9090),
        pod("kube-system", "coredns", {"k8s-app": "kube-dns"}, 53),
        pod("frontend", "client", {"app": "client"}, 8080),
        pod("elsewhere", "client", {"app": "client"}, 8080),
        policy("monitoring", []), policy("frontend", []), policy("elsewhere", []), policy("kube-system", dns),
    ]


def parse_connections(text: str) -> set[Connection]:
    """nca's connectivity map (txt_no_fw_rules): `src => dst : {protocols:TCP, UDP,dst_ports:53}` or
    `src => dst : All connections`, one line per pair."""
    found = set()
    for line in text.splitlines():
        match = re.fullmatch(r"(\S+) => (\S+) : (.+)", line.strip())
        if not match:
            continue
        src, dst, conns = match.groups()
        if conns == "All connections":
            found.add((src, dst, "all", "all"))
            continue
        parts = re.findall(r"\{protocols:([A-Z, ]+),dst_ports:([0-9,-]+)\}", conns)
        assert parts, f"nca's answer has a form this test does not read: {line!r}"
        for protocols, ports in parts:
            for protocol in protocols.split(","):
                for port in ports.split(","):
                    found.add((src, dst, protocol.strip(), port))
    return found


def connectivity(values: dict) -> set[Connection]:
    """nca's connectivity map of the chart rendered with `values`, for the connections that involve the
    release's pods."""
    objs = render(values)
    release = [o.obj for o in objs if o.kind in ("Deployment", "StatefulSet", "Pod", "NetworkPolicy")]
    with tempfile.TemporaryDirectory() as tmp:
        # only the objects nca reads: it skips a whole file that holds "{{" (the dashboard's ConfigMap does)
        (Path(tmp) / "cluster.yaml").write_text(yaml.safe_dump_all(the_rest_of_the_cluster() + release))
        command = [str(tool("nca")), "--connectivity", "-r", tmp, "-o", "txt_no_fw_rules", "--print_ipv6"]
        run = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert run.returncode == 0, f"nca failed ({run.returncode}):\n{run.stderr}\n{run.stdout}"
    found = parse_connections(run.stdout)
    assert found, f"nca found no connection at all:\n{run.stdout}\n{run.stderr}"
    return {c for c in found if c[0] in RELEASE_PODS or c[1] in RELEASE_PODS}


def tcp(src: str, dst: str, *ports: int) -> set[Connection]:
    return {(src, dst, "TCP", str(p)) for p in ports}


def expected(api_clients: tuple[str, ...]) -> set[Connection]:
    """The README's list: `api_clients` may reach the API besides the pods that always may."""
    want: set[Connection] = set()
    for pod_ in RELEASE_PODS:  # DNS, to the cluster's DNS pods or any address
        for dns in ANYWHERE + (COREDNS,):
            want |= {(pod_, dns, protocol, "53") for protocol in ("TCP", "UDP")}
    for address in ANYWHERE:  # the Kubernetes API server
        want |= tcp(CONTROLLER, address, 443, 6443)
    for client in (API, WORKER):
        want |= tcp(client, REDIS, 6379) | tcp(client, POSTGRESQL, 5432)
    want |= tcp(CONTROLLER, API, 8000) | tcp(CONTROLLER, WORKER, 8001)  # /readyz of the pods it rolls
    want |= tcp(HELM_TEST, API, 8000)
    want |= tcp(PROMETHEUS, API, 8000) | tcp(PROMETHEUS, WORKER, 8001) | tcp(PROMETHEUS, CONTROLLER, 8080)
    for client in api_clients:
        want |= tcp(client, API, 8000)
    return want


def assert_exactly(found: set[Connection], want: set[Connection]) -> None:
    missing, extra = sorted(want - found), sorted(found - want)
    assert not missing and not extra, (
        "nca's connectivity map differs from the README's list\n"
        + "".join(f"  missing: {c}\n" for c in missing) + "".join(f"  extra:   {c}\n" for c in extra))


def test_without_policies_nca_answers_that_every_pod_reaches_every_pod():
    found = connectivity({"networkPolicy": {"enabled": False}})
    pairs = [(src, dst) for src in RELEASE_PODS for dst in RELEASE_PODS + ANYWHERE if src != dst]
    pairs += [(src, dst) for src in OTHERS + ANYWHERE for dst in RELEASE_PODS]
    not_all = [f"{src} => {dst}" for src, dst in pairs if (src, dst, "all", "all") not in found]
    assert not not_all, "not 'All connections':\n" + "\n".join(not_all)


def test_by_default_the_release_opens_exactly_the_listed_connections_and_the_api_accepts_anyone():
    assert_exactly(connectivity({}), expected(api_clients=ANYWHERE + OTHERS))


def test_a_restricted_api_accepts_only_the_named_namespace_and_the_release_s_own_callers():
    frontend_only = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "frontend"}}}]
    found = connectivity({"networkPolicy": {"api": {"from": frontend_only}}})
    assert_exactly(found, expected(api_clients=(FRONTEND,)))
    assert (ELSEWHERE, API, "TCP", "8000") not in found


def test_traces_open_the_collector_s_port_and_no_scraping_namespace_leaves_the_metrics_ports_closed():
    values = {"tracing": {"otlpEndpoint": "http://otel-collector.observability:4318"},
              "networkPolicy": {"metrics": {"namespaces": []}}}
    want = {c for c in expected(api_clients=ANYWHERE + OTHERS) if c[0] != PROMETHEUS} | tcp(PROMETHEUS, API, 8000)
    for client in (API, WORKER):
        for address in ANYWHERE:
            want |= tcp(client, address, 4318)
    assert_exactly(connectivity(values), want)


@pytest.mark.parametrize("endpoint,port", [
    ("http://otel-collector.observability:4318", 4318), ("http://[fd00::1]:4317/v1", 4317),
    ("https://otel.example.com", 443), ("http://[fd00::1]", 80),
])
def test_the_collector_s_port_comes_from_the_endpoint_s_url_else_from_its_scheme(endpoint, port):
    for component in ("api", "worker"):
        egress = one(render({"tracing": {"otlpEndpoint": endpoint}}), "NetworkPolicy", f"wbc-{component}")["spec"]["egress"]
        assert {"ports": [{"protocol": "TCP", "port": port}]} in egress, egress
