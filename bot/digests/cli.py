"""`opsbot digest drift|credentials|cost|database|all [--now] [--dry-run] [--channel C]`.

- no flag: as the scheduler would, now: each schedule of the digest runs its latest slot (within
  the catch-up window) unless a replica already posted it, and the digest is printed;
- `--now`: posted now to its scheduled channels (or `--channel`), under a manual slot;
- `--dry-run`: built and printed only; nothing is posted or stored.

A bad digests file, an unknown name, or posting without Slack configured is one line on stderr
and exit code 2; a digest that could not be posted is exit code 1. The printed digest says what
could not be checked, exactly as the Slack message does.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta

from bot.digests.model import DIGEST_NAMES


def add_parser(commands) -> None:
    digest = commands.add_parser("digest", help="build a digest now: print it, post it (--now) or only print "
                                                 "it (--dry-run)")
    digest.add_argument("name", choices=[*DIGEST_NAMES, "all"])
    digest.add_argument("--now", action="store_true", help="post it now, whatever the schedule says")
    digest.add_argument("--dry-run", action="store_true", help="print it only: post nothing, store nothing")
    digest.add_argument("--channel", help="post to this channel instead of the scheduled ones (with --now)")
    digest.set_defaults(func=cmd_digest)


def _runner(settings, posting: bool):
    from bot.cli import CliError
    from bot.clock import utc_now
    from bot.context.clusters import ClusterDirectory
    from bot.db.engine import make_engine, make_session_factory
    from bot.digests.config import DigestsConfigError, load_digests
    from bot.digests.flows import DigestRunner
    from bot.slack.gateway import SlackGateway, make_web_client
    from bot.timeline.chain import audit_key_from
    from bot.workers import worker_identity

    try:
        config = load_digests(settings.digests_file)
    except DigestsConfigError as exc:
        raise CliError("the digests file is invalid:\n  " + "\n  ".join(exc.problems), code=2) from None
    gateway = None
    if posting:
        if not settings.slack_bot_token and not settings.slack_api_url:
            raise CliError("posting needs Slack: set OPSBOT_SLACK_BOT_TOKEN (or use --dry-run to print only)", code=2)
        gateway = SlackGateway(make_web_client(settings.slack_bot_token or "xoxb-emulator", settings.slack_api_url))
    engine = make_engine(settings.effective_database_url)
    factory = make_session_factory(engine, audit_key_from(settings.audit_key))
    return DigestRunner(factory, gateway, ClusterDirectory.from_settings(settings), config, utc_now,
                        owner=worker_identity()), engine


def cmd_digest(args: argparse.Namespace) -> int:
    from bot.cli import CliError, _ensure_sqlite_dir, _settings
    from bot.clock import utc_now
    from bot.digests.flows import manual_slot
    from bot.digests.scheduler import latest_slot, slot_name
    from bot.slack.render.digest import render_text

    if args.channel and not args.now:
        raise CliError("--channel goes with --now", code=2)
    if args.now and args.dry_run:
        raise CliError("--now and --dry-run exclude each other", code=2)
    settings = _settings()
    _ensure_sqlite_dir(settings)
    names = list(DIGEST_NAMES) if args.name == "all" else [args.name]
    runner, engine = _runner(settings, posting=not args.dry_run)
    config = runner.config
    failed = 0
    try:
        from sqlalchemy.exc import SQLAlchemyError

        from bot.db.migrate import schema_problem

        try:
            problem = schema_problem(engine)
        except SQLAlchemyError as exc:
            raise CliError(f"cannot reach the database: {str(exc.orig or exc).splitlines()[0]}") from None
        if problem:
            raise CliError(problem)
        for name in names:
            print(f"opsbot: building the {name} digest…", file=sys.stderr, flush=True)  # cost can take a minute
            schedules = [s for s in config.schedules if s.digest == name]
            if args.dry_run or (not schedules and not args.now):
                print(render_text(runner.preview(name, schedules[0].job if schedules else None)))
                if not args.dry_run:
                    print(f"({name}: no schedule in the digests file: printed only; --now --channel C posts it)")
                continue
            targets = ([(args.channel, f"digest:{name}:{args.channel}"[:64])] if args.channel
                       else [(s.channel, s.job) for s in schedules])
            printed = False
            for channel, job in targets:
                if args.now:
                    slot = manual_slot(utc_now())
                else:
                    schedule = next(s for s in schedules if s.job == job)
                    due = latest_slot(schedule, utc_now(), timedelta(hours=config.catch_up_hours))
                    if due is None:
                        print(f"({name} to {channel}: no slot due within the catch-up window; --now posts it)")
                        continue
                    slot = slot_name(due)
                result = runner.run(name, channel, job, slot)
                if result.report is not None and not printed:
                    print(render_text(result.report))
                    printed = True
                outcome = {"posted": f"posted to {channel} (ts {result.ts})",
                           "adopted": f"already posted to {channel} by a replica that stopped (ts {result.ts})",
                           "taken": f"slot {slot} for {channel} is already claimed by another run: not posted again",
                           "failed": f"could not be posted to {channel}: {result.error}"}[result.outcome]
                print(f"({name}: {outcome})")
                failed += result.outcome == "failed"
    finally:
        engine.dispose()
    if failed:
        raise CliError(f"{failed} digest(s) could not be posted")
    return 0

