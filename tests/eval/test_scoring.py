"""Scoring against `expect`, as SCENARIOS.md defines top-1, top-3, mentions and runbook."""

from types import SimpleNamespace

from bot.eval.scoring import same_resource, score


def expect(category="memory_limit", resource="Deployment/shop/checkout", mentions=(), runbook=None, forbid=()):
    return SimpleNamespace(category=category, resource=resource, mentions=list(mentions), runbook=runbook,
                           forbid=list(forbid))


def h(category, resource):
    return {"category": category, "resource": resource}


def test_resources_compare_kind_case_insensitively_and_names_exactly():
    assert same_resource("deployment/shop/checkout", "Deployment/shop/checkout")
    assert not same_resource("Deployment/shop/Checkout", "Deployment/shop/checkout")
    assert same_resource("Node/worker-1", "Node/worker-1") and not same_resource("Node/worker-1", "Node/x/worker-1")
    assert same_resource("-", "-")


def test_top1_top3_and_acceptable_category_lists():
    ranked = [h("bad_deploy", "Deployment/shop/checkout"), h("memory_limit", "Deployment/shop/checkout")]
    result = score(expect(), ranked, "")
    assert not result.top1 and result.top3
    assert score(expect(category=["image_pull", "bad_deploy"]), ranked, "").top1
    assert not score(expect(resource="Deployment/shop/other"), ranked, "").top3
    assert not score(expect(), [], "").top3


def test_mentions_are_case_insensitive_and_every_one_is_needed():
    result = score(expect(mentions=["OOMKilled", "256Mi"]), [], "container was oomkilled at its 256Mi limit")
    assert result.mentions_ok
    missing = score(expect(mentions=["OOMKilled", "512Mi"]), [], "OOMKilled")
    assert not missing.mentions_ok and missing.missing_mentions == ["512Mi"]


def test_runbook_columns_stay_empty_until_runbooks_are_proposed():
    assert score(expect(runbook="raise-memory-limit"), [], "").runbook_ok is None
    proposed = score(expect(runbook="raise-memory-limit", forbid=["delete-pod"]), [], "",
                     ["raise-memory-limit", "delete-pod"])
    assert proposed.runbook_ok is False and proposed.forbidden == ["delete-pod"]
