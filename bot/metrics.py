"""Prometheus metrics of the bot, in a registry owned by the runtime (no global registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.webhook_requests = Counter(
            "opsbot_webhook_requests_total", "Webhook requests by source and HTTP status.",
            ["source", "code"], registry=self.registry,
        )
        self.deliveries_processed = Counter(
            "opsbot_deliveries_processed_total", "Raw deliveries processed, by outcome.",
            ["source", "outcome"], registry=self.registry,
        )
        self.alerts_received = Counter(
            "opsbot_alerts_received_total", "Alerts received, by source and status.",
            ["source", "status"], registry=self.registry,
        )
        self.alerts_suppressed = Counter(
            "opsbot_alerts_suppressed_total", "Alerts that opened no thread: heartbeats and silenced ones.",
            ["source", "reason"], registry=self.registry,
        )
        self.incidents_opened = Counter(
            "opsbot_incidents_opened_total", "Incidents opened.", ["source"], registry=self.registry,
        )
        self.slack_requests = Counter(
            "opsbot_slack_requests_total", "Requests to the Slack endpoints by outcome: accepted, unsigned (401), "
            "malformed (400), duplicate (a replay, not acted on).", ["endpoint", "outcome"], registry=self.registry,
        )
        self.slack_calls = Counter(
            "opsbot_slack_calls_total", "Slack Web API calls by method and outcome.",
            ["method", "outcome"], registry=self.registry,
        )
        self.work_seconds = Histogram(
            "opsbot_work_seconds", "Time spent per unit of work.", ["stage"], registry=self.registry,
        )
        self.investigations = Counter(
            "opsbot_investigations_total", "Investigations by outcome (done, failed, skipped) and top category.",
            ["outcome", "category"], registry=self.registry,
        )
        self.gatherer_seconds = Histogram(
            "opsbot_gatherer_seconds", "Time each RCA gatherer took.", ["gatherer"], registry=self.registry,
        )
        self.pending_deliveries = Gauge(
            "opsbot_pending_deliveries", "Deliveries waiting for a worker.", registry=self.registry,
        )
