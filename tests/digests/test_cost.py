"""The cost and capacity digest against a real Prometheus holding 7 days of generated cluster metrics.

The series (`tests.digests.usage_series`) are backfilled once per module with promtool; variants
that need another Prometheus flag start a copy of the same TSDB. Expected figures are computed
here from the declared series and prices, never copied from the digest's output.
"""

from __future__ import annotations

import io
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image

from bot.context.clusters import ClusterAccess, ClusterDirectory
from bot.digests.cost import CostConfig, build
from bot.digests.cost import queries as q
from bot.digests.model import DigestContext, DigestReport, Finding
from bot.sandbox.promstack import PrometheusProcess, free_port
from tests.digests import usage_series as us
from tests.digests.golden import check_digest_golden

pytestmark = pytest.mark.prometheus

HOURS_PER_MONTH = 730
PRICES = {"vcpu_hour": 0.031, "gib_hour": 0.0042, "storage_gib_month": 0.10, "currency": "USD"}
CPU_ROUNDING_CORES, MEMORY_ROUNDING_BYTES = 0.05, 32 * us.MIB  # the size classes the suggestions land in


def quantile(values: list[float], q_: float) -> float:
    """Linear interpolation between ranks, as PromQL's quantile_over_time."""
    ordered = sorted(values)
    rank = q_ * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def directory(url: str | None) -> ClusterDirectory:
    return ClusterDirectory(ClusterAccess(None, None, url))


def run(url: str | None, **config) -> DigestReport:
    settings = CostConfig(prices=PRICES, **config)
    return build(settings, DigestContext(clusters=directory(url), now=us.NOW))


def by_key(report: DigestReport) -> dict[str, Finding]:
    return {f.key: f for f in report.findings}


@pytest.fixture(scope="module")
def backfilled_data(prometheus_binary: str, promtool_binary: str,
                    tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TSDB directory holding the whole cluster's 7 days (backfilled once, copied per server)."""
    template = PrometheusProcess(tmp_path_factory.mktemp("cost-template"), binary=prometheus_binary,
                                 promtool=promtool_binary)
    template.backfill(us.cluster_openmetrics())
    return template.data_dir


def started_copy(data: Path, workdir: Path, binary: str, **kwargs) -> PrometheusProcess:
    prom = PrometheusProcess(workdir, binary=binary, **kwargs)
    shutil.copytree(data, prom.data_dir)
    prom.start()
    return prom


@pytest.fixture(scope="module")
def prometheus(backfilled_data: Path, prometheus_binary: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProcess]:
    prom = started_copy(backfilled_data, tmp_path_factory.mktemp("cost-prom"), prometheus_binary)
    yield prom
    prom.stop()


@pytest.fixture(scope="module")
def report(prometheus: PrometheusProcess) -> DigestReport:
    return run(prometheus.url)


def test_oversized_workload_saving_follows_the_prices_and_the_series(report: DigestReport) -> None:
    finding = by_key(report)["cost/default/oversized/shop/checkout"]
    workload = us.OVERSIZED
    cpu_p95 = quantile(us.per_step_values(workload.cpu_cores), 0.95)
    memory_p95 = quantile(us.per_step_values(workload.memory_bytes), 0.95)
    headroom = CostConfig().headroom
    cpu_freed = workload.cpu_request_cores - cpu_p95 * (1 + headroom)
    memory_freed = workload.memory_request_bytes - memory_p95 * (1 + headroom)
    hourly = cpu_freed * PRICES["vcpu_hour"] + memory_freed / us.GIB * PRICES["gib_hour"]
    expected = hourly * HOURS_PER_MONTH
    rounding = (CPU_ROUNDING_CORES * PRICES["vcpu_hour"]
                + MEMORY_ROUNDING_BYTES / us.GIB * PRICES["gib_hour"]) * HOURS_PER_MONTH
    saving = finding.numbers["monthly_saving"]
    assert expected - rounding - 0.05 <= saving <= expected + 0.05
    assert finding.section == "Oversized" and finding.subject == "Deployment shop/checkout"
    assert "CPU 2 →" in finding.detail and "memory 4Gi →" in finding.detail
    assert f"${saving:,.2f}/month" in finding.detail
    # the suggestion covers the p95 plus the headroom, and frees less than the whole request
    assert cpu_freed - CPU_ROUNDING_CORES <= finding.numbers["cpu_cores_saved"] <= cpu_freed
    assert 0 < finding.numbers["memory_bytes_saved"] <= memory_freed


def test_right_sized_and_idle_workloads_are_not_oversized(report: DigestReport) -> None:
    oversized = {f.subject for f in report.findings if f.section == "Oversized"}
    assert oversized == {"Deployment shop/checkout"}


def test_idle_workload_is_priced_whole(report: DigestReport) -> None:
    finding = by_key(report)["cost/default/idle/shop/legacy-report"]
    workload = us.IDLE
    hourly = (workload.cpu_request_cores * PRICES["vcpu_hour"]
              + workload.memory_request_bytes / us.GIB * PRICES["gib_hour"]) * workload.replicas
    expected = hourly * HOURS_PER_MONTH
    assert finding.numbers["monthly_saving"] == pytest.approx(expected, abs=0.01)
    assert finding.numbers["network_bytes_per_second_average"] == pytest.approx(
        workload.network_bytes_per_second, rel=0.01)
    assert [f.subject for f in report.findings if f.section == "Idle"] == ["Deployment shop/legacy-report"]


def test_unattached_volume_is_listed_with_its_monthly_cost(report: DigestReport) -> None:
    unattached = [f for f in report.findings if f.section == "Unattached volumes"]
    assert [f.key for f in unattached] == [f"cost/default/unattached-volumes/{us.UNATTACHED_NAMESPACE}/"
                                           f"{us.UNATTACHED_NAME}"]
    expected = us.UNATTACHED_BYTES / us.GIB * PRICES["storage_gib_month"]
    assert unattached[0].numbers["monthly_saving"] == pytest.approx(expected)
    assert unattached[0].numbers["size_bytes"] == us.UNATTACHED_BYTES
    assert "50 GiB (gp3)" in unattached[0].detail


def test_hpa_pinned_at_max_proposes_a_higher_maximum(report: DigestReport) -> None:
    finding = by_key(report)[f"cost/default/pinned-at-max/{us.HPA_NAMESPACE}/{us.HPA_NAME}"]
    assert finding.section == "Pinned at max (under-provisioned)"
    assert finding.numbers["share_at_max"] == pytest.approx(us.HPA_BUSY_SHARE, abs=0.02)
    assert finding.fix is not None and finding.fix.runbook == "raise-hpa-max-replicas"
    assert finding.fix.params["name"] == us.HPA_TARGET
    assert us.HPA_MAX < finding.fix.params["replicas"] <= 2 * us.HPA_MAX


def test_forecast_dates_of_what_fills_within_the_horizon(report: DigestReport) -> None:
    found = by_key(report)
    claim = found[f"cost/default/fills-soon/{us.CLAIM_NAMESPACE}/{us.CLAIM_NAME}"]
    node = found[f"cost/default/fills-soon/node/{us.NODE_INSTANCE}:{us.NODE_MOUNTPOINT}"]
    quota = found[f"cost/default/fills-soon/{us.QUOTA_NAMESPACE}/{us.QUOTA_NAME}/{us.QUOTA_RESOURCE}"]
    for finding, full_after in ((claim, us.CLAIM_FULL_AFTER_NOW), (node, us.NODE_FS_EMPTY_AFTER_NOW),
                                (quota, us.QUOTA_FULL_AFTER_NOW)):
        assert finding.section == "Fills within 14 days"
        assert finding.numbers["days_left"] == pytest.approx(full_after.total_seconds() / 86400, abs=0.05)
        assert (us.NOW + full_after).strftime("%Y-%m-%d") in finding.detail
    assert claim.numbers["growth_per_day"] == pytest.approx(us.CLAIM_GROWTH_BYTES_PER_DAY, rel=0.001)
    assert claim.fix is not None and claim.fix.runbook == "expand-pvc"
    assert claim.fix.params["name"] == us.CLAIM_NAME
    fills = [f for f in report.findings if f.section.startswith("Fills")]
    assert len(fills) == 3  # not the tmpfs, not the steady filesystem, not the flat compute quota
    assert [f.key for f in report.findings[:3]] == [claim.key, quota.key, node.key]  # soonest first


def test_a_shorter_horizon_keeps_only_what_fills_sooner(prometheus: PrometheusProcess) -> None:
    report = run(prometheus.url, forecast_days=7)
    fills = [f for f in report.findings if f.section == "Fills within 7 days"]
    assert [f.subject for f in fills] == [f"PersistentVolumeClaim {us.CLAIM_NAMESPACE}/{us.CLAIM_NAME}"]
    assert "1 volume fills within 7 days" in report.headline


def test_summary_and_headline_add_up(report: DigestReport) -> None:
    savings = [f for f in report.findings if f.section in ("Oversized", "Idle", "Unattached volumes")]
    total = sum(f.numbers["monthly_saving"] for f in savings)
    assert report.summary["monthly_saving"] == pytest.approx(total, abs=0.02)
    assert [f.numbers["monthly_saving"] for f in savings] == sorted(
        (f.numbers["monthly_saving"] for f in savings), reverse=True)
    assert report.headline.startswith(f"${report.summary['monthly_saving']:,.2f}/month could be saved")
    assert "2 volumes fill within 14 days" in report.headline
    assert report.problems == ()
    assert report.summary["volumes_filling"] == 2 and report.summary["quotas_filling"] == 1
    requested_cpu = sum(w.cpu_request_cores * w.replicas for w in us.WORKLOADS)
    assert report.summary["requested_cpu_cores"] == pytest.approx(requested_cpu, rel=0.001)
    assert len({f.key for f in report.findings}) == len(report.findings)


def test_top_lists_the_largest_savings_and_counts_the_rest(prometheus: PrometheusProcess,
                                                           report: DigestReport) -> None:
    limited = run(prometheus.url, top=1)
    listed = [f for f in limited.findings if f.section in ("Oversized", "Idle", "Unattached volumes")]
    assert [f.key for f in listed] == ["cost/default/oversized/shop/checkout"]
    assert limited.summary["monthly_saving"] == report.summary["monthly_saving"]
    assert any(note.startswith("2 more savings worth") for note in limited.notes)


def test_chart_is_a_png_of_the_namespaces(report: DigestReport) -> None:
    (chart,) = report.attachments
    assert chart.filename.endswith(".png")
    image = Image.open(io.BytesIO(chart.content))
    assert image.format == "PNG" and image.width > 400 and image.height > 100
    image.verify()


def test_every_query_is_listed_and_reproduces_the_figures(prometheus: PrometheusProcess,
                                                          report: DigestReport) -> None:
    listed = {text.split(" ", 1)[0]: text for text in report.queries}
    assert set(listed) == {spec.key for spec in q.ALL_QUERIES}
    promql = listed["cpu_p95"].split(": ", 1)[1]
    answer = requests.post(f"{prometheus.url}/api/v1/query",
                           data={"query": promql, "time": us.NOW.timestamp()}, timeout=30).json()
    values = {r["metric"]["workload"]: float(r["value"][1]) for r in answer["data"]["result"]}
    expected_p95 = quantile(us.per_step_values(us.OVERSIZED.cpu_cores), 0.95)
    assert values["checkout"] == pytest.approx(expected_p95, rel=0.02)
    assert any(us.NOW.isoformat() in note for note in report.notes)


def test_a_failing_query_is_a_problem_and_the_rest_is_reported(backfilled_data: Path, prometheus_binary: str,
                                                               tmp_path: Path) -> None:
    # A real limit: the look-back subqueries load more samples than this server allows.
    prom = started_copy(backfilled_data, tmp_path / "limited", prometheus_binary,
                        extra_args=["--query.max-samples=5000"])
    try:
        report = run(prom.url)
    finally:
        prom.stop()
    failed = [p for p in report.problems if p.startswith("query cpu_p95 ")]
    assert len(failed) == 1 and "too many samples" in failed[0] and "Oversized may be incomplete" in failed[0]
    keys = set(by_key(report))
    assert f"cost/default/unattached-volumes/{us.UNATTACHED_NAMESPACE}/{us.UNATTACHED_NAME}" in keys
    assert f"cost/default/fills-soon/{us.CLAIM_NAMESPACE}/{us.CLAIM_NAME}" in keys
    assert not report.headline.startswith("Nothing to save")


def test_prometheus_down_is_a_problem_line_not_an_exception() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    report = run(url)
    assert report.findings == () and report.attachments == ()
    assert len(report.problems) == 1 and f"Prometheus at {url} is unreachable" in report.problems[0]
    assert report.headline.startswith("Cost and capacity not checked")
    assert not report.clean


def test_no_prometheus_url_is_a_problem_line() -> None:
    report = run(None)
    assert report.problems == ("no Prometheus URL configured; cost and capacity not checked",)


def test_the_default_cluster_among_several_is_a_problem_line() -> None:
    clusters = ClusterDirectory(None, {"prod": ClusterAccess("prod", None, "http://127.0.0.1:1"),
                                       "staging": ClusterAccess("staging", None, None)})
    report = build(CostConfig(), DigestContext(clusters=clusters, now=us.NOW))
    assert report.problems == (
        "no default cluster (configured: prod, staging); name the clusters in cost.clusters",)
    assert report.findings == ()


def test_one_cluster_down_leaves_the_other_reported(prometheus: PrometheusProcess) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    clusters = ClusterDirectory(None, {"prod": ClusterAccess("prod", None, prometheus.url),
                                       "staging": ClusterAccess("staging", None, down)})
    report = build(CostConfig(prices=PRICES, clusters=["prod", "staging", "qa"]),
                   DigestContext(clusters=clusters, now=us.NOW))
    oversized = by_key(report)["cost/prod/oversized/shop/checkout"]
    assert oversized.subject == "Deployment shop/checkout (cluster prod)"
    assert any(p.startswith("cluster staging: Prometheus at") for p in report.problems)
    assert any(p.startswith("cluster qa: no such cluster") for p in report.problems)
    assert "$" in report.headline


def test_a_clean_cluster_says_nothing_to_save(prometheus_factory) -> None:
    right_sized = tuple(w for w in us.WORKLOADS if w not in (us.OVERSIZED, us.IDLE))
    prom = prometheus_factory(openmetrics=us.cluster_openmetrics(right_sized, capacity=False, days=1))
    report = run(prom.url, lookback_days=1)
    assert report.headline == "Nothing to save: requests are within 2× of p95 usage"
    assert report.clean and report.summary["monthly_saving"] == 0
    assert report.attachments  # the chart still shows the namespaces
    assert report.notes[0].startswith("look-back 1 day;")


def test_the_digest_as_slack_receives_it(report: DigestReport) -> None:
    rendered = check_digest_golden("digest_cost", report)
    assert "Propose fix" in str(rendered["blocks"]) and "Queries behind these figures" in str(rendered["blocks"])
