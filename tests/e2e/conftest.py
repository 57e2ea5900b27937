"""The end-to-end suite against a real cluster: kind, or the local node of scripts/k8s/node.sh.

It takes everything from the environment (scripts/k8s/e2e.sh sets it for the local node, `make
e2e-kind` for kind):
  KUBECONFIG                 the cluster (required; without it every test is skipped, saying so)
  WBC_E2E_VALUES             values files for the chart, separated by commas
  WBC_E2E_API_IMAGE, WBC_E2E_WORKER_IMAGE, WBC_E2E_CONTROLLER_IMAGE
                             image names (repository:tag) that override the values files
  WBC_E2E_API_URL            the API's Service as the host reaches it (default http://localhost:8000,
                             kind-config.yaml's mapping of the node port 30800)
  WBC_E2E_NAMESPACE          the namespace of the release (default wbc-e2e; created and deleted)
  WBC_E2E_PAUSE_IMAGE        an image that only sleeps, for a Deployment of test_2_operator (default the
                             local node's k8s.local/pause:3.4.1; scripts/kind/kind.sh passes registry.k8s.io's)
  WBC_E2E_KEEP=1             leave the release installed after a failure, to look at it
  WBC_VERIFY                 the wbc-verify binary that judges the load tests' writes (required by
                             test_0_verdict, test_3_mode_switch and test_4_chaos; scripts/build-verify.sh)
  WBC_CHAOS_DURATION, WBC_CHAOS_INTERVAL, WBC_CHAOS_WRITERS, WBC_CHAOS_KEYS, WBC_CHAOS_RATE
                             the size of the pod-kill chaos (test_4_chaos.py)
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from cluster import Cluster, deep_merge, log

ROOT = Path(__file__).resolve().parents[2]


def env_values() -> dict:
    values: dict = {}
    for path in filter(None, os.environ.get("WBC_E2E_VALUES", "").split(",")):
        values = deep_merge(values, yaml.safe_load((ROOT / path).read_text() if not Path(path).is_absolute()
                                                   else Path(path).read_text()) or {})
    for component in ("api", "worker", "controller"):
        image = os.environ.get(f"WBC_E2E_{component.upper()}_IMAGE")
        if image:
            repository, _, tag = image.rpartition(":")
            if not repository or "/" in tag:
                raise pytest.UsageError(f"WBC_E2E_{component.upper()}_IMAGE={image!r}: expected repository:tag")
            values = deep_merge(values, {component: {"image": {"repository": repository, "tag": tag}}})
    return values


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        pytest.skip("KUBECONFIG is not set: the end-to-end suite needs a cluster (scripts/k8s/e2e.sh starts one)")
    return Cluster(kubeconfig=kubeconfig, namespace=os.environ.get("WBC_E2E_NAMESPACE", "wbc-e2e"),
                   api_url=os.environ.get("WBC_E2E_API_URL", "http://localhost:8000"), values=env_values())


@pytest.fixture(scope="session")
def release(cluster: Cluster, request):
    """The chart installed once for the whole session; removed at the end with its namespace."""
    cluster.kubectl("delete", "namespace", cluster.namespace, "--ignore-not-found", "--wait=true",
                    namespaced=False, timeout=300)
    began = time.monotonic()
    installed = cluster.install()
    seconds = time.monotonic() - began
    log(f"helm install: release {installed['name']} revision {installed['revision']} in {seconds:.1f} s")
    yield {"release": installed, "seconds": seconds}
    if request.session.testsfailed and os.environ.get("WBC_E2E_KEEP") == "1":
        log(f"WBC_E2E_KEEP=1: leaving namespace {cluster.namespace} as it is")
        return
    cluster.uninstall()
    cluster.kubectl("delete", "namespace", cluster.namespace, "--ignore-not-found", "--wait=true",
                    namespaced=False, timeout=300)
