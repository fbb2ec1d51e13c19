"""Similar incidents: does the memory put an incident's earlier occurrence first, and how often
does it put forward a look-alike with another cause?

    .venv/bin/python bench/similar_incidents.py [PATH ...] [--limit N] [--jobs 3] [--database-url URL]

The scenario suite is replayed twice, each replay as `opsbot eval` replays it (the sandbox API
server read through the real `kubernetes` client, a real Prometheus with the scenario's
metrics, the bot's HTTP intake, the Slack emulator), and each replay's stored RCA is kept. The
runner gives every replay a database of its own, so the memory lives in one more database (a
temporary SQLite file, or --database-url) where each scenario's webhook body goes through the
bot's intake flow again:
- first run: the incident opens with the first replay's RCA stored as the RCA stage stores it,
  its alerts resolve five minutes later (intake again) and `remember` writes its signature;
- second run, a day after every first run resolved: the same alerts open a new incident with
  the second replay's RCA, and `similar` ranks the memory for it (every candidate listed).
Scenarios whose alerts open no incident (heartbeats) are left out, as are failed replays.

Figures, over the second-run incidents: hit@1 and hit@3 (its own first run ranks first / in
the first three), MRR (1/rank, 0 when not listed), false friends (a *different* scenario's
incident whose expected root-cause categories share none with this one's ranks first), and,
with its own first run left out (a first occurrence, as a responder meets it): how often
something is listed at all and how often the top of it is a false friend. Ends with one line:
`bench: similar_incidents scenarios=N hit1=F hit3=F mrr=F false_friends=F alone_listed=F
alone_false_friends=F seconds=N`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.alerts import alertmanager, deliveries  # noqa: E402
from bot.db import migrate  # noqa: E402
from bot.db.engine import make_engine, make_session_factory, reading, unit_of_work  # noqa: E402
from bot.eval.cli import scenario_files  # noqa: E402
from bot.eval.runner import Outcome, run_scenario  # noqa: E402
from bot.incidents import flows, investigations  # noqa: E402
from bot.logs import configure_logging  # noqa: E402
from bot.postmortem.memory import MIN_SCORE, remember, similar  # noqa: E402
from bot.sandbox.paths import shared_scenarios_dir  # noqa: E402
from bot.sandbox.scenario import Scenario, ScenarioError, load_scenario  # noqa: E402
from bot.sandbox.scenario_alerts import webhook_body  # noqa: E402

RESOLVE_AFTER = timedelta(minutes=5)
SECOND_RUN_AFTER = timedelta(days=1)


@dataclass
class Case:
    scenario: Scenario
    first: Outcome
    second: Outcome
    first_incident: int | None = None
    second_incident: int | None = None


def categories(scenario: Scenario) -> set[str]:
    wanted = scenario.expect.category
    return set(wanted) if isinstance(wanted, list) else {wanted}


def top_cause(outcome: Outcome) -> str:
    top = outcome.hypotheses[0]
    return f"{top['category']} {top['resource']} (gaps: {len((outcome.report or {}).get('gaps') or [])})"


def resolved(scenario: Scenario) -> Scenario:
    """The scenario with every alert resolved at its `now`, for the resolved notification."""
    alerts = [a.model_copy(update={"ends_at": scenario.now, "status": "resolved"}) for a in scenario.alerts]
    return scenario.model_copy(update={"alerts": alerts})


def intake(factory, body: bytes, now: datetime) -> int:
    """One Alertmanager notification through the bot's intake flow, as a worker applies it."""
    with unit_of_work(factory) as session:
        delivery = deliveries.store(session, "alertmanager", body, {}, now)
        result = flows.ingest(session, alertmanager.parse(body), delivery.id, now)
        deliveries.finish(session, delivery.id, now)
    return result.incident_id


def store_rca(factory, incident_id: int, report: dict, now: datetime) -> None:
    """The replay's RCA, stored on the incident's investigation as the RCA stage stores it."""
    with unit_of_work(factory) as session:
        investigation = investigations.latest_for(session, incident_id)
        if not (investigations.claim(session, investigation.id, "bench", now, timedelta(minutes=1))
                and investigations.finish(session, investigation.id, "bench", report, now)):
            raise RuntimeError(f"INC-{incident_id}: its investigation could not be claimed")


def replay_all(scenarios: list[tuple[Scenario, Path]], jobs: int, label: str) -> list[Outcome]:
    started = time.monotonic()
    with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="similar-bench") as pool:
        outcomes = list(pool.map(lambda item: run_scenario(*item), scenarios))
    print(f"{label}: {len(outcomes)} replays in {time.monotonic() - started:.0f} s", flush=True)
    return outcomes


def build_memory(factory, cases: list[Case], skipped: list[str]) -> list[Case]:
    """Every first run remembered, then every second run opened; returns the cases measured."""
    later = max(case.scenario.now for case in cases) + SECOND_RUN_AFTER
    for case in cases:
        now = case.scenario.now
        case.first_incident = intake(factory, webhook_body(case.scenario), now)
        store_rca(factory, case.first_incident, case.first.report, now)
        intake(factory, webhook_body(resolved(case.scenario)), now + RESOLVE_AFTER)
        with unit_of_work(factory) as session:
            if remember(session, case.first_incident, now + RESOLVE_AFTER) is None:
                raise RuntimeError(f"{case.scenario.id}: the first run did not resolve")
    measured = []
    for index, case in enumerate(cases):
        opened = later + timedelta(minutes=index)
        case.second_incident = intake(factory, webhook_body(case.scenario), opened)
        if case.second_incident == case.first_incident:
            skipped.append(f"{case.scenario.id}: its alerts arrive resolved, so no second incident opens")
            continue
        store_rca(factory, case.second_incident, case.second.report, opened)
        measured.append(case)
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--limit", type=int, help="only the first N scenario files")
    parser.add_argument("--jobs", type=int, default=3, help="replays at once (default 3)")
    parser.add_argument("--database-url", help="an empty database for the memory (default: a temporary SQLite file)")
    args = parser.parse_args()
    configure_logging("CRITICAL", "text")
    began = time.monotonic()
    files = scenario_files(args.paths or [REPO / "tests" / "scenarios", shared_scenarios_dir()])[:args.limit]
    try:
        scenarios = [(load_scenario(path), path) for path in files]
    except ScenarioError as exc:
        print(f"similar_incidents: {'; '.join(exc.problems)}", file=sys.stderr)
        return 2
    print(f"similar incidents over {len(scenarios)} scenario files, each replayed twice, {args.jobs} at a time",
          flush=True)
    firsts = replay_all(scenarios, args.jobs, "first run")
    seconds = replay_all(scenarios, args.jobs, "second run")
    cases, skipped = [], []
    for (scenario, _), first, second in zip(scenarios, firsts, seconds, strict=True):
        usable = all(o.incident_opened and o.report and o.report.get("hypotheses") for o in (first, second))
        (cases if usable else skipped).append(Case(scenario, first, second) if usable else
                                              f"{scenario.id}: {first.error or second.error or 'no incident'}")
    with tempfile.TemporaryDirectory(prefix="opsbot-similar-") as workdir:
        engine = make_engine(args.database_url or f"sqlite:///{Path(workdir) / 'memory.sqlite3'}")
        migrate.upgrade(engine)
        factory = make_session_factory(engine)
        measured = build_memory(factory, cases, skipped)
        by_incident = {case.first_incident: case for case in cases}
        ranks, false_friends, alone_listed, alone_false = [], 0, 0, 0
        for case in measured:
            with reading(factory) as session:
                ranking = similar(session, case.second_incident, limit=None)
            ids = [past.incident_id for past in ranking]
            rank = ids.index(case.first_incident) + 1 if case.first_incident in ids else None
            ranks.append(rank)

            def false_friend(incident_id: int, case=case) -> bool:
                other = by_incident[incident_id]
                return other is not case and not categories(other.scenario) & categories(case.scenario)
            false_friends += bool(ids) and false_friend(ids[0])
            others = [i for i in ids if i != case.first_incident]
            alone_listed += bool(others)
            alone_false += bool(others) and false_friend(others[0])
            top = ranking[0] if ranking else None
            shown = (f"INC-{top.incident_id} {top.score:.2f} ({by_incident[top.incident_id].scenario.id[:40]})"
                     if top else "nothing listed")
            print(f"  rank {rank or '-':>2}  {case.scenario.id[:56]:<56}  top: {shown}", flush=True)
            if rank != 1:  # why: the two replays' RCAs side by side
                print(f"           first run: {top_cause(case.first)}; second run: {top_cause(case.second)}")
        engine.dispose()
    total = len(measured)
    if not total:
        print("no scenario could be measured", file=sys.stderr)
        return 1
    hit1 = sum(rank == 1 for rank in ranks) / total
    hit3 = sum(rank is not None and rank <= 3 for rank in ranks) / total
    mrr = sum(1 / rank for rank in ranks if rank) / total
    elapsed = time.monotonic() - began
    print(f"hit@1 {hit1:.3f}, hit@3 {hit3:.3f}, MRR {mrr:.3f} over {total} second-run incidents "
          f"(min score {MIN_SCORE})")
    print(f"false friends at rank 1: {false_friends}/{total}; with its own first run left out, something is "
          f"listed for {alone_listed}/{total} and the top one is a false friend for {alone_false}/{total}")
    for problem in skipped:
        print(f"not measured: {problem}")
    command = "bench/similar_incidents.py" + "".join(f" {p}" for p in args.paths) + \
        (f" --limit {args.limit}" if args.limit else "") + f" --jobs {args.jobs}"
    print(f"whole run {elapsed:.0f} s")
    print(f"reproduce: .venv/bin/python {command}")
    print(f"bench: similar_incidents scenarios={total} hit1={hit1:.3f} hit3={hit3:.3f} mrr={mrr:.3f} "
          f"false_friends={false_friends / total:.3f} alone_listed={alone_listed / total:.3f} "
          f"alone_false_friends={alone_false / total:.3f} seconds={elapsed:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
