"""The scenario loader: the shared examples load, times resolve, broken files fail clearly."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.sandbox.paths import shared_scenarios_dir
from bot.sandbox.promvalues import STALE
from bot.sandbox.scenario import (
    BUILTIN_RUNBOOKS,
    CATEGORIES,
    ResourceRef,
    Scenario,
    ScenarioError,
    load_scenario,
    load_scenarios,
    to_openmetrics,
)
from bot.sandbox.scenario_time import is_relative_duration, is_time_key

RFC3339_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")

MINIMAL = """\
id: checkout-oom
title: Checkout pods OOMKilled
now: "2026-11-21T10:00:00Z"
cluster:
  objects: []
  events: []
alerts:
  - labels: {alertname: KubePodCrashLooping, namespace: shop}
    annotations: {summary: crash looping}
    startsAt: -5m
expect:
  category: memory_limit
  resource: Deployment/shop/checkout
"""

FULL = """\
id: checkout-oom-after-limit-cut
title: Checkout pods OOMKilled after the memory limit was cut
source: hand-written
now: "2026-11-21T10:00:00Z"
cluster:
  name: prod-eu-1
  objects:
    - apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: checkout
        namespace: shop
        creationTimestamp: -3d
        labels: {app: checkout, expires: -1m}
        annotations: {kubectl.kubernetes.io/restartedAt: -2h30m}
      spec:
        template:
          metadata: {creationTimestamp: null}
          spec:
            containers:
              - name: app
                resources: {limits: {cpu: 500m, memory: 256Mi}}
                env: [{name: TIMEOUT, value: 15s}]
      status:
        conditions:
          - {type: Available, lastTransitionTime: -15m, lastUpdateTime: 2026-11-20T08:00:00Z}
    - apiVersion: v1
      kind: Pod
      metadata: {name: checkout-7d9f-abc12, namespace: shop, creationTimestamp: "-20m"}
      status:
        startTime: -20m
        containerStatuses:
          - name: app
            lastState: {terminated: {reason: OOMKilled, startedAt: -1m30s, finishedAt: -1m}}
            state: {waiting: {reason: CrashLoopBackOff}}
    - apiVersion: cert-manager.io/v1
      kind: Certificate
      metadata: {name: tls, namespace: shop}
      status: {notAfter: +5m, notBefore: -90d, renewalTime: -1500ms}
  events:
    - involvedObject: {kind: Pod, namespace: shop, name: checkout-7d9f-abc12}
      type: Warning
      reason: BackOff
      message: Back-off restarting failed container app
      count: 12
      firstTimestamp: -20m
      lastTimestamp: -1m
      eventTime: 0m
  logs:
    - pod: checkout-7d9f-abc12
      container: app
      previous: true
      lines: ["2026-11-21T09:58:01Z INFO starting checkout v1.8.0", 2026-11-21T09:58:02Z]
metrics:
  interval: 30s
  series:
    - series: 'container_memory_working_set_bytes{namespace="shop",pod="checkout-7d9f-abc12",container="app"}'
      values: '100+50x3 _ stale'
    - series: up{job="checkout"}
      values: 1
alerts:
  - labels: {alertname: KubePodCrashLooping, namespace: shop, pod: checkout-7d9f-abc12, code: 500, page: true}
    annotations: {summary: Pod is crash looping.}
    startsAt: -5m
    generatorURL: http://prometheus/graph
  - labels: {alertname: KubeMemoryOvercommit}
    annotations: {}
    startsAt: "2026-11-21T09:00:00+01:00"
    endsAt: -30s
    status: resolved
expect:
  category: [memory_limit, capacity]
  resource: Deployment/shop/checkout
  mentions: [OOMKilled, 256Mi, 404]
  runbook: my-team-custom-runbook
  forbid: [rollback-deployment]
"""


def write(tmp_path: Path, text: str, name: str = "orders.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    lines = str(caught.value).splitlines()
    assert lines == caught.value.problems
    return lines


# --- the shared examples ---------------------------------------------------------------------


def test_every_shared_scenario_loads() -> None:
    folder = shared_scenarios_dir()
    files = sorted(folder.glob("*.yaml"))
    assert files, f"no scenarios in {folder}"
    scenarios = load_scenarios([folder])
    assert [s.path for s in scenarios] == files
    assert len({s.id for s in scenarios}) == len(files)
    for scenario in scenarios:
        assert scenario.now.tzinfo is not None
        assert scenario.alerts, scenario.id
        assert set(scenario.expect.categories) <= set(CATEGORIES)
        for alert in scenario.alerts:
            assert alert.starts_at <= scenario.now, (scenario.id, alert.alertname)
        for series in scenario.series_samples():
            assert series.samples[-1][0] == int(scenario.now.timestamp() * 1000)


def test_shared_scenarios_have_no_unresolved_times() -> None:
    """No relative duration survives under a time key; other values (cpu: 500m) are untouched."""
    untouched: list[str] = []

    def walk(value: object, key: object, where: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k, f"{where}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, key, f"{where}[{i}]")
        elif is_time_key(key) and isinstance(value, str):
            assert not is_relative_duration(value), where
        elif is_relative_duration(value):
            untouched.append(str(value))

    for scenario in load_scenarios([shared_scenarios_dir()]):
        walk(scenario.cluster.objects, None, f"{scenario.id}:objects")
        walk(scenario.cluster.events, None, f"{scenario.id}:events")
    assert "500m" in untouched  # CPU quantities look like durations and must stay as written


# --- clock and relative times ----------------------------------------------------------------


def test_relative_times_resolve_everywhere(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, FULL))
    assert scenario.now == datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    deployment, pod, cert = scenario.cluster.objects
    meta = deployment["metadata"]
    assert meta["creationTimestamp"] == "2026-11-18T10:00:00Z"
    assert meta["annotations"]["kubectl.kubernetes.io/restartedAt"] == "2026-11-21T07:30:00Z"
    assert meta["labels"] == {"app": "checkout", "expires": "-1m"}  # label values are not times
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"] == {"limits": {"cpu": "500m", "memory": "256Mi"}}
    assert container["env"] == [{"name": "TIMEOUT", "value": "15s"}]
    assert deployment["spec"]["template"]["metadata"] == {"creationTimestamp": None}
    condition = deployment["status"]["conditions"][0]
    assert condition["lastTransitionTime"] == "2026-11-21T09:45:00Z"
    assert condition["lastUpdateTime"] == "2026-11-20T08:00:00Z"  # absolute: kept as written
    terminated = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert (terminated["startedAt"], terminated["finishedAt"]) == (
        "2026-11-21T09:58:30Z",
        "2026-11-21T09:59:00Z",
    )
    assert pod["status"]["startTime"] == pod["metadata"]["creationTimestamp"] == "2026-11-21T09:40:00Z"
    assert cert["status"] == {
        "notAfter": "2026-11-21T10:05:00Z",
        "notBefore": "2026-08-23T10:00:00Z",
        "renewalTime": "2026-11-21T09:59:58Z",  # -1.5s: fractional seconds dropped
    }
    (event,) = scenario.cluster.events
    assert (event["firstTimestamp"], event["lastTimestamp"], event["eventTime"]) == (
        "2026-11-21T09:40:00Z",
        "2026-11-21T09:59:00Z",
        "2026-11-21T10:00:00Z",
    )
    assert event["count"] == 12
    firing, resolved = scenario.alerts
    assert firing.starts_at == datetime(2026, 11, 21, 9, 55, tzinfo=UTC)
    assert firing.status == "firing" and firing.ends_at is None
    assert firing.labels["code"] == "500" and firing.labels["page"] == "true"
    assert firing.generator_url == "http://prometheus/graph"
    assert resolved.starts_at == datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    assert resolved.ends_at == datetime(2026, 11, 21, 9, 59, 30, tzinfo=UTC)
    assert resolved.status == "resolved"


def test_everything_else_is_exposed(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, FULL))
    assert scenario.path == tmp_path / "orders.yaml"
    assert scenario.source == "hand-written"
    assert scenario.cluster.name == "prod-eu-1"
    (log,) = scenario.cluster.logs
    assert (log.pod, log.container, log.previous, log.namespace) == ("checkout-7d9f-abc12", "app", True, None)
    assert log.lines[1] == "2026-11-21T09:58:02Z"  # the YAML loader keeps timestamps as text
    assert scenario.expect.categories == ("memory_limit", "capacity")
    assert scenario.expect.resource_ref == ResourceRef("Deployment", "shop", "checkout")
    assert scenario.expect.mentions == ["OOMKilled", "256Mi", "404"]
    assert scenario.expect.runbook == "my-team-custom-runbook"  # unknown runbooks are allowed
    assert scenario.expect.runbook not in BUILTIN_RUNBOOKS
    assert scenario.metrics is not None and scenario.metrics.interval == timedelta(seconds=30)
    memory, up = scenario.metrics.series
    assert memory.name == "container_memory_working_set_bytes"
    assert memory.labels == {"namespace": "shop", "pod": "checkout-7d9f-abc12", "container": "app"}
    assert memory.samples == [100, 150, 200, 250, None, STALE]
    assert up.samples == [1.0]


def test_last_sample_lies_at_now(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, FULL))
    now_ms = 1795255200000
    memory, up = scenario.series_samples()
    assert [t for t, _ in memory.samples] == [now_ms - k * 30_000 for k in (5, 4, 3, 2, 1, 0)]
    assert up.samples == ((now_ms, 1.0),)


def test_to_openmetrics(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, FULL))
    labels = 'container="app",namespace="shop",pod="checkout-7d9f-abc12"'
    assert to_openmetrics(scenario, extra_labels={"cluster": "prod-eu-1", "namespace": "default"}) == (
        "# TYPE container_memory_working_set_bytes unknown\n"
        f'container_memory_working_set_bytes{{cluster="prod-eu-1",{labels}}} 100.0 1795255050\n'
        f'container_memory_working_set_bytes{{cluster="prod-eu-1",{labels}}} 150.0 1795255080\n'
        f'container_memory_working_set_bytes{{cluster="prod-eu-1",{labels}}} 200.0 1795255110\n'
        f'container_memory_working_set_bytes{{cluster="prod-eu-1",{labels}}} 250.0 1795255140\n'
        "# TYPE up unknown\n"
        'up{cluster="prod-eu-1",job="checkout",namespace="default"} 1.0 1795255200\n'
        "# EOF\n"
    )


def test_without_now_the_clock_decides(tmp_path: Path) -> None:
    text = MINIMAL.replace('now: "2026-11-21T10:00:00Z"\n', "")
    frozen = datetime(2027, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    scenario = load_scenario(write(tmp_path, text), clock=lambda: frozen)
    assert scenario.now == datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)  # whole seconds
    assert scenario.alerts[0].starts_at == datetime(2027, 1, 2, 2, 59, 5, tzinfo=UTC)
    before = datetime.now(UTC).replace(microsecond=0)
    wall = load_scenario(write(tmp_path, text, "wall.yaml"))
    assert before <= wall.now <= datetime.now(UTC)


def test_unquoted_now_and_offsets(tmp_path: Path) -> None:
    text = MINIMAL.replace('now: "2026-11-21T10:00:00Z"', "now: 2026-11-21T11:00:00+01:00")
    assert load_scenario(write(tmp_path, text)).now == datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


# --- errors ----------------------------------------------------------------------------------


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "severity: high\n")
    assert problems_of(path) == [
        f"{path}: severity: unknown key (allowed: id, title, source, now, cluster, metrics, alerts, expect)"
    ]


def test_bad_category(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("category: memory_limit", "category: memry_limit"))
    (line,) = problems_of(path)
    assert line.startswith(f"{path}: expect.category: 'memry_limit' is not a taxonomy category")
    assert "did you mean 'memory_limit'?" in line
    assert ", ".join(CATEGORIES) in line


def test_bad_category_in_a_list(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("category: memory_limit", "category: [memory_limit, crashloop]"))
    (line,) = problems_of(path)
    assert line.startswith(f"{path}: expect.category: 'crashloop' is not a taxonomy category")


def test_missing_required_field(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("title: Checkout pods OOMKilled\n", ""))
    assert problems_of(path) == [f"{path}: title: required field is missing"]


def test_missing_nested_field(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("    startsAt: -5m\n", ""))
    assert problems_of(path) == [f"{path}: alerts[0].startsAt: required field is missing"]


def test_bad_values_notation(tmp_path: Path) -> None:
    text = MINIMAL + "metrics:\n  interval: 1m\n  series:\n    - {series: 'up', values: '1 2 x3'}\n"
    path = write(tmp_path, text)
    (line,) = problems_of(path)
    assert line.startswith(f"{path}: metrics.series[0].values: bad values item 'x3' (item 3)")


def test_every_problem_is_reported_one_per_line(tmp_path: Path) -> None:
    text = (
        MINIMAL.replace("id: checkout-oom", "id: Checkout_OOM")
        .replace("startsAt: -5m", "startsAt: five minutes ago")
        .replace("resource: Deployment/shop/checkout", "resource: deployment/checkout")
        .replace(
            "    annotations: {summary: crash looping}\n",
            "    annotations: {summary: x}\n    severity: high\n",
        )
        + "metrics:\n  interval: 0s\n  series: []\n"
    )
    path = write(tmp_path, text)
    lines = problems_of(path)
    fields = [line.split(": ")[1] for line in lines]
    assert fields == ["id", "metrics.interval", "alerts[0].startsAt", "alerts[0].severity", "expect.resource"]
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert "must be longer than zero" in lines[1]
    assert "unknown key (allowed: labels, annotations, startsAt, endsAt, status, generatorURL)" in lines[3]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (('now: "2026-11-21T10:00:00Z"', "now: -5m"), "now: '-5m' is not an RFC 3339 time"),
        (
            ('now: "2026-11-21T10:00:00Z"', "now: 2026-11-21T10:00:00"),
            "now: '2026-11-21T10:00:00' is not an RFC",
        ),
        (("startsAt: -5m", "startsAt: -5x"), "alerts[0].startsAt: '-5x' is neither an RFC 3339 time"),
        (
            ("startsAt: -5m", "startsAt: -5m\n    status: open"),
            "alerts[0].status: Input should be 'firing' or",
        ),
        (("startsAt: -5m", "startsAt: -5m\n    endsAt: -10m"), "alerts[0]: endsAt lies before startsAt"),
        (("alertname: KubePodCrashLooping, ", ""), "alerts[0].labels: an alert needs an alertname label"),
        (("namespace: shop}", "bad-label: shop}"), "alerts[0].labels: 'bad-label' is not a valid label name"),
        (
            ("resource: Deployment/shop/checkout", "resource: Deployment/shop/x/y"),
            "expect.resource: 'Deployment",
        ),
        (
            ("objects: []", "objects: [{kind: Pod, apiVersion: v1, metadata: {}}]"),
            "cluster.objects[0]: Pod has no",
        ),
        (("events: []", "events: [{reason: BackOff}]"), "cluster.events[0]: involvedObject is missing"),
        (
            ("  resource: Deployment/shop/checkout", "  resource: '-'\n  runbook: x\n  forbid: [x]"),
            "expect: runbook",
        ),
        (("title: Checkout pods OOMKilled", "title: ''"), "title: must not be empty"),
    ],
)
def test_field_errors(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new))
    (line,) = problems_of(path)
    assert line.startswith(f"{path}: {expected}"), line


def test_metric_errors(tmp_path: Path) -> None:
    text = MINIMAL + (
        "metrics:\n  interval: 60\n  series:\n"
        "    - {series: 'up{job=~\"a\"}', values: '1'}\n"
        "    - {series: 'up', values: '_x0'}\n"
    )
    lines = problems_of(write(tmp_path, text))
    assert [line.split(": ", 2)[1:] for line in lines] == [
        ["metrics.interval", "expected a duration such as 1m or 30s, got 60"],
        [
            "metrics.series[0].series",
            "label 'job' in series selector 'up{job=~\"a\"}' must use '=' (input series are exact)",
        ],
        ["metrics.series[1].values", "has no samples"],
    ]


def test_duplicate_series_and_objects(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "objects: []",
        "objects: [{kind: Pod, apiVersion: v1, metadata: {name: a, namespace: x}},"
        " {kind: Pod, apiVersion: v1, metadata: {name: a, namespace: x}}]",
    ) + (
        "metrics:\n  interval: 1m\n  series:\n    - {series: 'up{a=\"1\",b=\"2\"}', values: '1'}\n"
        "    - {series: 'up{b=\"2\",a=\"1\"}', values: '2'}\n"
    )
    lines = problems_of(write(tmp_path, text))
    assert [line.split(": ", 1)[1] for line in lines] == [
        "cluster: objects[1] duplicates objects[0] (Pod/x/a)",
        "metrics: series[1] describes the same series as series[0]",
    ]


def test_yaml_problems(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "title: again\n")
    (line,) = problems_of(path)
    assert line.startswith(f"{path}: line 14: invalid YAML: duplicate key 'title'")
    path = write(tmp_path, "id: [unclosed\n", "broken.yaml")
    (line,) = problems_of(path)
    assert line.startswith(f"{path}: line 2: invalid YAML")
    assert problems_of(write(tmp_path, "- a\n- b\n", "list.yaml"))[0].endswith(
        "the document must be a mapping of the scenario's fields"
    )
    assert (
        "exactly one YAML document, found 2"
        in problems_of(write(tmp_path, MINIMAL + "---\n" + MINIMAL, "two.yaml"))[0]
    )
    assert "cannot read" in problems_of(tmp_path / "missing.yaml")[0]


def test_yaml_merge_keys_may_override(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "objects: []",
        "objects:\n    - &pod {kind: Pod, apiVersion: v1, metadata: {name: a}}\n"
        "    - {<<: *pod, metadata: {name: b}}",
    )
    scenario = load_scenario(write(tmp_path, text))
    assert [o["metadata"]["name"] for o in scenario.cluster.objects] == ["a", "b"]


def test_load_scenarios_folders_files_and_duplicates(tmp_path: Path) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    write(folder, MINIMAL.replace("id: checkout-oom", "id: b-case"), "b.yml")
    write(folder, MINIMAL.replace("id: checkout-oom", "id: a-case"), "a.yaml")
    write(folder, "not a scenario", "README.md")
    single = write(tmp_path, MINIMAL)
    assert [s.id for s in load_scenarios([folder, single])] == ["a-case", "b-case", "checkout-oom"]
    clash = write(tmp_path, MINIMAL.replace("id: checkout-oom", "id: a-case"), "clash.yaml")
    broken = write(tmp_path, MINIMAL.replace("category: memory_limit", "category: oom"), "broken.yaml")
    with pytest.raises(ScenarioError) as caught:
        load_scenarios([folder, clash, broken])
    assert caught.value.problems[0] == f"{clash}: id: 'a-case' is already used by {folder / 'a.yaml'}"
    assert caught.value.problems[1].startswith(f"{broken}: expect.category: 'oom'")


def test_from_dict_needs_no_file() -> None:
    import yaml

    data = yaml.safe_load(MINIMAL)
    scenario = Scenario.from_dict(data)
    assert scenario.path is None and scenario.id == "checkout-oom"
    with pytest.raises(ScenarioError, match=r"^<scenario>: id: required field is missing$"):
        Scenario.from_dict({k: v for k, v in data.items() if k != "id"})


def test_alerts_with_absolute_times_need_no_clock() -> None:
    from bot.sandbox.scenario import ScenarioAlert

    alert = ScenarioAlert(labels={"alertname": "X"}, annotations={}, startsAt="2026-11-21T10:00:00Z")
    assert alert.starts_at == datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="relative times need the scenario clock"):
        ScenarioAlert(labels={"alertname": "X"}, annotations={}, startsAt="-5m")
