"""renew-certificate: the runbook lints and is matched only to an expired cert-manager Certificate;
`certificate.renew` does what `cmctl renew` does (the Issuing condition through the status
subresource) against the sandbox API server, dry run first, and writes nothing when cert-manager
is already issuing or has already renewed."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from kubernetes import client as k8s

from bot.remediation import catalog, operations
from bot.remediation.kube_write import KubeWriter, WriteError
from bot.runtime import REPO
from bot.sandbox.kube import sandbox_api_client
from bot.sandbox.kube.state_metrics import render
from bot.sandbox.paths import shared_scenarios_dir
from bot.sandbox.scenario import Scenario
from tests.remediation.world import ALICE, BOB, world  # noqa: F401 - fixture
from tests.sandbox.kube.conftest import NOW, api, cluster, server  # noqa: F401

NOT_AFTER = NOW + timedelta(days=5)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def certificate(name: str = "orders", conditions: list[dict] | None = None) -> dict:
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": name, "namespace": "shop", "generation": 3},
        "spec": {
            "secretName": f"{name}-tls",
            "dnsNames": [f"{name}.example.com"],
            "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer", "group": "cert-manager.io"},
        },
        "status": {
            "notAfter": stamp(NOT_AFTER),
            "renewalTime": stamp(NOW - timedelta(days=1)),
            "conditions": conditions
            if conditions is not None
            else [{"type": "Ready", "status": "True", "reason": "Ready", "message": "up to date"}],
        },
    }


@pytest.fixture
def writer(api):  # noqa: F811
    return KubeWriter(api)


def renew_values(name: str = "orders", not_after: datetime = NOT_AFTER) -> dict:
    return {"namespace": "shop", "name": name, "not_after": int(not_after.timestamp())}


def test_the_runbook_lints_and_is_proposed_only_for_an_expired_cert_manager_certificate():
    loaded = catalog.load_catalog(REPO / "runbooks")
    runbook = loaded.get("renew-certificate")
    assert runbook is not None and not [w for w in loaded.warnings if w.startswith("renew-certificate")]
    step = runbook.steps[0]
    assert (step.operation, step.risk, step.approval.groups, step.approval.approvals) == (
        "certificate.renew",
        "low",
        ["oncall"],
        1,
    )
    assert step.rollback is not None and step.rollback.none and step.rollback.operation is None
    assert step.verify is not None and step.verify.within_seconds == 600
    facts = {
        "kind": "Certificate",
        "namespace": "shop",
        "name": "orders",
        "managed_by": "cert-manager",
        "not_after": "1790000000",
    }
    candidates, _ = catalog.match(loaded, "certificate_expired", facts, [])
    assert [(c.runbook.id, c.params) for c in candidates] == [
        ("renew-certificate", {"namespace": "shop", "name": "orders", "not_after": 1790000000})
    ]
    assert catalog.match(loaded, "certificate_expired", {**facts, "kind": "Secret"}, [])[0] == []
    assert catalog.match(loaded, "certificate_expired", {**facts, "managed_by": "Helm"}, [])[0] == []
    without_fact = {k: v for k, v in facts.items() if k != "managed_by"}
    assert catalog.match(loaded, "certificate_expired", without_fact, [])[0] == []
    for category in ("bad_deploy", "config_error", "dependency_unreachable"):
        assert all(c.runbook.id != "renew-certificate" for c in catalog.match(loaded, category, facts, [])[0])
    query = catalog.render(step.verify.promql, catalog.promql_values(candidates[0].params))
    assert query == (
        'max(certmanager_certificate_expiration_timestamp_seconds{namespace="shop",name="orders"})'
        " - 1790000000"
    )


def test_renewal_sets_the_issuing_condition_through_the_status_subresource(cluster, writer):  # noqa: F811
    cluster.load([certificate()])
    plan = operations.plan(writer, "certificate.renew", renew_values())
    assert plan.diff == [("status.conditions[Issuing]", None, "True (ManuallyTriggered)")]
    assert plan.pods_affected == 0 and plan.undo is None and str(plan.target) == "Certificate/shop/orders"
    before = cluster.get("certificates.cert-manager.io", "shop", "orders")
    plan.write(writer, True)
    assert cluster.get("certificates.cert-manager.io", "shop", "orders") == before, (
        "a dry run changes nothing"
    )
    plan.write(writer, False)
    live = cluster.get("certificates", "shop", "orders")
    issuing = next(c for c in live["status"]["conditions"] if c["type"] == "Issuing")
    assert (issuing["status"], issuing["reason"], issuing["observedGeneration"]) == (
        "True",
        "ManuallyTriggered",
        3,
    )
    assert live["status"]["notAfter"] == stamp(NOT_AFTER) and live["spec"]["secretName"] == "orders-tls"
    assert [c["type"] for c in live["status"]["conditions"]] == ["Ready", "Issuing"], "Ready is kept"
    writes = [(m.verb, m.subresource, m.dry_run, m.code) for m in cluster.mutations]
    assert writes == [("patch", "status", True, 200), ("patch", "status", False, 200)]


def test_nothing_is_written_while_issuing_or_once_renewed(cluster, writer):  # noqa: F811
    issuing = {"type": "Issuing", "status": "True", "reason": "Renewing", "message": "renewal time reached"}
    cluster.load([certificate("busy", [issuing]), certificate("renewed")])
    busy = operations.plan(writer, "certificate.renew", renew_values("busy"))
    assert busy.diff == [] and "already issuing" in busy.summary
    earlier = renew_values("renewed", NOT_AFTER - timedelta(days=60))
    done = operations.plan(writer, "certificate.renew", earlier)
    assert done.diff == [] and "already renewed" in done.summary
    busy.write(writer, False)
    done.write(writer, False)
    assert cluster.mutations == []
    with pytest.raises(WriteError) as missing:
        operations.plan(writer, "certificate.renew", renew_values("nowhere"))
    assert missing.value.kind == "not_found"
    with pytest.raises(operations.InputError, match="not_after"):
        operations.validate_input("certificate.renew", {**renew_values(), "not_after": -1})


def test_a_concurrent_status_write_is_a_conflict_not_an_overwrite(cluster, writer):  # noqa: F811
    cluster.load([certificate()])
    plan = operations.plan(writer, "certificate.renew", renew_values())
    cert_manager = writer.core.api_client
    k8s.CustomObjectsApi(cert_manager).patch_namespaced_custom_object_status(
        "cert-manager.io",
        "v1",
        "shop",
        "certificates",
        "orders",
        {
            "status": {
                "conditions": [{"type": "Ready", "status": "False", "reason": "Expired", "message": "x"}]
            }
        },
    )
    with pytest.raises(WriteError) as refused:
        plan.write(writer, False)
    assert refused.value.kind == "conflict"


def test_the_sandbox_exports_cert_managers_expiry_metric(cluster):  # noqa: F811
    cluster.load([certificate(), {**certificate("unissued"), "status": {}}])
    lines = [line for line in render(cluster).splitlines() if line.startswith("certmanager_")]
    assert lines == [
        'certmanager_certificate_expiration_timestamp_seconds{namespace="shop",name="orders",'
        'issuer_name="letsencrypt",issuer_kind="ClusterIssuer",issuer_group="cert-manager.io"} '
        f"{int(NOT_AFTER.timestamp())}"
    ]


# -- the whole path: proposed by hand, approved by a signed click, verified by a real Prometheus ------


@pytest.fixture(scope="module")
def expired_certificate_scenario():
    """The shared token-service scenario, whose Secret cert-manager manages as Certificate token-service."""
    document = yaml.safe_load(
        (shared_scenarios_dir() / "token-service-serving-cert-expired.yaml").read_text()
    )
    now = datetime.fromisoformat(str(document["now"]).replace("Z", "+00:00"))
    crt = certificate("token-service")
    crt["metadata"]["namespace"] = "identity"
    crt["spec"]["secretName"] = "token-service-tls"
    crt["status"]["notAfter"] = stamp(now.replace(hour=6, minute=0))
    crt["status"]["conditions"] = [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Expired",
            "message": "Certificate expired on 2026-05-02 06:00",
        }
    ]
    document["cluster"]["objects"].append(crt)
    return Scenario.from_dict(document)


def play_cert_manager(base_url: str, stop, renewed_until: datetime) -> None:
    """What cert-manager does when it sees Issuing=True: issue, write the new notAfter, drop Issuing."""
    with sandbox_api_client(base_url) as api:
        custom = k8s.CustomObjectsApi(api)
        while not stop.is_set():
            live = custom.get_namespaced_custom_object(
                "cert-manager.io", "v1", "identity", "certificates", "token-service"
            )
            if any(
                c.get("type") == "Issuing" and c.get("status") == "True"
                for c in live.get("status", {}).get("conditions", [])
            ):
                custom.patch_namespaced_custom_object_status(
                    "cert-manager.io",
                    "v1",
                    "identity",
                    "certificates",
                    "token-service",
                    {
                        "status": {
                            "notAfter": stamp(renewed_until),
                            "conditions": [
                                {
                                    "type": "Ready",
                                    "status": "True",
                                    "reason": "Ready",
                                    "message": "up to date",
                                }
                            ],
                        }
                    },
                )
                return
            time.sleep(0.2)


@pytest.mark.prometheus
def test_an_approved_renewal_is_verified_when_cert_manager_moves_not_after(
    world, expired_certificate_scenario
):
    w = world(expired_certificate_scenario)
    w.deliver()
    old = expired_certificate_scenario.cluster.objects[-1]["status"]["notAfter"]
    not_after = int(datetime.fromisoformat(old.replace("Z", "+00:00")).timestamp())
    stop = threading.Event()
    cert_manager = threading.Thread(
        target=play_cert_manager,
        args=(w.kube.base_url, stop, datetime.now(UTC) + timedelta(days=90)),
        daemon=True,
    )
    cert_manager.start()
    try:
        w.slack.wait_for(lambda _: w.thread() or None, timeout=30)
        w.command(
            f"run INC-1 renew-certificate namespace=identity name=token-service not_after={not_after}", BOB
        )
        message = w.proposal("renew-certificate")
        assert "accepted by the API server" in str(message["blocks"]) and w.writes() == []
        assert w.click(message, "step_approve", ALICE).status_code == 200
        w.wait_status("renew-certificate", "succeeded", timeout=90)
    finally:
        stop.set()
        cert_manager.join(timeout=5)
    renew, issued = [m for m in w.writes() if m.kind == "Certificate"]
    assert (renew.verb, renew.subresource, renew.name) == ("patch", "status", "token-service")
    assert renew.body["status"]["conditions"][-1]["reason"] == "ManuallyTriggered", (
        "the bot's write, then cert-manager's"
    )
    assert issued.body["status"]["conditions"] == [
        {"type": "Ready", "status": "True", "reason": "Ready", "message": "up to date"}
    ]
