"""Scenario metrics backfilled into the real Prometheus and read back with prometheus_api_client."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_api_client import PrometheusConnect

from bot.sandbox.paths import shared_scenarios_dir
from bot.sandbox.promstack import ProcessStartError, PrometheusProcess
from bot.sandbox.promvalues import Stale, escape_label_value
from bot.sandbox.scenario import Scenario, load_scenarios
from bot.sandbox.scenario_metrics import load_metrics_into
from tests.promstack_fixtures import PrometheusFactory

pytestmark = pytest.mark.prometheus

NOW = datetime(2026, 3, 10, 7, 40, tzinfo=UTC)  # months before the wall clock of these tests


def demo_scenario(now: datetime = NOW, scenario_id: str = "demo", *, with_metrics: bool = True) -> Scenario:
    data: dict[str, Any] = {
        "id": scenario_id,
        "title": "demo",
        "now": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cluster": {"objects": [], "events": []},
        "alerts": [{"labels": {"alertname": "Demo"}, "annotations": {}, "startsAt": "-5m"}],
        "expect": {"category": "not_an_issue", "resource": "-"},
        "metrics": {
            "interval": "1m",
            "series": [
                {"series": 'demo_metric{namespace="shop",pod="a\\"b"}', "values": "10+5x4 _x2 40 41"},
                {"series": "demo_gauge", "values": "1 2 stale"},
            ],
        },
    }
    if not with_metrics:
        del data["metrics"]
    return Scenario.from_dict(data)


def connect(prom: PrometheusProcess) -> PrometheusConnect:
    return PrometheusConnect(url=prom.url, disable_ssl=True)


def ts(value: datetime) -> float:
    return value.timestamp()


def selector(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


def test_backfilled_series_match_the_notation(prometheus_factory: PrometheusFactory) -> None:
    prom = prometheus_factory(demo_scenario())
    api = connect(prom)
    minute = timedelta(minutes=1)

    # the last sample lies exactly at now
    (latest,) = api.custom_query("demo_metric", params={"time": ts(NOW)})
    assert latest["metric"] == {"__name__": "demo_metric", "namespace": "shop", "pod": 'a"b'}
    assert latest["value"] == [ts(NOW), "41"]
    (stamp,) = api.custom_query("timestamp(demo_metric)", params={"time": ts(NOW)})
    assert float(stamp["value"][1]) == ts(NOW)

    # the raw samples: values and timestamps as expanded, missing ones absent
    (raw,) = api.custom_query("demo_metric[9m]", params={"time": ts(NOW)})
    expected = [
        (NOW - k * minute, v)
        for k, v in zip(range(8, -1, -1), [10, 15, 20, 25, 30, None, None, 40, 41], strict=True)
    ]
    assert [(t, float(v)) for t, v in raw["values"]] == [(ts(t), v) for t, v in expected if v is not None]

    # a range query sees each expanded value at its step, and nothing where a sample is missing
    (ranged,) = api.custom_query_range(
        "last_over_time(demo_metric[30s])", start_time=NOW - 10 * minute, end_time=NOW, step="60"
    )
    assert [(t, float(v)) for t, v in ranged["values"]] == [(ts(t), v) for t, v in expected if v is not None]

    # PromQL's own 5-minute lookback fills the gap when the series is selected directly
    (looked_back,) = api.custom_query_range(
        "demo_metric", start_time=NOW - 3 * minute, end_time=NOW - 2 * minute, step="60"
    )
    assert [float(v) for _, v in looked_back["values"]] == [30.0, 30.0]

    # nothing after now, nothing before the first sample
    assert api.custom_query("demo_metric", params={"time": ts(NOW + 6 * minute)}) == []
    assert api.custom_query("demo_metric", params={"time": ts(NOW - 9 * minute)}) == []


def test_staleness_markers_are_not_backfilled(prometheus_factory: PrometheusFactory) -> None:
    """Documented limitation: 'stale' leaves no marker, so the lookback still sees the last value."""
    api = connect(prometheus_factory(demo_scenario()))
    (gauge,) = api.custom_query("demo_gauge", params={"time": ts(NOW)})
    assert gauge["value"][1] == "2"
    (stamp,) = api.custom_query("timestamp(demo_gauge)", params={"time": ts(NOW)})
    assert float(stamp["value"][1]) == ts(NOW - timedelta(minutes=1))


def _expected_samples(scenario: Scenario) -> list[tuple[str, dict[str, str], list[tuple[float, float]]]]:
    out = []
    for series in scenario.series_samples():
        points = [(ms / 1000, v) for ms, v in series.samples if v is not None and not isinstance(v, Stale)]
        out.append((series.name, dict(series.labels), points))
    return out


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_every_shared_scenario_round_trips(prometheus_factory: PrometheusFactory) -> None:
    """All examples in one server: March to September, so the retention matters too."""
    scenarios = load_scenarios([shared_scenarios_dir()])
    api = connect(prometheus_factory(scenarios))
    checked = 0
    for scenario in scenarios:
        assert scenario.metrics is not None
        window = int(
            (len(max(scenario.metrics.series, key=lambda s: len(s.samples)).samples))
            * scenario.metrics.interval.total_seconds()
        )
        for name, labels, points in _expected_samples(scenario):
            result = api.custom_query(
                f"{selector(name, labels)}[{window}s]", params={"time": ts(scenario.now)}
            )
            exact = [r for r in result if r["metric"] == {"__name__": name, **labels}]
            assert len(exact) == 1, (scenario.id, name, labels)
            got = [(float(t), float(v)) for t, v in exact[0]["values"]]
            assert len(got) == len(points), (scenario.id, name, labels)
            assert all(gt == et and _same(gv, ev) for (gt, gv), (et, ev) in zip(got, points, strict=True)), (
                scenario.id,
                name,
            )
            checked += 1
    assert checked > 80


def _fresh_sample() -> str:
    now = int(datetime.now(UTC).timestamp())
    return f"# TYPE fresh_metric unknown\nfresh_metric 1 {now}\n# EOF\n"


def test_retention_keeps_months_old_scenarios(prometheus_factory: PrometheusFactory) -> None:
    """Prometheus drops blocks further than the retention behind the newest one at start-up."""
    old = demo_scenario()
    kept = connect(prometheus_factory(old, openmetrics=_fresh_sample()))  # default retention: 100y
    assert kept.custom_query("demo_metric", params={"time": ts(NOW)})
    assert kept.custom_query("fresh_metric")

    dropped = connect(prometheus_factory(old, openmetrics=_fresh_sample(), retention="15d"))
    assert dropped.custom_query("fresh_metric")
    assert dropped.custom_query("demo_metric", params={"time": ts(NOW)}) == []


def test_backfill_into_a_running_server(prometheus_factory: PrometheusFactory) -> None:
    prom = prometheus_factory()
    url = prom.url
    api = connect(prom)
    assert api.custom_query("demo_metric", params={"time": ts(NOW)}) == []
    later = NOW + timedelta(days=30)
    prom.backfill(_fresh_sample())

    assert load_metrics_into(prom, demo_scenario(later, "later")) == 9  # 7 + 2 real samples
    assert prom.running and prom.url == url  # restarted on the same port
    (latest,) = api.custom_query("demo_metric", params={"time": ts(later)})
    assert latest["value"] == [ts(later), "41"]
    assert api.custom_query("fresh_metric")


def test_scenario_without_metrics_is_a_no_op(prometheus_factory: PrometheusFactory) -> None:
    bare = demo_scenario(with_metrics=False)
    prom = prometheus_factory(start=False)
    assert load_metrics_into(prom, bare) == 0
    assert not any(prom.workdir.glob("backfill-*"))


def test_start_failure_raises_with_the_log_tail(
    prometheus_factory: PrometheusFactory, tmp_path: Path
) -> None:
    rules = tmp_path / "broken-rules.yaml"
    rules.write_text("groups:\n  - name: g\n    rules:\n      - alert: Broken\n        expr: sum(\n")
    prom = prometheus_factory(start=False, rule_files=[rules])
    with pytest.raises(ProcessStartError) as caught:
        prom.start(timeout=20)
    message = str(caught.value)
    assert "prometheus exited with code" in message
    assert "broken-rules.yaml" in message and "parse error" in message
    assert not prom.running


def test_stop_ends_the_process(prometheus_binary: str, tmp_path: Path) -> None:
    with PrometheusProcess(tmp_path / "ctx", binary=prometheus_binary) as prom:
        pid = prom.pid
        assert pid is not None
        os.kill(pid, 0)  # alive
        assert connect(prom).check_prometheus_connection()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not prom.running
    prom.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not started"):
        _ = prom.url


def test_config_carries_rules_and_alertmanager(prometheus_binary: str, tmp_path: Path) -> None:
    prom = PrometheusProcess(
        tmp_path,
        rule_files=[tmp_path / "rules.yaml"],
        alertmanager_url="http://127.0.0.1:9093/am",
        binary=prometheus_binary,
        evaluation_interval="1s",
    )
    config: dict[str, Any] = prom.config()
    assert config["rule_files"] == [str((tmp_path / "rules.yaml").resolve())]
    assert config["global"]["evaluation_interval"] == "1s"
    (target,) = config["alerting"]["alertmanagers"]
    assert target["path_prefix"] == "/am" and target["static_configs"] == [{"targets": ["127.0.0.1:9093"]}]
