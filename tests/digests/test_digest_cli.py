"""`opsbot digest` as a person runs it: the digest printed (nothing posted with --dry-run), posted
once per slot, and a bad file or bad flags as one line, never a traceback."""

from __future__ import annotations

from bot.sandbox.kube import KubeApiServer, SandboxCluster
from tests.digests.test_drift_build import MANIFESTS, NOW, shop_drifted
from tests.test_cli import opsbot


def env_for(tmp_path, kube_url: str, digests: str, **extra) -> dict:
    path = tmp_path / "digests.yaml"
    path.write_text(digests)
    data = tmp_path / "data"
    return {"OPSBOT_DATA_DIR": str(data), "OPSBOT_DIGESTS_FILE": str(path), "OPSBOT_KUBE_MODE": "url",
            "OPSBOT_KUBE_API_URL": kube_url, **extra}


def test_dry_run_prints_the_digest_and_changes_nothing(tmp_path):
    cluster = SandboxCluster(now=NOW)
    cluster.load(shop_drifted())
    with KubeApiServer(cluster) as server:
        env = env_for(tmp_path, server.base_url, f"drift: {{sources: [{{path: {MANIFESTS / 'shop'}, namespace: shop}}]}}")
        assert opsbot("db", "upgrade", env=env).returncode == 0
        result = opsbot("digest", "drift", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert "# Drift digest" in result.stdout and "Changed by hand" in result.stdout
    assert "Deployment shop/web" in result.stdout and "declared 3, live 5" in result.stdout
    assert "Traceback" not in result.stderr


def test_posting_needs_slack_and_bad_input_is_one_line(tmp_path):
    env = env_for(tmp_path, "http://127.0.0.1:9", "schedules: [{digest: drift, channel: C1}]")
    result = opsbot("digest", "drift", "--now", env=env)
    assert result.returncode == 2 and "posting needs Slack" in result.stderr and "Traceback" not in result.stderr
    assert opsbot("digest", "drift", "--now", "--dry-run", env=env).returncode == 2
    bad = env_for(tmp_path, "http://127.0.0.1:9", "schedules: [{digest: drift, channel: C1, cron: '0 25 * * *', "
                                                   "timezone: Mars/Olympus}]\ncost: {lookback_days: -1}\n")
    result = opsbot("digest", "all", "--dry-run", env=bad)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown time zone 'Mars/Olympus'" in result.stderr and "cost.lookback_days" in result.stderr
    broken = env_for(tmp_path, "http://127.0.0.1:9", "schedules: [\n  {digest: drift\n")
    result = opsbot("digest", "drift", "--dry-run", env=broken)
    assert result.returncode == 2 and "is not valid YAML" in result.stderr and "line" in result.stderr


def test_a_cluster_that_does_not_answer_is_said_in_the_digest(tmp_path):
    env = env_for(tmp_path, "http://127.0.0.1:9", f"drift: {{sources: [{{path: {MANIFESTS / 'shop'}}}]}}")
    result = opsbot("digest", "drift", "--dry-run", env=env)
    assert result.returncode == 1 and "opsbot db upgrade" in result.stderr  # the database first, said plainly
    assert opsbot("db", "upgrade", env=env).returncode == 0
    result = opsbot("digest", "drift", "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    assert "Could not check" in result.stdout
