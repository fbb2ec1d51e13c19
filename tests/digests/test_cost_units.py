"""The cost digest's pure parts: configuration, rounding, units, forecast arithmetic, queries, chart."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from pydantic import ValidationError

from bot.digests.cost import CostConfig
from bot.digests.cost import queries as q
from bot.digests.cost.build import (
    CPU_STEPS_CORES,
    MEMORY_STEPS_BYTES,
    Money,
    cpu_quantity,
    memory_quantity,
    round_up,
)
from bot.digests.cost.chart import MAX_NAMESPACES, NamespaceUsage, usage_chart
from bot.digests.cost.forecast import days_until_limit, format_bytes, plural

MIB, GIB = 1024**2, 1024**3


def test_config_defaults_and_unknown_fields() -> None:
    config = CostConfig()
    assert (config.lookback_days, config.forecast_days, config.top) == (7, 14, 10)
    assert config.oversized_ratio == 2.0
    assert config.clusters == [None] and config.prices.currency == "USD"
    assert config.prices.storage_gib_month is None
    with pytest.raises(ValidationError):
        CostConfig(lookback=7)
    with pytest.raises(ValidationError):
        CostConfig(prices={"vcpu_hour": 0.03, "gpu_hour": 1.0})
    with pytest.raises(ValidationError):
        CostConfig(oversized_ratio=1.0)


@pytest.mark.parametrize(("cores", "expected"), [(0.004, 0.01), (0.0431, 0.05), (0.144, 0.15), (0.95, 0.95),
                                                 (1.01, 1.25), (3.3, 3.5)])
def test_cpu_suggestions_round_up_to_the_size_class_step(cores: float, expected: float) -> None:
    assert round_up(cores, CPU_STEPS_CORES) == pytest.approx(expected)


def test_memory_suggestions_round_up_and_never_go_below_the_floor() -> None:
    assert round_up(1, MEMORY_STEPS_BYTES) == 32 * MIB
    assert round_up(600 * MIB, MEMORY_STEPS_BYTES) == 608 * MIB
    assert round_up(1.1 * GIB, MEMORY_STEPS_BYTES) == 1.25 * GIB
    assert round_up(9.2 * GIB, MEMORY_STEPS_BYTES) == 10 * GIB


def test_quantities_read_as_kubernetes_writes_them() -> None:
    assert (cpu_quantity(0.15), cpu_quantity(2.0), cpu_quantity(1.25)) == ("150m", "2", "1.25")
    assert (memory_quantity(4 * GIB), memory_quantity(640 * MIB), memory_quantity(1280 * MIB)) == (
        "4Gi", "640Mi", "1280Mi")
    assert format_bytes(1.5 * GIB) == "1.5 GiB" and format_bytes(900) == "900 B"


def test_money_in_the_configured_currency() -> None:
    assert Money("USD")(1234.5) == "$1,234.50"
    assert Money("CHF")(12) == "12.00 CHF"
    assert Money("EUR")(0.0042, exact=True) == "€0.0042"


def test_days_until_limit_from_the_two_predictions() -> None:
    horizon = 14 * 86400
    # 7.5 of 10 used, 14 more per 14 days: 1 a day, 2.5 days left
    assert days_until_limit(10, 7.5, 21.5, horizon) == pytest.approx(2.5)
    assert days_until_limit(10, 12, 20, horizon) == 0.0  # past the limit by the trend
    assert days_until_limit(10, 5, 5, horizon) is None  # flat
    assert days_until_limit(10, 5, 4, horizon) is None  # shrinking


def test_plural_agrees_with_the_count() -> None:
    assert plural(1, "volume", "fills") == "1 volume fills"
    assert plural(2, "volume", "fills") == "2 volumes fill"
    assert plural(7, "day") == "7 days"


def test_every_query_renders_without_placeholders_and_keeps_label_replace_groups() -> None:
    keys = [spec.key for spec in q.ALL_QUERIES]
    assert len(keys) == len(set(keys))
    for spec in q.ALL_QUERIES:
        text = q.render(spec, lookback_days=7, horizon_seconds=1209600)
        assert not re.search(r"\$[a-z_]", text), spec.key
        assert text.count("(") == text.count(")"), spec.key
        assert spec.description and spec.feeds
        assert all(section in q.SECTION_SLUGS or section == q.SECTION_NAMESPACES for section in spec.feeds)
    requests_query = q.render(q.CONTAINER_REQUESTS, lookback_days=7, horizon_seconds=1)
    assert '"$1"' in requests_query and "kube_replicaset_owner" in requests_query
    assert "[3d:5m]" in q.render(q.CPU_P95, lookback_days=3, horizon_seconds=1)
    assert "604800" in q.render(q.CLAIM_USED_FORECAST, lookback_days=7, horizon_seconds=604800)


def test_chart_keeps_the_largest_namespaces_and_sums_the_rest() -> None:
    rows = [NamespaceUsage(f"ns-{i:02d}", cpu_requested_cores=i + 1.0, cpu_used_cores=i / 2,
                           memory_requested_bytes=(i + 1) * GIB, memory_used_bytes=i * MIB)
            for i in range(MAX_NAMESPACES + 5)]
    png = usage_chart(rows, title="test")
    assert png is not None
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.height > 0
    assert usage_chart([], title="empty") is None
    assert png == usage_chart(list(reversed(rows)), title="test")  # the order of the input does not matter

