"""The cost and capacity digest: `CostConfig` (the `cost` section of the digests file) and `build`.

`build(config, context)` reads each configured cluster's Prometheus over the look-back and
returns one `DigestReport`: oversized and idle workloads with what right-sizing would save,
unattached volumes, HPAs pinned at their maximum, and volumes, node filesystems and quotas
predicted to fill within the forecast horizon, with a chart of requested versus used resources
by namespace and the PromQL behind every figure. The configuration is immutable and every
field has a default, so an empty `cost:` section is valid.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from bot.digests.cost.build import build  # build.py refers to the models below for typing only

__all__ = ["CostConfig", "Prices", "build"]


class Prices(BaseModel):
    """What requested resources cost; only requests are priced (what the scheduler reserves)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vcpu_hour: float = Field(0.031, ge=0, description="price of one vCPU requested for one hour")
    gib_hour: float = Field(0.0042, ge=0, description="price of one GiB of memory requested for one hour")
    storage_gib_month: float | None = Field(
        None, ge=0,
        description="price of one GiB of persistent volume for a month; unset: volumes are not priced")
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code the prices are in")


class CostConfig(BaseModel):
    """The `cost` section of the digests file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lookback_days: int = Field(7, ge=1, le=60, description="days of history behind every figure")
    prices: Prices = Field(default_factory=Prices)
    oversized_ratio: float = Field(
        2.0, gt=1, description="a request is oversized when it is at least this many times the p95 use")
    headroom: float = Field(
        0.2, ge=0, le=2, description="added to the p95 use for a suggested request (0.2 = 20 % more)")
    min_monthly_saving: float = Field(
        5.0, ge=0, description="oversized workloads saving less than this a month are not listed")
    idle_cpu_cores: float = Field(0.01, ge=0, description="average CPU use below this (cores) counts as idle")
    idle_network_bytes_per_second: float = Field(
        1024.0, ge=0, description="average bytes received per second below this count as no traffic")
    hpa_pinned_share: float = Field(
        0.5, gt=0, le=1,
        description="an HPA at its maxReplicas for at least this share of the look-back is pinned")
    forecast_days: int = Field(
        14, ge=1, le=365, description="report volumes, filesystems and quotas predicted to fill this soon")
    clusters: list[str | None] = Field(
        default_factory=lambda: [None], min_length=1,
        description="cluster names; null is the default cluster")
    top: int = Field(10, ge=1, le=200, description="savings listed as findings, largest first")
    query_timeout_seconds: float = Field(30.0, gt=0, le=300, description="timeout of each PromQL query")

