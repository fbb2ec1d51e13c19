"""Log template mining: drain3 (what opsbot uses) against a masking-only miner, on evidence.

    .venv/bin/python bench/log_templates.py [--lines 20000] [--seed 3]

The corpus is generated from known templates whose variable parts are the kinds real logs
carry: numbers, durations, IPs with ports, hex and UUID ids, pod names, user and table names,
file paths, quoted values. Known templates make the grouping checkable: grouping accuracy
(GA, as in the LogPAI/loghub benchmarks) is the share of lines whose predicted group holds
exactly the lines of their true template. The scenario logs under tests/scenarios and
../shared/scenarios are mined too (templates per stream; no ground truth there).

The masking-only miner is the natural thing to write ourselves: mask the variable tokens
with the same masks drain3 is given, group by the masked text. drain3 groups further by
token position similarity, which catches variables no mask knows (a user or table name).
Ends with `bench: log_templates drain3_ga=N masking_ga=N drain3_lines_per_s=N masking_lines_per_s=N`.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.context.log_lines import parse_line  # noqa: E402
from bot.context.log_templates import _MASKS, _config  # noqa: E402

TEMPLATES = (
    "connection to {ip} refused after {n} attempts",
    "request {uuid} from user {user} took {dur}",
    "GET {path} returned {code} in {dur}",
    "failed to write to table {table}: deadlock detected (retry {n})",
    "pod {pod} restarted by kubelet: exit code {code}",
    "cache miss for key {hex} in region {word}",
    "upstream {host} answered {code} for {path}",
    "worker {n} processed batch {hex} with {n} items",
    "user {user} logged in from {ip}",
    "invalid value {quoted} for setting {word}",
    "queue {word} depth is {n}, lag {dur}",
    "checkpoint {n} written to {path} ({n} bytes)",
    "scheduled job {word} for tenant {user} at {time}",
    "payment {uuid} declined: reason {word}",
    "slow query on {table} ({dur}): SELECT * FROM {table} WHERE id = {n}",
)
WORDS = ["alpha", "bravo", "orders", "billing", "eu-west", "us-east", "primary", "replica", "gold", "silver",
         "insufficient_funds", "expired_card", "fraud", "inbound", "outbound", "priority", "bulk"]
USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar"]
TABLES = ["orders", "invoices", "customers", "shipments", "ledger_entries", "sessions", "audit_log"]


def _value(kind: str, rng: random.Random) -> str:
    if kind == "ip":
        return f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}:{rng.choice([5432, 6379, 8080])}"
    if kind == "n":
        return str(rng.randrange(1, 100000))
    if kind == "dur":
        return f"{rng.randrange(1, 5000)}ms"
    if kind == "uuid":
        a, b, c, d, e = (rng.getrandbits(bits) for bits in (32, 16, 16, 16, 48))
        return f"{a:08x}-{b:04x}-{c:04x}-{d:04x}-{e:012x}"
    if kind == "hex":
        return f"{rng.getrandbits(64):016x}"
    if kind == "user":
        return rng.choice(USERS)
    if kind == "table":
        return rng.choice(TABLES)
    if kind == "word":
        return rng.choice(WORDS)
    if kind == "path":
        return "/" + "/".join(rng.choice(["api", "v1", "v2", "orders", "items", str(rng.randrange(999))])
                              for _ in range(rng.randrange(2, 4)))
    if kind == "code":
        return str(rng.choice([200, 201, 404, 500, 502, 503, 1, 137]))
    if kind == "pod":
        return f"{rng.choice(['checkout', 'api', 'worker'])}-{rng.getrandbits(32):08x}"[:18] + \
            f"-{''.join(rng.choice('bcdfghjklmnpqrstvwxz2456789') for _ in range(5))}"
    if kind == "host":
        return f"{rng.choice(['inventory', 'pricing', 'search'])}.{rng.choice(WORDS)}.svc:{rng.choice([80, 8080])}"
    if kind == "quoted":
        return f'"{rng.choice(WORDS)}{rng.randrange(10)}"'
    if kind == "time":
        return (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(10**7))).isoformat()
    raise ValueError(kind)


def corpus(lines: int, seed: int) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    texts, truth = [], []
    weights = [rng.random() ** 2 + 0.01 for _ in TEMPLATES]
    for _ in range(lines):
        index = rng.choices(range(len(TEMPLATES)), weights)[0]
        texts.append(re.sub(r"\{(\w+)\}", lambda m: _value(m.group(1), rng), TEMPLATES[index]))
        truth.append(index)
    return texts, truth


def grouping_accuracy(predicted: list, truth: list[int]) -> float:
    by_truth, by_pred = defaultdict(set), defaultdict(set)
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        by_truth[t].add(i)
        by_pred[p].add(i)
    correct = sum(len(members) for members in by_pred.values()
                  if by_truth[truth[next(iter(members))]] == members)
    return correct / len(truth)


def drain3_groups(texts: list[str]) -> list:
    from drain3 import TemplateMiner

    miner = TemplateMiner(config=_config())
    return [miner.add_log_message(t)["cluster_id"] for t in texts]


_COMPILED = [(re.compile(p), f"<{n}>") for p, n in _MASKS]


def masking_groups(texts: list[str]) -> list:
    out = []
    for text in texts:
        for pattern, mask in _COMPILED:
            text = pattern.sub(mask, text)
        out.append(text)
    return out


def _timed(function, texts: list[str], repeats: int = 3) -> tuple[list, float]:
    runs, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function(texts)
        runs.append(time.perf_counter() - started)
    return result, len(texts) / statistics.median(runs)


def scenario_streams() -> list[list[str]]:
    import yaml

    streams = []
    for folder in (REPO / "tests" / "scenarios", REPO.parent / "shared" / "scenarios"):
        for path in sorted(folder.glob("*.yaml")):
            for entry in (yaml.safe_load(path.read_text()).get("cluster") or {}).get("logs") or []:
                lines = [parse_line(str(line)).message for line in entry.get("lines") or [] if str(line).strip()]
                if lines:
                    streams.append(lines)
    return streams


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    texts, truth = corpus(args.lines, args.seed)
    drain, drain_rate = _timed(drain3_groups, texts)
    masked, mask_rate = _timed(masking_groups, texts)
    drain_ga, mask_ga = grouping_accuracy(drain, truth), grouping_accuracy(masked, truth)
    print(f"synthetic corpus: {args.lines} lines from {len(TEMPLATES)} templates (seed {args.seed})")
    print(f"drain3:  GA {drain_ga:.3f}, {len(set(drain))} groups, {drain_rate:,.0f} lines/s (median of 3)")
    print(f"masking: GA {mask_ga:.3f}, {len(set(masked))} groups, {mask_rate:,.0f} lines/s (median of 3)")
    streams = scenario_streams()
    drain_counts = [len(set(drain3_groups(s))) for s in streams]
    mask_counts = [len(set(masking_groups(s))) for s in streams]
    lines = sum(len(s) for s in streams)
    print(f"scenario logs: {len(streams)} streams, {lines} lines: drain3 {sum(drain_counts)} templates, "
          f"masking {sum(mask_counts)} templates (fewer is better when they are right)")
    print(f"reproduce: .venv/bin/python bench/log_templates.py --lines {args.lines} --seed {args.seed}")
    print(f"bench: log_templates drain3_ga={drain_ga:.3f} masking_ga={mask_ga:.3f} "
          f"drain3_lines_per_s={drain_rate:.0f} masking_lines_per_s={mask_rate:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
