"""`opsbot` command line: serve, db upgrade, deliveries, demo, eval, runbooks, policy, audit,
postmortem, explain, incidents (and similar), thread, timeline, digest, version.

Every failure a user can cause ends in one line on stderr naming the problem and a non-zero
exit status, never a traceback. Exit codes: 0 ok, 1 runtime failure, 2 bad usage/config.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from bot.config import ConfigError, Settings, load_settings

log = logging.getLogger("opsbot")

DESCRIPTION = """\
opsbot turns Alertmanager alerts into one Slack thread per incident.

Configuration comes from OPSBOT_* environment variables (or a YAML file named by
OPSBOT_CONFIG); with none set, it runs locally on SQLite with the embedded Slack emulator.
First run `opsbot db upgrade`, then `opsbot serve`. `opsbot demo` replays an incident
scenario end to end and prints the thread it produced.
"""


class CliError(Exception):
    """A one-line failure to report; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def package_version() -> str:
    try:
        return version("opsbot")
    except PackageNotFoundError:
        return "0.0.0+unknown"


def _settings(**overrides) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise CliError("invalid configuration:\n  " + "\n  ".join(exc.problems), code=2) from None


def _ensure_sqlite_dir(settings: Settings) -> None:
    if settings.effective_database_url.startswith("sqlite"):
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(f"cannot create the data directory {settings.data_dir}: {exc.strerror}") from None


def cmd_version(_args: argparse.Namespace) -> int:
    print(f"opsbot {package_version()}")
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from bot.db import migrate
    from bot.db.engine import make_engine

    settings = _settings()
    _ensure_sqlite_dir(settings)
    engine = make_engine(settings.effective_database_url)
    try:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine, args.revision)
        after = migrate.current_revision(engine)
    except SQLAlchemyError as exc:
        raise CliError(f"database upgrade failed: {_reason(exc)}") from None
    finally:
        engine.dispose()
    print(f"database {engine.url.render_as_string(hide_password=True)}: "
          + (f"upgraded {before or 'empty'} -> {after}" if before != after else f"already at {after}"))
    return 0


def cmd_db_current(_args: argparse.Namespace) -> int:
    from bot.db import migrate
    from bot.db.engine import make_engine

    settings = _settings()
    engine = make_engine(settings.effective_database_url)
    try:
        current = migrate.current_revision(engine)
    except SQLAlchemyError as exc:
        raise CliError(f"cannot read the database: {_reason(exc)}") from None
    finally:
        engine.dispose()
    head = migrate.head_revision()
    print(f"current {current or 'none'}, head {head}" + ("" if current == head else " (run `opsbot db upgrade`)"))
    return 0 if current == head else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from bot.logs import configure_logging

    overrides = {key: value for key, value in (("http_host", args.host), ("http_port", args.port)) if value is not None}
    settings = _settings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    _ensure_sqlite_dir(settings)
    demo = None
    if args.demo_cluster is not None:
        demo, settings = _start_demo_cluster(args.demo_cluster, settings, overrides)
    try:
        return _serve(settings, demo)
    finally:
        if demo is not None:
            demo.stop()


def _start_demo_cluster(scenario: str, settings: Settings, overrides: dict):
    """`--demo-cluster`: the sandbox parts (`bot.sandbox.demo_cluster`), and the settings to serve with."""
    from bot.sandbox.demo_cluster import DEFAULT_WEB_PORT, DemoCluster, resolve_scenario

    if settings.uses_real_slack:
        log.warning("--demo-cluster with a real Slack token: the bot posts to your workspace about the sandbox "
                    "cluster")
    try:
        demo = DemoCluster(resolve_scenario(scenario or None), settings.data_dir,
                           want_slack=not (settings.slack_bot_token or settings.slack_api_url),
                           web_port=(settings.slack_emulator_port if "slack_emulator_port" in settings.model_fields_set
                                     else DEFAULT_WEB_PORT), step=log.info)
        extra = demo.start(policies_set="policies_dir" in settings.model_fields_set,
                           webhook_auth_set=settings.webhook_auth_configured)
    except RuntimeError as exc:
        raise CliError(f"--demo-cluster: {exc}") from None
    try:
        return demo, _settings(**overrides, **extra)
    except CliError:
        demo.stop()
        raise


def _serve(settings: Settings, demo) -> int:
    from bot.db.migrate import schema_problem
    from bot.digests.config import DigestsConfigError
    from bot.policy.model import PolicyError
    from bot.remediation.catalog import CatalogError
    from bot.runtime import build_runtime
    from bot.startup import freeze_startup_objects
    from bot.web import HttpServer, create_web_app

    try:
        runtime = build_runtime(settings)
    except (CatalogError, PolicyError) as exc:
        raise CliError(f"cannot start: the runbooks or policies are invalid:\n{exc}", code=2) from None
    except DigestsConfigError as exc:
        raise CliError("cannot start: the digests file is invalid:\n  " + "\n  ".join(exc.problems), code=2) from None
    try:
        from bot.startup_checks import startup_warnings

        for warning in startup_warnings(settings, runtime.remediation.policy, runtime.remediation.clusters):
            log.warning(warning)
        try:
            problem = schema_problem(runtime.engine)
        except SQLAlchemyError as exc:
            raise CliError(f"cannot reach the database: {_reason(exc)}") from None
        if problem:
            raise CliError(problem)
        app = create_web_app(runtime)
        try:
            server = HttpServer(app, settings.http_host, settings.http_port, settings.http_threads,
                                connection_limit=settings.http_connection_limit,
                                idle_timeout_seconds=settings.http_idle_timeout_seconds)
        except OSError as exc:
            raise CliError(f"cannot listen on {settings.http_host}:{settings.http_port}: {exc.strerror}") from None
        socket_mode = _start_socket_mode(runtime) if settings.slack_app_token else None
        runtime.workers.start()
        runtime.start_schedules()
        freeze_startup_objects()
        stopping = threading.Event()

        def _stop(signum, _frame):
            # Raised in the main thread inside waitress's loop, which catches SystemExit and
            # shuts its task threads down; idle keep-alive connections do not hold us up.
            if not stopping.is_set():
                stopping.set()
                log.info("signal %s: shutting down", signum)
                raise SystemExit(0)

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        log.info("opsbot %s listening on %s", package_version(), server.url)
        if demo is not None:
            demo.attach(server.url, runtime.signing_secret, settings.webhook_token)
        server.serve_forever()  # returns once _stop raised SystemExit inside it
        server.close()
        if socket_mode is not None:
            socket_mode.close()
    finally:
        runtime.close()
    log.info("stopped")
    return 0


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own message, first line only (never the SQL or a traceback)."""
    original = getattr(exc, "orig", None) or exc
    return (str(original).strip().splitlines() or [type(original).__name__])[0]


def _start_socket_mode(runtime):
    """Connect the Bolt app to Slack over Socket Mode (slack_sdk's built-in client) and return
    the handler, which the caller closes. Slack refusing the app token, or being unreachable,
    raises CliError with one line and leaves nothing running. A WebSocket that does not open
    at once is retried by the client in the background (as after any disconnect)."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_sdk.errors import SlackApiError

    from handlers.slack.app import build_bolt_app

    handler = SocketModeHandler(build_bolt_app(runtime), runtime.settings.slack_app_token)
    try:
        handler.connect()
    except SlackApiError as exc:
        handler.close()
        error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
        raise CliError(f"Socket Mode: Slack refused OPSBOT_SLACK_APP_TOKEN (apps.connections.open: "
                       f"{error or exc.response.status_code}); it must be a valid app-level token (xapp-) "
                       "with the connections:write scope") from None
    except OSError as exc:
        handler.close()
        raise CliError(f"Socket Mode: cannot reach Slack to open a connection: {exc}") from None
    if handler.client.is_connected():
        log.info("Slack Socket Mode connected")
    else:
        log.warning("Slack Socket Mode: the WebSocket did not open yet; retrying in the background")
    return handler


def _with_database(action):
    """Run action(factory) against the configured, migrated database; one-line errors."""
    from bot.db import migrate
    from bot.db.engine import make_engine, make_session_factory
    from bot.timeline.chain import audit_key_from

    settings = _settings()
    engine = make_engine(settings.effective_database_url)
    try:
        problem = migrate.schema_problem(engine)
        if problem:
            raise CliError(problem)
        return action(make_session_factory(engine, audit_key_from(settings.audit_key)))
    except SQLAlchemyError as exc:
        raise CliError(f"database error: {_reason(exc)}") from None
    finally:
        engine.dispose()


def cmd_deliveries_list(args: argparse.Namespace) -> int:
    from bot.deliveries_cli import list_deliveries, print_lines

    print_lines(_with_database(lambda factory: list_deliveries(factory, args.status, args.limit)))
    return 0


def cmd_deliveries_show(args: argparse.Namespace) -> int:
    from bot.deliveries_cli import show_delivery

    shown = _with_database(lambda factory: show_delivery(factory, args.id))
    if shown is None:
        raise CliError(f"no delivery {args.id}")
    print(shown)
    return 0


def cmd_deliveries_replay(args: argparse.Namespace) -> int:
    from bot.clock import utc_now
    from bot.deliveries_cli import replay_delivery

    new_id = _with_database(lambda factory: replay_delivery(factory, args.id, utc_now()))
    if new_id is None:
        raise CliError(f"no delivery {args.id}")
    print(f"delivery {args.id} queued again as delivery {new_id}; a running `opsbot serve` processes it")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    if args.list:
        from bot.sandbox.web_demo import list_scenarios

        return list_scenarios()
    if args.web:
        from bot.demo import run_web_demo
        from bot.sandbox.web_demo import DEFAULT_WEB_PORT

        return run_web_demo(args.scenario, DEFAULT_WEB_PORT if args.port is None else args.port, keep=args.keep)
    return run_demo(Path(args.scenario) if args.scenario else None, keep=args.keep, auto_approve=args.auto_approve)


def cmd_eval(args: argparse.Namespace) -> int:
    from bot.eval.cli import run_eval
    from bot.logs import configure_logging
    from bot.sandbox.promstack import BinaryMissing, find_binary

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise CliError(f"no such file or folder: {', '.join(missing)}", code=2)
    try:
        find_binary("prometheus")
        find_binary("promtool")
    except BinaryMissing as exc:
        raise CliError(f"{exc} (./scripts/setup installs it)") from None
    configure_logging("ERROR", "text")
    return run_eval([Path(p) for p in args.paths], jobs=args.jobs, json_path=Path(args.json) if args.json else None,
                    min_top1=args.min_top1)


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    pairs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{what} {item!r} is not key=value", code=2)
        pairs[key] = value
    return pairs


def _print_result(result: tuple[int, list[str]]) -> int:
    code, lines = result
    for line in lines:
        print(line)
    return code


def cmd_runbooks_lint(args: argparse.Namespace) -> int:
    from bot.remediation_cli import dirs, lint

    folder = Path(args.dir) if args.dir else dirs(_settings())[0]
    if not folder.is_dir():
        raise CliError(f"no such folder: {folder}", code=2)
    return _print_result(lint(folder))


def cmd_runbooks_test(args: argparse.Namespace) -> int:
    from bot.policy.model import PolicyError
    from bot.remediation.catalog import CatalogError
    from bot.remediation_cli import dirs, test_against_scenario
    from bot.sandbox.scenario import ScenarioError

    if not Path(args.scenario).exists():
        raise CliError(f"no such file: {args.scenario}", code=2)
    try:
        return _print_result(test_against_scenario(*dirs(_settings()), args.runbook, Path(args.scenario)))
    except (CatalogError, PolicyError, ScenarioError) as exc:
        raise CliError(str(exc), code=2) from None


def cmd_policy_explain(args: argparse.Namespace) -> int:
    from bot.policy.model import PolicyError
    from bot.remediation.catalog import CatalogError
    from bot.remediation_cli import dirs, explain, parse_time

    try:
        at = parse_time(args.at)
    except ValueError:
        raise CliError(f"--at {args.at!r} is not an ISO 8601 time", code=2) from None
    try:
        return _print_result(explain(*dirs(_settings()), args.runbook, args.namespace, _pairs(args.param, "--param"),
                                     args.actor, args.group or [], args.channel, args.pods, args.replica_factor,
                                     args.phase, at, _pairs(args.label, "--label")))
    except (CatalogError, PolicyError) as exc:
        raise CliError(str(exc), code=2) from None


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from bot.remediation_cli import audit_verify, incident_number, parse_time
    from bot.timeline.chain import audit_key_from

    try:
        incident = None if args.incident is None else incident_number(args.incident)
    except ValueError as exc:
        raise CliError(f"--incident: {exc}", code=2) from None
    key = audit_key_from(_settings().audit_key)
    try:
        unsigned_before = parse_time(args.unsigned_before)
    except ValueError:
        raise CliError(f"--unsigned-before {args.unsigned_before!r} is not an ISO 8601 time", code=2) from None
    if unsigned_before is not None and key is None:
        raise CliError("--unsigned-before needs the audit key (OPSBOT_AUDIT_KEY)", code=2)
    return _print_result(_with_database(lambda factory: audit_verify(factory, incident, key, args.anchors,
                                                                     unsigned_before)))


def cmd_postmortem(args: argparse.Namespace) -> int:
    import json

    from bot.db.engine import reading
    from bot.postmortem.document import postmortem_document
    from bot.postmortem.facts import NoSuchIncident
    from bot.postmortem.markdown import TemplateProblem, render_markdown

    match = re.fullmatch(r"(?:INC-)?(\d+)", args.incident.strip(), re.I)
    if not match:
        raise CliError(f"{args.incident!r} is not an incident reference (INC-12 or 12)", code=2)

    def build(factory):
        with reading(factory) as session:
            return postmortem_document(session, int(match.group(1)))
    try:
        facts = _with_database(build)
    except NoSuchIncident as exc:
        raise CliError(str(exc), code=1) from None
    if args.format == "json":
        print(json.dumps(facts, indent=2))
        return 0
    try:
        print(render_markdown(facts, _settings().postmortem_template), end="")
    except TemplateProblem as exc:
        raise CliError(str(exc), code=2) from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opsbot", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server, Slack app and workers")
    serve.add_argument("--host", help="listen address (default: OPSBOT_HTTP_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: OPSBOT_HTTP_PORT or 8080)")
    serve.add_argument("--demo-cluster", nargs="?", const="", metavar="SCENARIO",
                       help="serve a sandbox cluster and Prometheus loaded with a scenario (a file, or a name "
                            "`opsbot demo --web --list` prints; default: the demo's), the demo policy and, "
                            "without a Slack token, the emulator's page: send your own webhooks and click "
                            "through by hand")
    serve.set_defaults(func=cmd_serve)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply migrations (run before serve, after each update)")
    upgrade.add_argument("revision", nargs="?", default="head", help="target revision (default: head)")
    upgrade.set_defaults(func=cmd_db_upgrade)
    current = db_commands.add_parser("current", help="show the schema revision; exit 1 if behind")
    current.set_defaults(func=cmd_db_current)

    stored = commands.add_parser("deliveries", help="stored webhook deliveries: list, show, replay")
    stored_commands = stored.add_subparsers(dest="deliveries_command", metavar="ACTION", required=True)
    listing = stored_commands.add_parser("list", help="newest deliveries first")
    listing.add_argument("--status", choices=("pending", "processing", "done", "failed"))
    listing.add_argument("--limit", type=int, default=20)
    listing.set_defaults(func=cmd_deliveries_list)
    show = stored_commands.add_parser("show", help="one delivery with its body")
    show.add_argument("id", type=int)
    show.set_defaults(func=cmd_deliveries_show)
    replay = stored_commands.add_parser("replay", help="queue a stored delivery to be processed again")
    replay.add_argument("id", type=int)
    replay.set_defaults(func=cmd_deliveries_replay)

    demo = commands.add_parser("demo", help="replay an incident scenario end to end and print the thread")
    demo.add_argument("--scenario", help="scenario YAML (default: one of ../shared/scenarios)")
    demo.add_argument("--keep", action="store_true", help="keep the temporary directory for inspection")
    demo.add_argument("--auto-approve", action="store_true",
                      help="approve the first proposed step as an on-call member, verify it, resolve the alert, "
                           "print the thread with the postmortem")
    demo.add_argument("--web", action="store_true",
                      help="serve the demo as a Slack-like page at http://127.0.0.1:PORT until Ctrl-C: approve, "
                           "reject, ask and type /ops commands in the browser")
    demo.add_argument("--port", type=int, help="the page's port with --web (default 8765; 0: any free port)")
    demo.add_argument("--list", action="store_true", help="list the scenarios available and exit")
    demo.set_defaults(func=cmd_demo)

    runbooks = commands.add_parser("runbooks", help="runbook catalog: lint, test against a scenario")
    runbook_commands = runbooks.add_subparsers(dest="runbooks_command", metavar="ACTION", required=True)
    lint = runbook_commands.add_parser("lint", help="validate every runbook (exit 1 on any problem)")
    lint.add_argument("--dir", help="runbook folder (default: OPSBOT_RUNBOOKS_DIR)")
    lint.set_defaults(func=cmd_runbooks_lint)
    test = runbook_commands.add_parser("test", help="what RUNBOOK would propose for a scenario (changes nothing)")
    test.add_argument("runbook")
    test.add_argument("--scenario", required=True, help="scenario YAML")
    test.set_defaults(func=cmd_runbooks_test)

    policy = commands.add_parser("policy", help="the policy engine")
    policy_commands = policy.add_subparsers(dest="policy_command", metavar="ACTION", required=True)
    explain = policy_commands.add_parser("explain", help="the decision for a step, with every gate")
    explain.add_argument("--runbook", required=True)
    explain.add_argument("--namespace")
    explain.add_argument("--param", action="append", metavar="KEY=VALUE", help="a runbook parameter (repeatable)")
    explain.add_argument("--label", action="append", metavar="KEY=VALUE", help="an alert label (repeatable)")
    explain.add_argument("--actor", help="Slack user id of who clicks")
    explain.add_argument("--group", action="append", help="an approver group the actor is in (repeatable)")
    explain.add_argument("--channel")
    explain.add_argument("--pods", type=int, default=0, help="pods the step affects")
    explain.add_argument("--replica-factor", type=float)
    explain.add_argument("--phase", choices=("propose", "click", "execute"), default="propose")
    explain.add_argument("--at", help="decide at this time (ISO 8601, default now)")
    explain.set_defaults(func=cmd_policy_explain)

    audit = commands.add_parser("audit", help="the audit log (timeline)")
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_commands.add_parser("verify", help="check every timeline's hash chain (exit 1 on tampering)")
    verify.add_argument("--incident", metavar="INC-N", help="only this incident (INC-12 or 12)")
    verify.add_argument("--anchors", type=Path, metavar="FILE",
                        help="also check the heads anchored in FILE (OPSBOT_AUDIT_ANCHOR_FILE, or the bot's log)")
    verify.add_argument("--unsigned-before", metavar="TIME",
                        help="entries written before TIME (when OPSBOT_AUDIT_KEY was set) may lack a MAC")
    verify.set_defaults(func=cmd_audit_verify)

    postmortem = commands.add_parser("postmortem", help="an incident's postmortem, from the database's facts")
    postmortem.add_argument("incident", metavar="INC-N")
    postmortem.add_argument("--format", choices=("md", "json"), default="md")
    postmortem.set_defaults(func=cmd_postmortem)

    from bot.ask.explain_cli import cmd_explain

    explained = commands.add_parser("explain", help="what /ops explain answers, as text: INC-N, P-N or a runbook id")
    explained.add_argument("target", metavar="TARGET", help="INC-12, P-17 or a runbook id")
    explained.set_defaults(func=cmd_explain)

    from bot.incidents_cli import add_parsers as add_incident_parsers

    add_incident_parsers(commands)  # incidents [--open] [similar INC-N], thread INC-N, timeline INC-N

    evaluate = commands.add_parser("eval", help="replay scenarios through the bot and score its RCA")
    evaluate.add_argument("paths", nargs="+", metavar="PATH", help="scenario files or folders of them")
    evaluate.add_argument("--jobs", type=int, default=2, help="scenarios replayed at once (default 2)")
    evaluate.add_argument("--json", help="also write per-scenario results to this file")
    evaluate.add_argument("--min-top1", type=float, help="exit 1 when the top-1 share is below this (0-1)")
    evaluate.set_defaults(func=cmd_eval)

    from bot.digests.cli import add_parser as add_digest_parser

    add_digest_parser(commands)
    commands.add_parser("version", help="print the version").set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as exc:
        print(f"opsbot: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
