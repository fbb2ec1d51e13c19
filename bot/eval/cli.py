"""`opsbot eval PATH...`: replay scenarios through the bot and score its RCA.

Prints one row per scenario as it finishes (progress on a long run), then one summary line:

    eval: 24 scenarios, top1 21/24, top3 24/24, mentions 22/24, runbook 15/16, forbidden 0, unknown 2, confident-wrong 1

Before it: per-category precision and recall, the confusion matrix, abstention (`unknown`
answers, right where a scenario accepts it) and calibration (`bot.eval.summary`). `--json`
keeps every hypothesis with its evidence for and against, so two runs can be diffed.

The runbook column counts the scenarios that expect a runbook and got it proposed (with nothing
forbidden); forbidden counts forbidden proposals over every scenario. A file that breaks the scenario
contract is reported with its problems and counted as an error (exit code 2); a scenario the
bot gets wrong is a score, not an error (exit code 0, or 1 with --min-top1 not reached).
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from bot.eval.runner import Outcome, run_scenario
from bot.eval.scoring import Score, score
from bot.eval.summary import summary_lines
from bot.sandbox.scenario import ScenarioError, load_scenario


def scenario_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            files.append(path)
    return files


def _row(outcome: Outcome, result: Score | None) -> str:
    expect = outcome.scenario.expect
    top = outcome.hypotheses[0] if outcome.hypotheses else None
    got = f"{top['category']} {top['resource']}" if top else "no hypothesis"
    wanted = "|".join(expect.category) if isinstance(expect.category, list) else expect.category
    if result is None:
        return f"ERROR {outcome.scenario.id}: {outcome.error}"
    mark = "ok " if result.top1 else ("~3 " if result.top3 else "BAD")
    timing = f"{outcome.seconds_to_rca:.1f}s" if outcome.seconds_to_rca is not None else "  - "
    mentions = "" if result.mentions_ok else f"  missing mentions: {', '.join(result.missing_mentions)}"
    if result.runbook_ok is False:
        wanted_rb = outcome.scenario.expect.runbook
        mentions += (f"  runbook: proposed {', '.join(outcome.proposed) or 'none'}"
                     + (f", expected {wanted_rb}" if wanted_rb else "")
                     + (f", forbidden {', '.join(result.forbidden)}" if result.forbidden else ""))
    note = f"  ({outcome.error})" if outcome.error else ""
    return (f"{mark} {outcome.scenario.id:<56} {timing:>6}  expected {wanted} {expect.resource}; got {got}"
            f"{mentions}{note}")


def run_eval(paths: list[Path], jobs: int = 2, json_path: Path | None = None, min_top1: float | None = None,
             out=sys.stdout) -> int:
    files = scenario_files(paths)
    if not files:
        print("opsbot eval: no scenario files found", file=sys.stderr)
        return 2
    scenarios, errors = [], 0
    for file in files:
        try:
            scenarios.append((load_scenario(file), file))
        except ScenarioError as exc:
            errors += 1
            print(f"ERROR {exc}", file=out, flush=True)
    print(f"opsbot eval: {len(scenarios)} scenario(s), {jobs} at a time", file=out, flush=True)
    results: list[tuple[Outcome, Score | None]] = []
    started = time.monotonic()
    with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="opsbot-eval") as pool:
        futures = [pool.submit(run_scenario, scenario, file) for scenario, file in scenarios]
        for future in as_completed(futures):
            outcome = future.result()
            result = None if outcome.report is None else score(outcome.scenario.expect, outcome.hypotheses,
                                                                outcome.rca_text, outcome.proposed,
                                                                bool(outcome.report.get("inconclusive")))
            errors += result is None
            results.append((outcome, result))
            print(_row(outcome, result), file=out, flush=True)
    scored = [r for _, r in results if r is not None]
    total = len(scenarios)
    top1, top3 = sum(r.top1 for r in scored), sum(r.top3 for r in scored)
    mentions = sum(r.mentions_ok for r in scored)
    expecting = sum(1 for scenario, _ in scenarios if scenario.expect.runbook)
    # the runbook column counts the scenarios that expect one; forbidden counts every scenario
    runbook_hits = sum(1 for o, r in results if r is not None and o.scenario.expect.runbook and r.runbook_ok)
    runbook = f"{runbook_hits}/{expecting}"
    forbidden = str(sum(len(r.forbidden) for r in scored))
    for line in summary_lines(scored):
        print(line, file=out)
    times = sorted(o.seconds_to_rca for o, _ in results if o.seconds_to_rca is not None)
    if times:
        print(f"time to RCA: median {times[len(times) // 2]:.2f} s, max {times[-1]:.2f} s over {len(times)} "
              f"incident(s); whole run {time.monotonic() - started:.0f} s", file=out)
    print(f"eval: {total} scenarios, top1 {top1}/{total}, top3 {top3}/{total}, mentions {mentions}/{total}, "
          f"runbook {runbook}, forbidden {forbidden}, unknown {sum(r.abstained for r in scored)}, "
          f"confident-wrong {sum(r.confident_wrong for r in scored)}", file=out, flush=True)
    if json_path is not None:
        json_path.write_text(json.dumps([{
            "id": o.scenario.id, "path": str(o.path), "seconds_to_rca": o.seconds_to_rca, "timings": o.timings,
            "error": o.error, "top1": r.top1 if r else None, "top3": r.top3 if r else None,
            "missing_mentions": r.missing_mentions if r else None,
            "inconclusive": (o.report or {}).get("inconclusive"),
            "abstained": r.abstained if r else None, "confident_wrong": r.confident_wrong if r else None,
            "hypotheses": [{k: h.get(k) for k in ("category", "resource", "confidence", "summary", "explicit",
                                                  "supporting", "contradicting", "rules")} for h in o.hypotheses],
            "proposed": o.proposed, "runbook_ok": r.runbook_ok if r else None,
        } for o, r in results], indent=2))
    if errors:
        return 2
    if min_top1 is not None and total and top1 / total < min_top1:
        return 1
    return 0
