"""Put a scenario's metrics into a real Prometheus.

The scenario's series are written as OpenMetrics (`bot.sandbox.scenario.to_openmetrics`) and
backfilled with promtool, so that PromQL at and before the scenario's ``now`` sees exactly the
expanded values: the last sample of every series lies at ``now``. Missing (``_``) samples are
absent; staleness markers cannot be backfilled and are absent too, so a series that ends with
``stale`` still answers instant queries for up to 5 minutes (PromQL's lookback) after its last
real sample.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.sandbox.promstack import PrometheusProcess
from bot.sandbox.promvalues import Stale
from bot.sandbox.scenario import Scenario, to_openmetrics

__all__ = ["load_metrics_into", "to_openmetrics"]


def load_metrics_into(
    prom: PrometheusProcess, scenario: Scenario, *, extra_labels: Mapping[str, str] | None = None
) -> int:
    """Backfill the scenario's metrics into ``prom``; return the number of samples written.

    A scenario without metrics (or with only missing samples) is a no-op and returns 0. A
    running server is restarted by `PrometheusProcess.backfill`; call this before ``start``
    to avoid that.
    """
    count = sum(
        1
        for series in scenario.series_samples()
        for _, value in series.samples
        if value is not None and not isinstance(value, Stale)
    )
    if count:
        prom.backfill(to_openmetrics(scenario, extra_labels=extra_labels))
    return count
