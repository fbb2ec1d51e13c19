"""Liveness, readiness and metrics."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from bot.alerts import deliveries
from bot.db.engine import READ_ONLY, reading
from bot.db.migrate import schema_problem
from bot.runtime import Runtime


def health_blueprint(runtime: Runtime) -> Blueprint:
    blueprint = Blueprint("health", __name__)

    @blueprint.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @blueprint.get("/readyz")
    def readyz():
        try:
            with runtime.engine.connect().execution_options(**{READ_ONLY: True}) as connection:
                connection.execute(text("SELECT 1"))
            problem = schema_problem(runtime.engine)
        except Exception as exc:  # noqa: BLE001 - any database failure means not ready
            return jsonify(status="unavailable", problem=f"database unreachable: {type(exc).__name__}"), 503
        if problem:
            return jsonify(status="unavailable", problem=problem), 503
        return jsonify(status="ready")

    @blueprint.get("/metrics")
    def metrics():
        try:
            with reading(runtime.factory) as session:
                runtime.metrics.pending_deliveries.set(deliveries.pending_count(session))
        except Exception:  # noqa: BLE001 - metrics must answer even when the database does not
            pass
        return Response(generate_latest(runtime.metrics.registry), content_type=CONTENT_TYPE_LATEST)

    return blueprint
