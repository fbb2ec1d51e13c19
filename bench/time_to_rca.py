"""Time to RCA: from the webhook's arrival to the RCA message in Slack, over the scenario suite.

    .venv/bin/python bench/time_to_rca.py [PATH ...] [--poll 0.5] [--repeat 1]

Each scenario is replayed as `opsbot eval` replays it (the sandbox API server read through the
real `kubernetes` client, a real Prometheus with the scenario's metrics, the bot's HTTP intake,
the Slack emulator), one at a time so that the timings are not shared between replays, with
the workers' production poll interval (0.5 s) unless --poll says otherwise. Time runs from
just before the webhook POST to the emulator's receipt of the RCA message; heartbeat
scenarios open no thread and are left out. Prints p50, p95 and max, the share of the
investigation spent in each gatherer, and one line:
`bench: time_to_rca p50_s=N p95_s=N scenarios=N`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.eval.cli import scenario_files  # noqa: E402
from bot.eval.runner import run_scenario  # noqa: E402
from bot.logs import configure_logging  # noqa: E402
from bot.sandbox.paths import shared_scenarios_dir  # noqa: E402
from bot.sandbox.scenario import load_scenario  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--poll", type=float, default=0.5, help="worker poll interval (production default 0.5 s)")
    parser.add_argument("--repeat", type=int, default=1, help="replays per scenario")
    args = parser.parse_args()
    paths = args.paths or [REPO / "tests" / "scenarios", shared_scenarios_dir()]
    configure_logging("CRITICAL", "text")
    times: list[float] = []
    spent: dict[str, float] = defaultdict(float)
    failures = []
    measured: set[str] = set()
    files = scenario_files(paths)
    print(f"time to RCA over {len(files)} scenario files, {args.repeat} replay(s) each, poll {args.poll} s",
          flush=True)
    for path in files:
        scenario = load_scenario(path)
        for _ in range(args.repeat):
            outcome = run_scenario(scenario, path, poll_seconds=args.poll)
            if outcome.seconds_to_rca is None:
                if outcome.incident_opened or outcome.error:
                    failures.append(f"{scenario.id}: {outcome.error or 'no RCA message'}")
                break
            times.append(outcome.seconds_to_rca)
            measured.add(scenario.id)
            for name, seconds in outcome.timings.items():
                spent[name] += seconds
            print(f"  {outcome.seconds_to_rca:6.2f} s  {scenario.id}", flush=True)
    if not times:
        print("no RCA was measured", file=sys.stderr)
        return 1
    total = sum(spent.values()) or 1.0
    print(f"p50 {statistics.median(times):.2f} s, p95 {percentile(times, 0.95):.2f} s, max {max(times):.2f} s "
          f"over {len(times)} replays")
    print("share of investigation time by gatherer: " + ", ".join(
        f"{name} {seconds / total:.0%} ({seconds / len(times):.2f} s avg)" for name, seconds in
        sorted(spent.items(), key=lambda item: -item[1])))
    for failure in failures:
        print(f"not measured: {failure}")
    command = "bench/time_to_rca.py" + (" " + " ".join(map(str, args.paths)) if args.paths else "")
    print(f"reproduce: .venv/bin/python {command} --poll {args.poll} --repeat {args.repeat}")
    print(f"bench: time_to_rca p50_s={statistics.median(times):.2f} p95_s={percentile(times, 0.95):.2f} "
          f"scenarios={len(measured)}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
