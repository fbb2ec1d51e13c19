"""The composition root: everything a running bot owns, built once per process.

No module-level singletons: the server, the CLI, the demo and each test build their own
`Runtime` from `Settings`, and `close()` releases it (threads, pools, embedded emulators).
"""

from __future__ import annotations

import logging
import secrets
import ssl
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock, utc_now
from bot.config import Settings
from bot.context.clusters import ClusterDirectory
from bot.context.kube_read import load_api_classes
from bot.db.engine import make_engine, make_session_factory
from bot.incidents.pagerduty_sync import PagerDutySync
from bot.incidents.proposal_messages import ProposalMessages
from bot.incidents.rca_stage import RcaStage
from bot.incidents.thread import CardSync
from bot.intake_processes import IntakeProcesses
from bot.metrics import Metrics
from bot.pagerduty.link import PagerDutyLink
from bot.policy.model import PolicyError, load_policies
from bot.postmortem.stage import PostmortemStage
from bot.remediation.catalog import load_catalog
from bot.remediation.execute import Executor
from bot.remediation.kit import GroupResolver, RemediationKit, pagerduty_on_call_reader
from bot.remediation.tokens import key_from
from bot.slack.gateway import SlackGateway, make_web_client
from bot.timeline.anchors import Anchorer
from bot.timeline.chain import audit_key_from
from bot.workers import RemediationStage, Workers, intake_rules, worker_identity

log = logging.getLogger(__name__)
EMULATOR_TOKEN = "xoxb-emulator"


@dataclass(frozen=True)
class _Closing:
    """Adapts something with close() to the runtime's stop() list."""

    thing: object

    def stop(self) -> None:
        self.thing.close()


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    metrics: Metrics
    engine: Engine
    factory: sessionmaker[Session]
    web_client: WebClient
    gateway: SlackGateway
    workers: Workers
    signing_secret: str
    owned: list = field(default_factory=list)  # things with .stop() started for this runtime
    remediation: RemediationKit | None = None
    digests: object | None = None  # `bot.digests.flows.DigestRunner`
    digest_scheduler: object | None = None  # `bot.digests.scheduler.DigestScheduler`

    def start_schedules(self) -> None:
        """The digests' cron jobs (each replica runs them; the claims decide who posts)."""
        if self.digest_scheduler is not None:
            self.digest_scheduler.start()

    def close(self) -> None:
        if self.digest_scheduler is not None:
            self.digest_scheduler.stop()
        self.workers.stop()
        for thing in reversed(self.owned):
            thing.stop()
        self.owned.clear()
        self.engine.dispose()


def _slack_endpoint(settings: Settings, owned: list) -> tuple[str, str | None]:
    """(token, base_url): real Slack, a configured emulator URL, or an embedded emulator."""
    if settings.slack_api_url:
        return settings.slack_bot_token or EMULATOR_TOKEN, settings.slack_api_url
    if settings.slack_bot_token:
        return settings.slack_bot_token, None
    from bot.sandbox.slack_emulator import SlackEmulator, WorkspaceFileError  # only without real Slack

    state_file = (settings.data_dir / "slack-emulator.sqlite3").resolve()
    try:  # its workspace outlives a restart, so the bot's stored message ts keep pointing at messages
        emulator = SlackEmulator(bot_token=EMULATOR_TOKEN, port=settings.slack_emulator_port, state_file=state_file)
        kept = f"workspace kept in {state_file}"
    except WorkspaceFileError as exc:
        log.warning("the embedded Slack emulator cannot keep its workspace on disk (%s): it keeps it in memory, "
                    "and a restart starts it empty", exc)
        emulator = SlackEmulator(bot_token=EMULATOR_TOKEN, port=settings.slack_emulator_port)
        kept = "workspace kept in memory only"
    try:
        emulator.start()
    except BaseException:
        emulator.stop()  # releases the workspace file
        raise
    owned.append(emulator)
    log.info("no Slack token configured: using the embedded Slack emulator at %s (%s)", emulator.base_url, kept)
    return EMULATOR_TOKEN, emulator.base_url


def pagerduty_link(settings: Settings) -> PagerDutyLink | None:
    """The outbound PagerDuty link, when a routing key (mirroring incidents) or a REST API key
    (reading who is on call, notes) is configured."""
    if not settings.pagerduty_routing_key and not settings.pagerduty_api_key:
        return None
    verify: ssl.SSLContext | bool = True
    if settings.pagerduty_ca_file:
        verify = ssl.create_default_context(cafile=str(settings.pagerduty_ca_file))
    return PagerDutyLink(settings.pagerduty_routing_key, settings.pagerduty_api_key, settings.pagerduty_from_email,
                         settings.pagerduty_events_url, settings.pagerduty_rest_url, verify=verify,
                         dedup_prefix=settings.pagerduty_dedup_prefix)


REPO = Path(__file__).resolve().parents[1]


def config_dir(path: Path, name: str) -> Path:
    """A configured folder; a relative one that does not exist falls back to the one shipped
    beside the code (so `opsbot` works from any directory of a checkout)."""
    return path if path.is_absolute() or path.exists() else REPO / name


def remediation_kit(settings: Settings, factory, clusters: ClusterDirectory, clock: Clock, gateway: SlackGateway,
                    secret: str, link: PagerDutyLink | None = None) -> RemediationKit:
    """Catalog and policy loaded and checked (CatalogError, PolicyError: the bot must not start
    with a runbook or policy it cannot read, nor with approver groups it cannot resolve)."""
    catalog = load_catalog(config_dir(settings.runbooks_dir, "runbooks"))
    policy = load_policies(config_dir(settings.policies_dir, "policies"))
    on_call = None
    if link is not None and link.rest_enabled:
        on_call = pagerduty_on_call_reader(link.on_call_emails, gateway.user_id_by_email)
    following = sorted(name for name, group in policy.approver_groups.items() if group.uses_pagerduty)
    if following and on_call is None:
        raise PolicyError(f"approver group(s) {', '.join(following)} follow PagerDuty's on-call, which needs "
                          "OPSBOT_PAGERDUTY_API_KEY")
    return RemediationKit(factory, catalog, policy, clusters, key_from(secret), clock,
                          GroupResolver(policy, gateway.usergroup_members, on_call))


def build_runtime(settings: Settings, clock: Clock = utc_now) -> Runtime:
    owned: list = []
    try:
        metrics = Metrics()
        engine = make_engine(settings.effective_database_url, pool_size=settings.worker_threads + settings.http_threads)
        audit_key = audit_key_from(settings.audit_key)
        factory = make_session_factory(engine, audit_key)
        token, base_url = _slack_endpoint(settings, owned)
        web_client = make_web_client(token, base_url)
        gateway = SlackGateway(web_client, metrics.slack_calls)
        cards = CardSync(factory, gateway, settings.slack_channel, clock, owner=worker_identity(),
                         lease=timedelta(seconds=settings.claim_lease_seconds),
                         min_interval=timedelta(seconds=settings.card_min_interval_seconds))
        link = pagerduty_link(settings)
        if link is not None:
            owned.append(_Closing(link))
        mirror = link if link is not None and link.events_enabled else None  # incidents go to PagerDuty
        clusters = ClusterDirectory.from_settings(settings)
        if clusters.reads_kubernetes:
            load_api_classes()  # at start, not inside the first investigation's budget
        signing_secret = settings.slack_signing_secret or secrets.token_hex(16)
        kit = remediation_kit(settings, factory, clusters, clock, gateway, signing_secret, link)
        rca = RcaStage(factory, gateway, clusters, clock, owner=worker_identity(),
                       metrics=metrics, budget_seconds=settings.investigation_budget_seconds,
                       lease=timedelta(seconds=settings.claim_lease_seconds), pagerduty=mirror,
                       min_interval=timedelta(seconds=settings.card_min_interval_seconds), remediation=kit)
        count = settings.intake_process_count
        elsewhere = IntakeProcesses(count, settings, metrics) if count else None
        workers = Workers(factory, cards, clock, metrics, threads=settings.worker_threads,
                          poll_seconds=settings.worker_poll_seconds, lease_seconds=settings.claim_lease_seconds,
                          intake=intake_rules(settings),
                          pagerduty=PagerDutySync(factory, mirror, clock) if mirror is not None else None,
                          intake_elsewhere=elsewhere, rca=rca, rca_threads=settings.investigation_threads,
                          anchor=Anchorer(factory, clock, audit_key, settings.audit_anchor_file,
                                          timedelta(seconds=settings.audit_anchor_interval_seconds)),
                          remediation=RemediationStage(Executor(kit, owner=worker_identity(),
                                                                lease=timedelta(seconds=settings.step_lease_seconds)),
                                                       ProposalMessages(
                                                           kit, gateway,
                                                           timedelta(seconds=settings.card_min_interval_seconds),
                                                           timedelta(seconds=settings.claim_lease_seconds))),
                          postmortem=PostmortemStage(factory, gateway, clock, owner=worker_identity(),
                                                     template=settings.postmortem_template,
                                                     lease=timedelta(seconds=settings.claim_lease_seconds),
                                                     min_interval=timedelta(seconds=settings.card_min_interval_seconds)))
        from bot.digests.config import load_digests  # the builders' modules load with the first runtime
        from bot.digests.flows import DigestRunner
        from bot.digests.scheduler import DigestScheduler

        digest_config = load_digests(settings.digests_file)
        kit.databases = {t.name: t.dsn_write_env for t in digest_config.database.databases if t.dsn_write_env}
        digests = DigestRunner(factory, gateway, clusters, digest_config, clock, owner=worker_identity(),
                               metrics=metrics)
        scheduler = DigestScheduler(digests, digest_config.schedules, clock,
                                    timedelta(hours=digest_config.catch_up_hours))
    except BaseException:
        for thing in reversed(owned):
            thing.stop()
        raise
    return Runtime(settings, clock, metrics, engine, factory, web_client, gateway, workers, signing_secret, owned,
                   remediation=kit, digests=digests, digest_scheduler=scheduler)
