"""What the chart gives the controller so that it holds up against what users do: its own Deployment, which
no cache may roll, and a `helm uninstall` that removes the chart's cache even before any upgrade."""
from __future__ import annotations

from conftest import CR_SERVED, NAMESPACE, RELEASE, find, one, render


def controller_env(objs) -> dict[str, str]:
    deployment = one(objs, "Deployment", f"{RELEASE}-controller")
    return {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_controller_knows_its_own_deployment_which_no_cache_may_roll():
    objs = render()
    assert controller_env(objs)["OWN_DEPLOYMENT"] == f"{NAMESPACE}/{RELEASE}-controller"


def test_before_any_upgrade_a_pre_delete_hook_deletes_the_caches_that_helm_would_leave_behind():
    objs = render()
    job = one(objs, "Job", f"{RELEASE}-delete-cache")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    assert "hook-succeeded" in job["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    pod = job["spec"]["template"]["spec"]
    controller = one(objs, "Deployment", f"{RELEASE}-controller")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == controller["serviceAccountName"]
    assert pod["containers"][0]["image"] == controller["containers"][0]["image"]
    cache = [o.obj for o in objs if o.kind == "WriteBehindCache"][0]
    assert pod["containers"][0]["args"] == ["delete-cache", "--namespace", NAMESPACE, "--name",
                                            cache["metadata"]["name"]]
    # the controller's Role may delete that one cache and nothing else
    rules = one(objs, "Role", f"{RELEASE}-controller")["rules"]
    deleting = [r for r in rules if "delete" in r["verbs"]]
    assert deleting == [{"apiGroups": ["wbc.dev"], "resources": ["writebehindcaches"],
                         "resourceNames": [cache["metadata"]["name"]], "verbs": ["delete"]}]


def test_after_an_upgrade_the_cache_is_part_of_the_release_and_needs_no_hook():
    objs = render(api_versions=CR_SERVED)
    assert not find(objs, "Job")
    rules = one(objs, "Role", f"{RELEASE}-controller")["rules"]
    assert not [r for r in rules if "delete" in r["verbs"]]


def test_without_the_charts_cache_there_is_nothing_to_delete():
    assert not find(render({"cache": {"create": False}}), "Job")
