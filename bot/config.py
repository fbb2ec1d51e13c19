"""Configuration: environment variables (prefix `OPSBOT_`), optionally a YAML file.

Precedence, highest first: environment, the YAML file named by `OPSBOT_CONFIG`, defaults.
The defaults run locally with no secrets: SQLite in `./data`, the sandbox cluster and the
Slack emulator. Validation happens once at start-up and reports every problem, one line each
(`ConfigError.problems`), so an operator fixes them in one pass instead of one per restart.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from typing import Any, Literal, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from bot.cores import available_cores
from bot.db.urls import normalise_database_url

ENV_PREFIX = "OPSBOT_"
# Variables with the prefix that are read elsewhere, not settings of a running bot.
NOT_SETTINGS = frozenset({"OPSBOT_CONFIG", "OPSBOT_SHARED_DIR"})
# PostgreSQL goes through psycopg 3, the driver installed with opsbot.
SUPPORTED_SCHEMES = frozenset({"sqlite", "sqlite+pysqlite", "postgresql", "postgres", "postgresql+psycopg"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
# Kubernetes injects these for a Service named `opsbot` when service links are enabled.
SERVICE_LINK = re.compile(r"^OPSBOT_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_\w+)?)?)$")


class ConfigError(Exception):
    """Invalid configuration; `problems` holds one human-readable line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


class ClusterConfig(BaseModel):
    """One entry of OPSBOT_CLUSTERS."""

    model_config = ConfigDict(extra="forbid")

    kube_mode: Literal["kubeconfig", "in-cluster", "url"] = "kubeconfig"
    kube_context: str | None = None
    kube_api_url: str | None = None
    prometheus_url: str | None = None

    @model_validator(mode="after")
    def _url_needs_url(self) -> ClusterConfig:
        if self.kube_mode == "url" and not self.kube_api_url:
            raise ValueError("kube_mode 'url' needs kube_api_url")
        return self


class Settings(BaseSettings):
    """Every setting of the bot. Field names map to `OPSBOT_<NAME>` environment variables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **other_sources):  # type: ignore[override]
        """Only explicit values: `load_settings` merges file and environment itself, so that it
        can tell which source a bad value came from."""
        return (init_settings,)

    data_dir: Path = Field(Path("data"), description="Writable directory for SQLite and local state.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; PostgreSQL in production. Default: SQLite in data_dir."
    )

    http_host: str = "127.0.0.1"
    http_port: int = Field(8080, ge=0, le=65535)
    http_threads: int = Field(8, ge=1, le=256)
    http_connection_limit: int = Field(
        1000, ge=10, le=100_000, description="Open connections served at once; past it new ones wait in the backlog.")
    http_idle_timeout_seconds: int = Field(
        10, ge=1, le=3600, description="A connection with no request in progress and no byte for this long is "
                                       "closed (idle keep-alives and clients that never send).")
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024, description="Largest webhook body accepted.")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = Field(None, description="xapp- token: use Socket Mode instead of HTTP.")
    slack_api_url: str | None = Field(None, description="Slack Web API base URL (an emulator in tests).")
    slack_channel: str = Field("#incidents", description="Channel that receives incident threads.")
    slack_emulator_port: int = Field(0, ge=0, le=65535, description="Port of the embedded emulator.")

    audit_key: str | None = Field(None, description="Secret kept outside the database: each timeline entry gets "
                                                    "an HMAC under it, so a rewritten entry shows.")
    audit_anchor_file: Path | None = Field(None, description="Append-only file that receives the timeline heads "
                                                             "(also logged) for `opsbot audit verify --anchors`.")
    audit_anchor_interval_seconds: int = Field(300, ge=10, le=86_400, description="How often changed timeline "
                                                                                  "heads are anchored.")

    webhook_token: str | None = Field(None, description="Bearer token webhook senders must present.")
    webhook_basic_user: str | None = None
    webhook_basic_password: str | None = None
    webhook_allow_unauthenticated: bool = Field(
        False, description="Accept webhooks without credentials (only for local trials)."
    )

    kube_mode: Literal["sandbox", "kubeconfig", "in-cluster", "url"] = "sandbox"
    kube_context: str | None = None
    kube_api_url: str | None = Field(None, description="API server URL without credentials (kube_mode 'url' or "
                                                        "'sandbox': the sandbox, or `kubectl proxy`).")
    clusters: dict[str, ClusterConfig] = Field(
        default_factory=dict, description="Several clusters: the alerts' `cluster` label -> {kube_mode, kube_context, "
                                          "kube_api_url, prometheus_url}. Alerts from other clusters are not investigated.")
    investigation_budget_seconds: float = Field(10, gt=0, le=120, description="Time budget of one investigation.")
    investigation_settle_seconds: float = Field(
        0, ge=0, le=600, description="Wait this long after an incident opens before investigating it.")
    investigation_threads: int = Field(2, ge=1, le=16, description="Investigations run in parallel.")
    sandbox_scenario: Path | None = Field(None, description="Scenario whose cluster the sandbox serves.")
    prometheus_url: str | None = None
    alertmanager_url: str | None = Field(None, description="Linked from incident cards.")
    anthropic_api_key: str | None = None
    pagerduty_webhook_secrets: list[str] = Field(
        default_factory=list, description="V3 webhook subscription secrets (two during a rotation)."
    )
    pagerduty_routing_key: str | None = Field(None, description="Events API v2 integration key: mirror incidents.")
    pagerduty_api_key: str | None = Field(None, description="REST API key: find PD incidents, add notes.")
    pagerduty_from_email: str | None = Field(None, description="PagerDuty user email the REST calls act as.")
    pagerduty_events_url: str | None = Field(None, description="Events API base URL (EU accounts, emulator).")
    pagerduty_rest_url: str | None = Field(None, description="REST API base URL (EU accounts, emulator).")
    pagerduty_ca_file: Path | None = Field(None, description="Extra CA certificate to trust for PagerDuty.")
    pagerduty_dedup_prefix: str = Field(
        "opsbot", description="Prefix of opsbot's Events API dedup keys (`<prefix>-INC-N`): one per install "
                              "sharing a PagerDuty account."
    )
    runbooks_dir: Path = Field(Path("runbooks"), description="Folder of runbook YAML files.")
    postmortem_template: Path | None = Field(None, description="Jinja2 Markdown template of the postmortem "
                                                                 "(default: postmortems/template.md.j2).")
    policies_dir: Path = Field(Path("policies"), description="Folder of policy YAML files.")
    postmortem_grace_seconds: float = Field(
        15, ge=0, le=3600, description="Post the postmortem this long after an incident resolves (an alert that "
                                       "fires again within it reopens the incident instead).")
    deploy_check_token: str | None = Field(None, description="Bearer token of `POST /api/deploy-check` (a CD "
                                                              "pipeline's own credential); without it the route is off.")
    risk_slo_objective: float = Field(0.999, gt=0, lt=1, description="The SLO the deploy gate's burn rates are "
                                                                      "measured against (0.999: 99.9 %).")
    status_channel: str | None = Field(None, description="Stakeholder channel: status updates (`/ops update`) are "
                                                          "also posted there, linking back to the thread.")
    digests_file: Path | None = Field(None, description="YAML file of the daily digests: schedules (digest, channel, "
                                                        "cron, time zone) and what each checks. None: no schedules.")

    duplicate_window_seconds: int = Field(
        120, ge=0, le=86400, description="An identical webhook body within this is a retry, processed once."
    )
    reopen_window_seconds: int = Field(
        3600, ge=0, description="A resolved incident that fires again within this reopens; later, a new one opens."
    )
    quiet_window_seconds: int = Field(
        6 * 3600, ge=60, description="An open incident silent this long is closed when its key fires again."
    )
    related_window_seconds: int = Field(
        900, ge=0, description="Incidents opened this close together in one scope are flagged as related."
    )
    storm_incidents: int = Field(
        5, ge=0, le=1000, description="A cluster with this many incidents opened within the storm window and still "
        "open is in a storm: new alert groups there join one storm thread (0: off)."
    )
    storm_window_seconds: int = Field(
        180, ge=1, le=86400, description="The storm rule's window (see OPSBOT_STORM_INCIDENTS)."
    )
    card_min_interval_seconds: float = Field(
        5, ge=0, le=300, description="At most one Slack write (card update or thread note) per incident per interval."
    )
    group_key_template: str | None = Field(
        None, description="Group alerts by labels, e.g. '{cluster}/{namespace}/{service}' (default: groupKey)."
    )
    silences: list[str] = Field(
        default_factory=list, description='Label matcher sets whose alerts never open a thread, e.g. namespace=~"dev-.*"'
    )
    worker_threads: int = Field(2, ge=1, le=64)
    worker_poll_seconds: float = Field(0.5, gt=0, le=60)
    intake_processes: int | None = Field(
        None, ge=0, le=32, description="Run alert intake in this many child processes, one intake loop each (0: "
        "worker_threads threads in the serving process). Default: 1 on SQLite (one writer at a time: a second "
        "child only queues), one per core up to 4 on PostgreSQL, 0 on a single core or an in-memory database. "
        "Cores are counted within the container's CPU limit.",
    )
    claim_lease_seconds: float = Field(
        120, ge=60, le=3600, description="How long a claim is held; longer than the slowest Slack call with retries."
    )
    step_lease_seconds: float = Field(
        300, ge=2, le=3600, description="How long a worker holds a runbook step it is applying; when it lapses "
        "(the process died) another worker recovers the step without writing again. Each Kubernetes request of "
        "a step is bounded by half of it.",
    )

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.split(":", 1)[0]
        if scheme not in SUPPORTED_SCHEMES:
            raise ValueError(
                f"unsupported database URL scheme '{scheme}': use sqlite:///PATH or postgresql://USER@HOST/DB"
            )
        return value

    @field_validator("group_key_template")
    @classmethod
    def _template_names_labels(cls, value: str | None) -> str | None:
        if not value:
            return None
        from bot.alerts.grouping import validate_template

        return validate_template(value)

    @field_validator("silences")
    @classmethod
    def _silences_parse(cls, value: list[str]) -> list[str]:
        from bot.alerts.matchers import parse_matchers

        for text in value:
            parse_matchers(text)
        return value

    @field_validator("pagerduty_dedup_prefix")
    @classmethod
    def _dedup_prefix_shape(cls, value: str) -> str:
        from bot.alerts.pagerduty import validate_dedup_prefix

        return validate_dedup_prefix(value)

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, value: str | None) -> str | None:
        if value and not value.startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return value or None

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, value: str | None) -> str | None:
        if value and not value.startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return value or None

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        problems = []
        if self.slack_bot_token and not self.slack_signing_secret and not self.slack_app_token:
            problems.append(
                "OPSBOT_SLACK_SIGNING_SECRET is required with OPSBOT_SLACK_BOT_TOKEN (HTTP mode verifies "
                "every Slack request); set it, or OPSBOT_SLACK_APP_TOKEN for Socket Mode"
            )
        if self.slack_app_token and not self.slack_bot_token:
            problems.append("OPSBOT_SLACK_APP_TOKEN needs OPSBOT_SLACK_BOT_TOKEN as well")
        if bool(self.webhook_basic_user) != bool(self.webhook_basic_password):
            problems.append("OPSBOT_WEBHOOK_BASIC_USER and OPSBOT_WEBHOOK_BASIC_PASSWORD go together")
        exposed = self.http_host not in LOOPBACK_HOSTS
        if (exposed or self.slack_bot_token) and not self.webhook_auth_configured \
                and not self.webhook_allow_unauthenticated:
            problems.append(
                "webhooks would be unauthenticated: set OPSBOT_WEBHOOK_TOKEN (or the basic-auth pair), "
                "or OPSBOT_WEBHOOK_ALLOW_UNAUTHENTICATED=true to accept that risk"
            )
        if exposed and not self.slack_bot_token:
            problems.append(
                f"OPSBOT_SLACK_BOT_TOKEN is required when serving on {self.http_host}: the embedded Slack "
                "emulator is only for local trials on 127.0.0.1"
            )
        if self.pagerduty_api_key and not self.pagerduty_from_email:
            problems.append("OPSBOT_PAGERDUTY_FROM_EMAIL is required with OPSBOT_PAGERDUTY_API_KEY (PagerDuty "
                            "records who wrote each note)")
        if self.pagerduty_ca_file and not self.pagerduty_ca_file.is_file():
            problems.append(f"OPSBOT_PAGERDUTY_CA_FILE: {self.pagerduty_ca_file} is not a readable file")
        if self.kube_mode == "sandbox" and self.uses_real_slack and self.sandbox_scenario is None:
            problems.append(
                "OPSBOT_KUBE_MODE is 'sandbox' while talking to real Slack: set it to 'kubeconfig' or "
                "'in-cluster'"
            )
        if self.kube_mode == "url" and not self.kube_api_url:
            problems.append("OPSBOT_KUBE_MODE is 'url': set OPSBOT_KUBE_API_URL")
        if self.effective_database_url.startswith("sqlite") and sqlite3.sqlite_version_info < (3, 35):
            problems.append(f"this Python links SQLite {sqlite3.sqlite_version}; opsbot needs 3.35 or newer "
                            "(UPDATE ... RETURNING): use a newer Python build or PostgreSQL")
        if self.intake_processes and self.in_memory_database:
            problems.append("OPSBOT_INTAKE_PROCESSES needs a database the child processes can share, "
                            "not an in-memory SQLite database")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def in_memory_database(self) -> bool:
        """An SQLite database that lives in one process only (`sqlite://`, `:memory:`)."""
        url = self.effective_database_url
        return url.startswith("sqlite") and (":memory:" in url or make_url(url).database in (None, ""))

    @property
    def intake_process_count(self) -> int:
        """How many intake child processes to run (see `intake_processes`)."""
        if self.intake_processes is not None:
            return self.intake_processes
        cores = available_cores()
        if cores < 2 or self.in_memory_database:
            return 0
        return 1 if self.effective_database_url.startswith("sqlite") else min(cores, 4)

    @property
    def uses_real_slack(self) -> bool:
        """True when a bot token is set and no emulator URL overrides Slack's API."""
        return bool(self.slack_bot_token) and not self.slack_api_url

    @property
    def pagerduty_rest_writable(self) -> bool:
        """True when the PagerDuty stage runs (a routing key) and can change incidents through
        the REST API (an API key, and the From email PagerDuty requires for every write)."""
        return bool(self.pagerduty_routing_key and self.pagerduty_api_key and self.pagerduty_from_email)

    @property
    def webhook_auth_configured(self) -> bool:
        return bool(self.webhook_token or self.webhook_basic_user)

    @property
    def effective_database_url(self) -> str:
        """The database URL with the driver spelled out; SQLite in data_dir by default."""
        if not self.database_url:
            return f"sqlite:///{(self.data_dir / 'opsbot.sqlite3').resolve()}"
        return normalise_database_url(self.database_url)


def _yaml_settings(path: Path) -> dict[str, Any]:
    """The YAML config file as a flat mapping of lower-case setting names."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError([f"OPSBOT_CONFIG: cannot read {path}: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"OPSBOT_CONFIG: {path} is not valid YAML: {str(exc).splitlines()[0]}"]) from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError([f"OPSBOT_CONFIG: {path} must hold a mapping of setting names to values"])
    return {str(key).lower(): value for key, value in loaded.items()}


def _describe(error: dict[str, Any], from_file: set[str]) -> list[str]:
    """One line per problem, naming the environment variable or the config file key."""
    location = ".".join(str(part) for part in error.get("loc", ()))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if not location:
        return message.split("\n")
    if error.get("type") == "extra_forbidden":
        return [f"{location}: unknown setting in the config file"]
    name = f"{location} (config file)" if location in from_file else ENV_PREFIX + location.upper()
    return [f"{name}: {message}"]


def _structured(name: str, value: str) -> Any:
    """An environment variable of a list or mapping setting (OPSBOT_CLUSTERS, OPSBOT_SILENCES,
    OPSBOT_PAGERDUTY_WEBHOOK_SECRETS) holds JSON or YAML text: decoded here, as the README says.
    Text that does not decode is passed on as it is, so the validation error names the setting."""
    if get_origin(Settings.model_fields[name].annotation) not in (list, dict):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings; raise `ConfigError` listing every problem.

    Sources, highest first: `overrides` (the CLI's flags), `OPSBOT_*` environment variables
    (`DATABASE_URL` is honoured when `OPSBOT_DATABASE_URL` is unset), the YAML file named by
    `OPSBOT_CONFIG`, defaults. An unknown `OPSBOT_*` variable is an error: a typo must not
    silently leave a default in force.
    """
    env = os.environ
    file_values: dict[str, Any] = {}
    if env.get(ENV_PREFIX + "CONFIG"):
        file_values = _yaml_settings(Path(env[ENV_PREFIX + "CONFIG"]))
    env_values = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key not in NOT_SETTINGS and not SERVICE_LINK.match(key)
    }
    if "database_url" not in env_values and env.get("DATABASE_URL"):
        env_values["database_url"] = env["DATABASE_URL"]
    known = set(Settings.model_fields)
    problems = [f"{ENV_PREFIX}{name.upper()}: unknown setting" for name in sorted(set(env_values) - known)]
    env_values = {key: _structured(key, value) for key, value in env_values.items() if key in known}
    try:
        settings = Settings(**{**file_values, **env_values, **overrides})
    except ValidationError as exc:
        from_file = set(file_values) - set(env_values) - set(overrides)
        problems += [line for error in exc.errors() for line in _describe(error, from_file)]
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return settings
