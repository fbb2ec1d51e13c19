"""The RCA message (pure Block Kit, golden file) and its graph (a real PNG)."""

from __future__ import annotations

import json

from bot.slack.graph import render_graph
from bot.slack.limits import MAX_BLOCKS
from bot.slack.render.rca import render_rca
from tests.slack.test_card_render import check_golden, valid_blocks

EVIDENCE = {"source": "log", "ref": "Pod orders/orders-api-wrvcn6pnr5-mthr2 logs (api, previous)"}
REPORT = {
    "version": 1,
    "subject": "Deployment/orders/orders-api in cluster dc1-prod (alerts: KubePodCrashLooping)",
    "inconclusive": False,
    "hypotheses": [
        {"category": "bad_deploy", "resource": "Deployment/orders/orders-api", "confidence": 0.9, "explicit": False,
         "summary": "Revision 22 of Deployment/orders/orders-api (ghcr.io/northwind/orders-api:4.12.0) broke it.",
         "action": "Roll orders-api back to revision 21, then fix the change before redeploying.",
         "supporting": [
             {"text": "log of orders-api-wrvcn6pnr5-mthr2 (api, previous instance): panic: assignment to entry in "
                      "nil map", **EVIDENCE},
             {"text": "a line that tries <!channel> and <https://evil.example|a link> and DB_PASSWORD=hunter2",
              **EVIDENCE}],
         "contradicting": [{"text": "nothing else changed", "source": "rollout", "ref": "pod template diff"}]},
        {"category": "capacity", "resource": "Deployment/orders/orders-api", "confidence": 0.2, "explicit": False,
         "summary": "It may not keep up with its load.", "action": "", "supporting": [], "contradicting": []},
    ],
    "gaps": [{"what": "Prometheus metrics", "why": "Prometheus at http://prometheus:9090 is unreachable"}],
    "timings": {"kubernetes": 0.12, "logs": 0.03},
}


def test_rca_golden():
    rendered = render_rca(REPORT, "INC-7")
    check_golden("rca_bad_deploy", rendered)
    assert valid_blocks(rendered["blocks"])


def test_untrusted_text_is_inert_and_secrets_never_reach_slack():
    text = json.dumps(render_rca(REPORT, "INC-7"))
    assert "<!channel>" not in text and "<https://evil.example" not in text and "hunter2" not in text


def test_an_inconclusive_rca_says_so_and_an_empty_one_says_nothing_was_found():
    rendered = render_rca({**REPORT, "inconclusive": True}, "INC-7")
    assert "inconclusive" in rendered["blocks"][0]["text"]["text"]
    empty = render_rca({**REPORT, "hypotheses": []}, "INC-7")
    assert "No analyzer found a cause" in empty["blocks"][0]["text"]["text"]
    assert "Could not check" in json.dumps(empty)


def test_a_huge_report_stays_inside_block_kit_limits():
    bullets = [{"text": "x" * 5000, "source": "log", "ref": "r" * 500}] * 40
    huge = {**REPORT, "hypotheses": [{**REPORT["hypotheses"][0], "summary": "s" * 9000, "supporting": bullets}] * 9,
            "gaps": [{"what": "w" * 300, "why": "y" * 300}] * 30}
    rendered = render_rca(huge, "INC-7")
    assert len(rendered["blocks"]) <= MAX_BLOCKS and valid_blocks(rendered["blocks"])
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in rendered["blocks"])


def test_the_graph_is_a_png_with_the_marks_drawn():
    graph = {"title": "memory working set / limit", "unit": "ratio", "query": "q",
             "series": [{"label": "pod=a", "points": [[1_790_000_000 + 60 * i, i / 60] for i in range(60)]},
                        {"label": "pod=b", "points": [[1_790_000_000 + 60 * i, 0.5] for i in range(60)]}],
             "marks": [{"label": "alert fired", "at": 1_790_002_400}, {"label": "revision 7", "at": 1_790_001_200}]}
    png = render_graph(graph)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert render_graph({**graph, "series": []}).startswith(b"\x89PNG")


UNKNOWN = {
    **REPORT, "inconclusive": True,
    "hypotheses": [
        {"category": "unknown", "resource": "Deployment/shop/checkout-api", "confidence": 0.4, "explicit": False,
         "summary": "No rule explains what is wrong with Deployment/shop/checkout-api: the evidence does not name a "
                    "cause (the best lead, dependency_unreachable on Deployment/shop/checkout-api, is too weak at 40%).",
         "action": "Look at Deployment/shop/checkout-api first: p95 latency went from 0.06s to 1.2s.",
         "supporting": [{"text": "p95 latency went from 0.06s to 1.2s and is 1.1s now", "source": "prometheus",
                         "ref": "PromQL: histogram_quantile(...)"}], "contradicting": []},
        {"category": "dependency_unreachable", "resource": "Deployment/shop/checkout-api", "confidence": 0.4,
         "explicit": True, "summary": "It may not reach pricing-engine.", "action": "", "supporting": [],
         "contradicting": [], "rules": ["upstream_cause +0.05"]},
    ],
    "nearby": ["Deployment/shop/mailer: 2 pod(s) in trouble (2 CrashLoopBackOff)"],
}


def test_an_unknown_rca_golden_lists_symptoms_weak_leads_and_what_is_broken_nearby():
    rendered = render_rca(UNKNOWN, "INC-8")
    check_golden("rca_unknown", rendered)
    assert valid_blocks(rendered["blocks"])
    text = json.dumps(rendered)
    assert "Cause unknown" in text and "Unexplained symptoms" in text and "Weak leads" in text
    assert "Also broken nearby" in text and "Deployment/shop/mailer" in text


def test_the_rules_that_ranked_the_answer_are_shown():
    ranked = {**REPORT, "hypotheses": [{**REPORT["hypotheses"][0], "rules": ["upstream_cause +0.05"]}]}
    assert "Ranked by: upstream_cause +0.05" in json.dumps(render_rca(ranked, "INC-7"))


FACTS = {
    "incident": "INC-7", "title": "orders-api crash-looping <!channel>", "severity": "critical", "status": "resolved",
    "resolution": "bot-mitigated", "reopened": 0, "alerts": {"names": ["KubePodCrashLooping"], "count": 2, "firing": 0},
    "times": {"first_alert": "2026-05-12T09:40:00Z", "acknowledged": "2026-05-12T09:44:10Z",
              "diagnosed": "2026-05-12T09:41:02Z", "mitigated": "2026-05-12T09:47:30Z",
              "resolved": "2026-05-12T09:52:00Z"},
    "durations": {"tta": 250, "ttd": 62, "ttm": 450, "ttr": 720},
    "root_cause": {"category": "bad_deploy", "resource": "Deployment/orders/orders-api", "confidence": 0.9,
                   "summary": "Revision 22 broke it.", "evidence": ["panic"], "rca": "the bot's RCA"},
    "actions": [{"runbook": "rollback-deployment", "target": "Deployment/orders/orders-api", "status": "succeeded",
                 "approvers": ["U0ALICE"], "verification": {"before": 0.0, "after": 1.0}}],
    "timeline": [{"kind": "incident.opened"}] * 12,
}


def test_postmortem_golden_and_limits():
    from bot.slack.render.postmortem import render_postmortem

    rendered = render_postmortem(FACTS)
    check_golden("postmortem_bot_mitigated", rendered)
    assert valid_blocks(rendered["blocks"]) and "<!channel>" not in json.dumps(rendered)
    unknown = render_postmortem({**FACTS, "resolution": "human-resolved", "actions": [], "reopened": 1,
                                 "root_cause": {"category": "unknown", "rca": "no RCA: the alerts name no object"}})
    text = json.dumps(unknown)
    assert "Root cause:* unknown" in text and "none was proposed" in text and "updated: reopened 1" in text
