"""Every kubernetes-mixin alert about workloads, nodes, storage and quotas maps to analyzers that
can explain it, and the README lists the mapping."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.diagnosis.coverage import ALERT_ANALYZERS, OUT_OF_SCOPE_GROUPS
from bot.diagnosis.engine import ANALYZERS
from bot.diagnosis.model import CATEGORIES
from bot.sandbox.paths import shared_dir

RULES = shared_dir() / "fixtures" / "kubernetes-mixin" / "prometheus_alerts.yaml"
README = Path(__file__).resolve().parents[2] / "README.md"


def mixin_alerts() -> dict[str, set[str]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {g["name"]: {r["alert"] for r in g["rules"] if "alert" in r} for g in groups}


def test_every_in_scope_mixin_alert_is_mapped_and_nothing_else():
    groups = mixin_alerts()
    in_scope = {a for name, alerts in groups.items() if name not in OUT_OF_SCOPE_GROUPS for a in alerts}
    in_scope -= {"KubeAPIDown", "KubeAPIInstanceUnreachable", "KubeAPITerminatedRequests",
                 "KubeClientCertificateExpiration"}  # the API server's own health, not what runs on it
    assert in_scope - set(ALERT_ANALYZERS) == set(), "unmapped alerts"
    every_alert = {a for alerts in groups.values() for a in alerts}
    assert set(ALERT_ANALYZERS) - every_alert == set(), "mapped alerts that the mixin does not have"


def test_mapped_categories_have_analyzers():
    assert {c for categories in ALERT_ANALYZERS.values() for c in categories} <= set(CATEGORIES)
    # every cause has an analyzer (dependency_unreachable has two: the dependency, and the path to
    # it); `unknown` is the engine's own answer when none explains the symptoms
    named = {m.__name__.rsplit(".", 1)[-1] for m in ANALYZERS}
    assert len(ANALYZERS) == len(set(CATEGORIES) - {"unknown"}) + 1 and "network" in named


def test_the_readme_lists_the_mapping():
    text = README.read_text()
    for alert, categories in ALERT_ANALYZERS.items():
        row = re.search(rf"^\| `{alert}` \| (.+) \|$", text, re.M)
        assert row, f"README has no row for {alert}"
        assert [c.strip(" `") for c in row.group(1).split(",")] == list(categories), alert
