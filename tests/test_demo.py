"""The demo, as `./scripts/demo` runs it: a shared scenario through the whole local stack."""

import re

from bot.cli import main
from bot.demo import DEFAULT_SCENARIO, replay
from bot.sandbox.kube.deployment import REVISION_HISTORY
from bot.sandbox.kube.pods import HASH_LABEL
from bot.sandbox.kube.reconciler import REVISION
from bot.sandbox.paths import shared_scenarios_dir
from bot.sandbox.scenario import load_scenario


def test_demo_replays_a_scenario_and_prints_the_thread(capsys, prometheus_binary, alertmanager_binary):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "sandbox cluster dc1-prod" in out and "read back 6 pods" in out
    assert "samples backfilled" in out
    assert "INC-1 · KubePodCrashLooping" in out
    assert "Namespace    orders" in out and "Service      orders-api" in out
    assert "Cluster      dc1-prod" in out


def test_demo_on_another_scenario(capsys, prometheus_binary, alertmanager_binary):
    scenario = shared_scenarios_dir() / "storefront-rollout-image-not-found.yaml"
    assert main(["demo", "--scenario", str(scenario)]) == 0
    assert "Service      storefront" in capsys.readouterr().out


def test_demo_with_a_missing_or_broken_scenario_says_so(capsys, tmp_path):
    assert main(["demo", "--scenario", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: x\ncolour: blue\n")
    assert main(["demo", "--scenario", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "broken.yaml" in err and "Traceback" not in err


def test_demo_auto_approve_runs_the_incident_to_resolution(capsys, prometheus_binary, alertmanager_binary):
    assert main(["demo", "--auto-approve"]) == 0
    out = capsys.readouterr().out
    assert "▸ approving P-1 as @alice (U0ALICE), a member of @oncall, the approver group of the demo's policy: " \
        "Roll orders-api back to revision 21" in out
    assert "Approved: Roll orders-api back to revision 21" in out, "the bot accepted the click under its policy"
    assert "▸ waiting for verification" in out
    verified = re.search(r"▸ verified: (max\(.*kube_deployment_status_replicas_available\{.*\}.*\)) = (\S+) "
                         r"\(expects >= 1; (\S+) when the step was applied, (\d+) samples\)", out)
    assert verified and "deployment=\"orders-api\"" in verified.group(1)
    assert float(verified.group(2)) >= 1 and int(verified.group(4)) >= 2
    assert verified.group(3) == "0.75", "the check read the broken revision's pod before the rollback"
    assert "orders-api pods 4 → 3" in out and "unavailable 1 → 0" in out, "Prometheus saw the cluster recover"
    assert "KubePodCrashLooping sent to Alertmanager again with endsAt" in out
    assert "▸ INC-1 resolved by its source" in out
    thread = out.split("The Slack thread opsbot produced:", 1)[1]
    assert "Status       Resolved by source" in thread
    assert "succeeded and verified" in thread and "before 0.75, now 1" in thread
    assert "Postmortem of INC-1" in thread


def _revision_of(obj: dict) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get(REVISION)


def test_after_the_auto_approved_rollback_the_previous_revision_serves(tmp_path, prometheus_binary,
                                                                        alertmanager_binary):
    scenario = load_scenario(shared_scenarios_dir() / DEFAULT_SCENARIO)
    sets = {o["metadata"]["name"]: _revision_of(o) for o in scenario.cluster.objects if o["kind"] == "ReplicaSet"
            and o["metadata"]["name"].startswith("orders-api-")}
    previous = next(name for name, revision in sets.items() if revision == "21")
    broken = next(name for name, revision in sets.items() if revision == "22")
    cluster = replay(scenario, tmp_path, auto_approve=True).cluster

    deployment = cluster.get("Deployment", "orders", "orders-api")
    assert _revision_of(deployment) == "23", "a rollback is a new revision"
    rolled_back = cluster.get("ReplicaSet", "orders", previous)
    assert _revision_of(rolled_back) == "23" and rolled_back["metadata"]["annotations"][REVISION_HISTORY] == "21"
    assert cluster.get("ReplicaSet", "orders", broken)["spec"]["replicas"] == 0
    pods = [p for p in cluster.list("Pod", "orders") if p["metadata"]["labels"].get("app") == "orders-api"]
    assert sorted(p["metadata"]["labels"][HASH_LABEL] for p in pods) == [previous.removeprefix("orders-api-")] * 3
    for pod in pods:
        assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"
        assert [(c["image"], c["ready"]) for c in pod["status"]["containerStatuses"]] == [
            ("ghcr.io/northwind/orders-api:4.11.3", True)]
    status = deployment["status"]
    assert (status["replicas"], status["availableReplicas"], status["updatedReplicas"]) == (3, 3, 3)
    assert "unavailableReplicas" not in status


def test_auto_approve_with_nothing_to_approve_says_what_did_not_happen(capsys, prometheus_binary,
                                                                       alertmanager_binary):
    scenario = shared_scenarios_dir() / "token-service-serving-cert-expired.yaml"
    assert main(["demo", "--auto-approve", "--scenario", str(scenario)]) == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("opsbot demo:")]
    assert line.startswith("opsbot demo: the RCA of INC-1 proposed no step to approve (no runbook matches ")
    assert "Traceback" not in err


def test_explain_reads_what_the_demo_kept(capsys, monkeypatch, prometheus_binary, alertmanager_binary):
    """`opsbot demo --keep`, then `opsbot explain INC-1` on the state it kept: the same incident,
    its cause and the step waiting for approval, from the database the demo's bot wrote."""
    import re
    import shutil

    assert main(["demo", "--keep"]) == 0
    printed = capsys.readouterr().out
    kept = re.search(r"state kept in (\S+);", printed).group(1)
    try:
        # the command the demo prints: its own database wins over any DATABASE_URL around
        monkeypatch.setenv("OPSBOT_DATABASE_URL", re.search(r"`OPSBOT_DATABASE_URL=(\S+) opsbot", printed).group(1))
        assert main(["explain", "INC-1"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("INC-1: KubePodCrashLooping")
        assert "Bad rollout on Deployment/orders/orders-api" in out and "P-1 waits for 1 approval(s) from oncall" in out
    finally:
        shutil.rmtree(kept, ignore_errors=True)
