"""`POST /api/deploy-check`: the deploy gate for CD pipelines. Thin: authenticate (its own bearer
token, `OPSBOT_DEPLOY_CHECK_TOKEN`), parse, ask `bot.ask.risk`, answer JSON.

200 with the verdict (`go`, `wait`, `no-go`) and its reasons; the pipeline decides what to do
with `wait`. 401 without the token, 404 when no token is configured (the gate is off), 400 for a
body that is not `{"workload": "deploy/NAMESPACE/NAME"}` (with an optional `"cluster"` when several
are configured) or names no valid workload.
"""

from __future__ import annotations

import hmac
import json

from flask import Blueprint, jsonify, request

from bot.ask import risk
from bot.runtime import Runtime

MAX_BODY_BYTES = 4096


def deploy_check_blueprint(runtime: Runtime) -> Blueprint:
    blueprint = Blueprint("deploy_check", __name__)

    @blueprint.post("/api/deploy-check")
    def deploy_check():
        token = runtime.settings.deploy_check_token
        if not token:
            return jsonify(error="the deploy gate is off: set OPSBOT_DEPLOY_CHECK_TOKEN"), 404
        scheme, _, given = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return jsonify(error="missing or invalid bearer token"), 401
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return jsonify(error=f"body larger than {MAX_BODY_BYTES} bytes"), 413
        try:
            body = json.loads(request.get_data(cache=False) or b"{}")
            body = body if isinstance(body, dict) else {}
            workload = risk.parse_workload(str(body.get("workload", "")))
            cluster = body.get("cluster")
            if cluster is not None and not isinstance(cluster, str):
                raise risk.RiskInputError("`cluster` must be a string")
        except ValueError as exc:  # JSON errors and RiskInputError
            problem = str(exc) if isinstance(exc, risk.RiskInputError) else "the body is not JSON"
            return jsonify(error=problem), 400
        verdict = risk.assess(runtime.factory, workload, risk.inputs_of(runtime, cluster), runtime.clock(),
                              f"api:{request.remote_addr or '?'}")
        return jsonify(verdict.as_dict()), 200

    return blueprint
