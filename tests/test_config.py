import pytest

from bot.config import ConfigError, load_settings

REAL_SLACK = {"OPSBOT_SLACK_BOT_TOKEN": "xoxb-1", "OPSBOT_SLACK_SIGNING_SECRET": "s",
              "OPSBOT_WEBHOOK_TOKEN": "t", "OPSBOT_KUBE_MODE": "in-cluster"}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("OPSBOT_") or key == "DATABASE_URL":
            monkeypatch.delenv(key)


def test_defaults_run_locally_without_secrets():
    settings = load_settings()
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.kube_mode == "sandbox" and not settings.uses_real_slack


def test_database_url_is_honoured_and_spelled_with_the_installed_driver(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u@db/opsbot")
    assert load_settings().effective_database_url == "postgresql+psycopg://u@db/opsbot"


def test_every_problem_is_reported_in_one_pass(monkeypatch):
    monkeypatch.setenv("OPSBOT_HTTP_PORT", "eighty")
    monkeypatch.setenv("OPSBOT_HTTP_PROT", "80")
    monkeypatch.setenv("OPSBOT_DATABASE_URL", "mysql://x")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    problems = caught.value.problems
    assert "OPSBOT_HTTP_PROT: unknown setting" in problems
    assert any(line.startswith("OPSBOT_HTTP_PORT: ") for line in problems)
    assert any(line.startswith("OPSBOT_DATABASE_URL: unsupported database URL scheme 'mysql'") for line in problems)
    assert all("\n" not in line for line in problems)


def test_real_slack_needs_a_signing_secret_and_webhook_credentials(monkeypatch):
    monkeypatch.setenv("OPSBOT_SLACK_BOT_TOKEN", "xoxb-1")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = "\n".join(caught.value.problems)
    assert "OPSBOT_SLACK_SIGNING_SECRET is required" in text
    assert "webhooks would be unauthenticated" in text
    for key, value in REAL_SLACK.items():
        monkeypatch.setenv(key, value)
    assert load_settings().uses_real_slack


def test_yaml_file_with_environment_taking_precedence(monkeypatch, tmp_path):
    config = tmp_path / "opsbot.yaml"
    config.write_text("http_port: 9000\nslack_channel: '#ops'\n")
    monkeypatch.setenv("OPSBOT_CONFIG", str(config))
    monkeypatch.setenv("OPSBOT_HTTP_PORT", "9100")
    settings = load_settings()
    assert (settings.http_port, settings.slack_channel) == (9100, "#ops")


@pytest.mark.parametrize(("content", "message"), [
    ("http_port: [1]\n", "http_port (config file)"),
    ("colour: blue\n", "colour: unknown setting in the config file"),
    ("- a\n- b\n", "must hold a mapping"),
    ("a: [\n", "not valid YAML"),
])
def test_bad_config_files_are_named(monkeypatch, tmp_path, content, message):
    config = tmp_path / "opsbot.yaml"
    config.write_text(content)
    monkeypatch.setenv("OPSBOT_CONFIG", str(config))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings()


def test_kubernetes_service_links_are_not_mistaken_for_settings(monkeypatch):
    monkeypatch.setenv("OPSBOT_PORT", "tcp://10.0.0.1:80")
    monkeypatch.setenv("OPSBOT_PORT_80_TCP_ADDR", "10.0.0.1")
    monkeypatch.setenv("OPSBOT_SERVICE_HOST", "10.0.0.1")
    load_settings()


def test_serving_beyond_loopback_needs_webhook_credentials_and_real_slack(monkeypatch):
    monkeypatch.setenv("OPSBOT_HTTP_HOST", "0.0.0.0")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = "\n".join(caught.value.problems)
    assert "webhooks would be unauthenticated" in text
    assert "OPSBOT_SLACK_BOT_TOKEN is required when serving on 0.0.0.0" in text


def test_an_emulator_url_does_not_switch_off_the_security_checks(monkeypatch):
    monkeypatch.setenv("OPSBOT_SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("OPSBOT_SLACK_API_URL", "https://slack.com/api/")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = "\n".join(caught.value.problems)
    assert "OPSBOT_SLACK_SIGNING_SECRET is required" in text and "webhooks would be unauthenticated" in text


@pytest.mark.parametrize("url", ["postgresql+psycopg2://u@h/db", "mysql://u@h/db", "sqlite+aiosqlite:///x"])
def test_unsupported_database_drivers_are_refused(monkeypatch, url):
    monkeypatch.setenv("OPSBOT_DATABASE_URL", url)
    with pytest.raises(ConfigError, match="unsupported database URL scheme"):
        load_settings()


@pytest.mark.parametrize(("cores", "database_url", "explicit", "expected"), [
    (2, "sqlite:////srv/opsbot/opsbot.sqlite3", None, 1),  # one writer: a second child would only queue
    (16, "sqlite:////srv/opsbot/opsbot.sqlite3", None, 1),
    (2, "postgresql://opsbot@db/opsbot", None, 2),  # one per core
    (16, "postgresql://opsbot@db/opsbot", None, 4),  # up to 4
    (1, "postgresql://opsbot@db/opsbot", None, 0),  # nothing to gain on one core
    (8, "sqlite:///:memory:", None, 0),  # children could not share it
    (8, "sqlite://", None, 0),
    (2, "sqlite:////srv/opsbot/opsbot.sqlite3", 0, 0),  # an explicit choice wins
    (2, "postgresql://opsbot@db/opsbot", 3, 3),
])
def test_intake_runs_in_child_processes_where_they_help(monkeypatch, cores, database_url, explicit, expected):
    monkeypatch.setattr("bot.config.available_cores", lambda: cores)
    overrides = {"intake_processes": explicit} if explicit is not None else {}
    assert load_settings(database_url=database_url, **overrides).intake_process_count == expected


@pytest.mark.parametrize(("files", "expected"), [
    ({"cpu.max": "100000 100000\n"}, 1),  # cgroup v2, a limit of one core
    ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 cores: a second core is partly usable
    ({"cpu.max": "max 100000\n"}, None),  # unlimited
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),  # no cgroup files: the affinity decides
])
def test_cores_are_counted_within_the_container_cpu_limit(tmp_path, files, expected):
    import os

    from bot.cores import available_cores

    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    affinity = len(os.sched_getaffinity(0))
    assert available_cores(tmp_path) == (min(affinity, expected) if expected else affinity)


def test_list_and_mapping_settings_from_the_environment_are_json_or_yaml(monkeypatch):
    monkeypatch.setenv("OPSBOT_CLUSTERS", '{"prod-eu": {"kube_mode": "url", "kube_api_url": "http://127.0.0.1:8001", '
                                          '"prometheus_url": "http://127.0.0.1:9090"}}')
    monkeypatch.setenv("OPSBOT_SILENCES", '["namespace=~\\"dev-.*\\""]')
    monkeypatch.setenv("OPSBOT_PAGERDUTY_WEBHOOK_SECRETS", "[s1, s2]")  # YAML flow style works too
    settings = load_settings()
    assert settings.clusters["prod-eu"].prometheus_url == "http://127.0.0.1:9090"
    assert settings.silences == ['namespace=~"dev-.*"'] and settings.pagerduty_webhook_secrets == ["s1", "s2"]
    monkeypatch.setenv("OPSBOT_CLUSTERS", "not a mapping")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert any("OPSBOT_CLUSTERS" in problem for problem in raised.value.problems)
