"""The rollout diff says that a secret changed, never what it is (issue 12, item 1)."""

from bot.context.rollout import template_changes
from bot.diagnosis.analyzers.deploy import describe_change
from bot.redaction import MASK


def template(env=(), args=()):
    return {"metadata": {}, "spec": {"containers": [{"name": "api", "image": "api:1", "env": list(env),
                                                     "args": list(args)}]}}


def changes(before, after):
    return {c.path.removeprefix("containers[api]."): c for c in template_changes(before, after)}


def test_env_secrets_are_masked_but_their_change_is_shown():
    before = template([{"name": "API_TOKEN", "value": "old-token-value-1111"},
                       {"name": "LOG_LEVEL", "value": "info"},
                       {"name": "OLD_SECRET", "value": "gone-value-3333"}])
    after = template([{"name": "API_TOKEN", "value": "new-token-value-2222"},
                      {"name": "LOG_LEVEL", "value": "debug"},
                      {"name": "DB_PASSWORD", "value": "hunter2-abc"},
                      {"name": "FEATURE_FAST_CHECKOUT", "value": "true"},
                      {"name": "REPLICA_COUNT", "value": "4"},
                      {"name": "PAYMENTS_KEY", "valueFrom": {"secretKeyRef": {"name": "payments", "key": "api-key"}}},
                      {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}])
    diff = changes(before, after)
    shown = [describe_change(c) for c in diff.values()]
    assert not any(secret in " ".join(shown) for secret in ("1111", "2222", "hunter2", "3333"))
    assert describe_change(diff["env.API_TOKEN"]) == "containers[api].env.API_TOKEN changed (value hidden)"
    assert describe_change(diff["env.DB_PASSWORD"]) == f"containers[api].env.DB_PASSWORD added ({MASK})"
    assert describe_change(diff["env.OLD_SECRET"]) == f"containers[api].env.OLD_SECRET removed (was {MASK})"
    assert (diff["env.LOG_LEVEL"].before, diff["env.LOG_LEVEL"].after) == ("info", "debug")
    assert diff["env.FEATURE_FAST_CHECKOUT"].after == "true" and diff["env.REPLICA_COUNT"].after == "4"
    assert diff["env.PAYMENTS_KEY"].after == "secretKeyRef payments/api-key"
    assert diff["env.POD_IP"].after == "fieldRef status.podIP"


def test_a_secret_moved_into_a_secret_reference_shows_only_the_reference():
    diff = changes(template([{"name": "DB_PASSWORD", "value": "hunter2"}]),
                   template([{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]))
    assert (diff["env.DB_PASSWORD"].before, diff["env.DB_PASSWORD"].after) == (MASK, "secretKeyRef db/pw")


def test_secret_flags_in_args_are_masked():
    before = template(args=["--port=8080", "--db-password=hunter2", "--token", "tok-111", "--model", "e5-large-v2"])
    after = template(args=["--port=8080", "--db-password=hunter3", "--token", "tok-222", "--model", "e5-large-v2-int8",
                           "a8f3k2j9d8s7f6g5"])
    diff = changes(before, after)["args"]
    assert "hunter" not in diff.before + diff.after and "tok-" not in diff.before + diff.after
    assert "a8f3k2j9d8s7f6g5" not in diff.after
    assert '"--db-password=[REDACTED]"' in diff.after and '"--model","e5-large-v2-int8"' in diff.after


def probe(headers, command=None):
    check = {"exec": {"command": command}} if command else \
        {"httpGet": {"path": "/healthz", "port": 8080, "httpHeaders": headers}}
    return {"metadata": {}, "spec": {"containers": [{"name": "api", "image": "api:1", "livenessProbe": check,
                                                     "readinessProbe": check}]}}


def test_probe_header_values_are_masked_unless_plainly_not_secret():
    before = probe([{"name": "X-Api-Key", "value": "probe-key-1111"}, {"name": "Host", "value": "api.shop.svc"}])
    after = probe([{"name": "X-Api-Key", "value": "probe-key-2222"}, {"name": "Host", "value": "api.shop.svc"},
                   {"name": "Authorization", "value": "Bearer probe-bearer-3333"},
                   {"name": "X-Probe-Mode", "value": "deep"}, {"name": "X-Tenant", "value": "a8f3k2j9d8s7f6g5"}])
    diff = changes(before, after)
    for field in ("livenessProbe", "readinessProbe"):
        shown = diff[field].before + diff[field].after
        assert not any(secret in shown for secret in ("1111", "2222", "3333", "a8f3k2j9d8s7f6g5")), shown
        assert '{"name":"X-Api-Key","value":"[REDACTED]"}' in diff[field].after
        assert '{"name":"Authorization","value":"[REDACTED]"}' in diff[field].after
        assert '{"name":"Host","value":"api.shop.svc"}' in diff[field].after, "an address is plainly not secret"
        assert '{"name":"X-Probe-Mode","value":"deep"}' in diff[field].after, "a mode word is plainly not secret"
        assert '"path":"/healthz"' in diff[field].after


def test_an_exec_probe_command_is_masked_like_args():
    diff = changes(probe([], ["grpc_health_probe", "--token", "tok-probe-1"]),
                   probe([], ["grpc_health_probe", "--token", "tok-probe-2", "--addr=:8080"]))
    shown = diff["livenessProbe"].before + diff["livenessProbe"].after
    assert "tok-probe" not in shown and '"--addr=:8080"' in diff["livenessProbe"].after
