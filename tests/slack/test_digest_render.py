"""A digest as Block Kit (`bot.slack.render.digest`): golden files, the plain "no drift", the long
tail cut into the attached file, untrusted text made inert, and Block Kit's limits."""

import json
from datetime import UTC, datetime, timedelta

from bot.digests.model import DigestReport, Finding, Fix
from bot.slack.render.digest import MAX_SHOWN, render_digest, render_markdown
from tests.slack.test_card_render import check_golden, valid_blocks

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
DRIFT = DigestReport(
    name="drift", title="Drift", generated_at=NOW, headline="2 objects drifted (3 fields)",
    findings=(
        Finding(key="drift/-/Deployment/shop/orders-api/spec.replicas", section="Changed by hand",
                subject="Deployment shop/orders-api", detail="spec.replicas: declared 3, live 6 (kubectl-scale)",
                since=NOW - timedelta(days=2, hours=20), reported_since=NOW - timedelta(days=2),
                fix=Fix("scale-deployment", {"namespace": "shop", "name": "orders-api", "replicas": 3},
                        "Scale orders-api to 3 replicas")),
        Finding(key="drift/-/Deployment/shop/cart/image", section="Differs from its Git source",
                subject="Deployment shop/cart", detail="containers[cart].image: declared cart:1.4.2, live cart:1.5.0-rc1"
                " (owned by Argo CD: fix it in Git)"),
        Finding(key="drift/-/ConfigMap/shop/flags", section="Missing", subject="ConfigMap shop/flags",
                detail="declared in base/flags.yaml, not in the cluster", severity="critical"),
    ),
    problems=("overlays/prod/kustomization.yaml: kustomize build failed: accumulating resources: missing.yaml",),
    notes=("kustomize built with `kubectl kustomize` (v5.5.0)", "source ../gitops/shop, namespace shop"),
    fixed=(Finding(key="old", section="Changed by hand", subject="Deployment shop/search",
                   detail="spec.replicas: declared 2, live 4", reported_since=NOW - timedelta(days=4)),),
)


def test_drift_digest_golden():
    rendered = render_digest(DRIFT, "digest:drift:C0PLATFORM")
    check_golden("digest_drift", rendered)
    assert valid_blocks(rendered["blocks"])
    text = json.dumps(rendered["blocks"])
    # the most severe section comes first, whatever order the builder used
    assert text.index("Missing") < text.index("Changed by hand") < text.index("Differs from its Git source")
    assert "still drifted since 05 Dec 2026" in text and "since 04 Dec 2026 13:00 UTC" in text and "Fixed since the last digest" in text
    buttons = [b for b in rendered["blocks"] if b["type"] == "actions"][0]["elements"]
    assert len(buttons) == 1  # only the finding with a safe fix
    assert json.loads(buttons[0]["value"]) == {"scope": "digest:drift:C0PLATFORM",
                                               "key": "drift/-/Deployment/shop/orders-api/spec.replicas"}


def test_nothing_found_is_said_plainly():
    clean = DigestReport(name="drift", title="Drift", generated_at=NOW,
                         headline="No drift: 41 objects match what is declared in ../gitops/shop")
    rendered = render_digest(clean, "digest:drift:C1")
    check_golden("digest_clean", rendered)
    assert valid_blocks(rendered["blocks"]) and clean.clean
    assert "No drift: 41 objects match" in rendered["text"]
    assert not any(block["type"] == "actions" for block in rendered["blocks"])


def test_the_long_tail_goes_to_the_file_and_limits_hold():
    many = tuple(Finding(key=f"cost/k{i}", section="Oversized", subject=f"Deployment ns/app-{i}",
                         detail=f"requests 2 CPU, p95 0.1 CPU: save ${i}.00/month" + " x" * 300,
                         fix=Fix("raise-cpu-limit", {}, f"right-size app-{i}") if i % 2 else None)
                 for i in range(60))
    report = DigestReport(name="cost", title="Cost and capacity", generated_at=NOW, headline="$1,770/month",
                          findings=many, queries=tuple(f"sum(rate(x{i}[5m]))" for i in range(20)))
    rendered = render_digest(report, "digest:cost:C1")
    assert valid_blocks(rendered["blocks"]) and len(rendered["blocks"]) <= 50
    assert rendered["shown"] == MAX_SHOWN and rendered["truncated"]
    assert f"{60 - MAX_SHOWN} more findings in the attached file" in json.dumps(rendered["blocks"])
    markdown = render_markdown(report)
    assert all(f"Deployment ns/app-{i}" in markdown for i in range(60))
    assert all(f"sum(rate(x{i}[5m]))" in markdown for i in range(20))


def test_untrusted_text_is_inert():
    hostile = Finding(key="k", section="Missing", subject="Secret <!channel>",
                      detail="value <https://evil.example|click> & password=hunter2")
    report = DigestReport(name="credentials", title="Expiring credentials", generated_at=NOW, headline="1 expired",
                          findings=(hostile,))
    text = json.dumps(render_digest(report, "s")["blocks"])
    assert "<!channel>" not in text and "<https://evil" not in text and "&lt;!channel&gt;" in text
    assert "hunter2" not in text


def test_the_attached_file_is_redacted_too():
    leaky = Finding(key="k", section="Differs from declared", subject="Deployment shop/api",
                    detail="env DATABASE_URL: declared postgres://app:s3cr3tpass@db/app, live postgres://app:hunter2@db/app")
    markdown = render_markdown(DigestReport(name="drift", title="Drift", generated_at=NOW, headline="1 drifted",
                                            findings=(leaky,)))
    assert "s3cr3tpass" not in markdown and "hunter2" not in markdown and "Deployment shop/api" in markdown
