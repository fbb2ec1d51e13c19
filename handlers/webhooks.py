"""Alert webhook routes: authenticate, size-check, validate, store, answer. Thin by design."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, Response, jsonify, request

from bot.alerts import alertmanager, grafana, intake, pagerduty
from bot.alerts.model import PayloadError
from bot.runtime import Runtime
from bot.webhook_auth import authorised

SOURCES = (alertmanager.SOURCE, grafana.SOURCE, pagerduty.SOURCE)


def webhooks_blueprint(runtime: Runtime) -> Blueprint:
    blueprint = Blueprint("webhooks", __name__)

    def answer(source: str, code: int, **body: object) -> tuple[Response, int]:
        runtime.metrics.webhook_requests.labels(source=source, code=str(code)).inc()
        return jsonify(body), code

    @blueprint.post("/webhooks/<source>")
    def receive(source: str):
        if source not in SOURCES:
            return answer("unknown", 404, error=f"unknown webhook source '{source}'", sources=list(SOURCES))
        length = request.content_length
        if length is not None and length > runtime.settings.max_body_bytes:
            return answer(source, 413, error=f"body larger than {runtime.settings.max_body_bytes} bytes")
        if source != pagerduty.SOURCE and not authorised(runtime.settings, request.headers.get("Authorization")):
            return answer(source, 401, error="missing or invalid credentials")
        body = request.get_data(cache=False)
        if len(body) > runtime.settings.max_body_bytes:
            return answer(source, 413, error=f"body larger than {runtime.settings.max_body_bytes} bytes")
        event_id = None
        if source == pagerduty.SOURCE:
            if not runtime.settings.pagerduty_webhook_secrets:
                return answer(source, 401, error="PagerDuty webhooks are not configured "
                                                 "(set OPSBOT_PAGERDUTY_WEBHOOK_SECRETS)")
            if not pagerduty.verify_signature(runtime.settings.pagerduty_webhook_secrets, body,
                                              request.headers.get("X-PagerDuty-Signature")):
                return answer(source, 401, error="missing or invalid X-PagerDuty-Signature")
            kind = pagerduty.event_type(body)
            if kind is not None and kind not in pagerduty.HANDLED_EVENT_TYPES:
                return answer(source, 202, status="ignored", event_type=kind)
            event_id = pagerduty.event_id(body)
        try:
            accepted = intake.accept(runtime.factory, source, body, dict(request.headers), runtime.clock(),
                                     timedelta(seconds=runtime.settings.duplicate_window_seconds), event_id)
        except PayloadError as exc:
            return answer(source, 400, error=str(exc))
        if accepted.duplicate:
            return answer(source, 200, status="duplicate", delivery=accepted.delivery_id)
        runtime.workers.wake()
        return answer(source, 202, status="accepted", delivery=accepted.delivery_id)

    return blueprint
