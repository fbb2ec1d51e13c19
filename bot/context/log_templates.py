"""Group log lines into templates and find the ones whose rate jumped.

Templates are mined with drain3 (the Drain algorithm, the field's standard parser; chosen over
a masking-only miner of our own on grouping accuracy, see bench/log_templates.py). Variable
parts (numbers, ids, addresses, durations, quoted values) are masked first, so that "connection
to 10.0.3.7:5432 refused" and "connection to 10.0.3.9:5432 refused" are one template.

A template "jumped" when it is an error or warning and occurs in the incident window at three
times its earlier rate or more (or only in the window). Without line times, the previous
(crashed) container's lines count as the incident window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from drain3 import TemplateMiner
from drain3.masking import MaskingInstruction
from drain3.template_miner_config import TemplateMinerConfig

from bot.context.log_lines import ParsedLine, parse_line
from bot.context.model import LogTemplate

MAX_TEMPLATES = 12
JUMP_FACTOR = 3.0
_MASKS = (
    (r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "UUID"),
    (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?", "TIME"),
    (r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?(?![\w.])", "IP"),
    (r"\b(?:0x)?[0-9a-fA-F]{12,}\b", "HEX"),
    (r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:ms|s|us|µs|ns|m|h|%|Mi|Gi|Ki|MB|GB|KB|B)?(?![\w.])", "NUM"),
)


def _config() -> TemplateMinerConfig:
    config = TemplateMinerConfig()
    config.profiling_enabled = False
    config.drain_sim_th = 0.5
    config.drain_depth = 4
    config.drain_max_clusters = 1000
    config.masking_instructions = [MaskingInstruction(pattern, name) for pattern, name in _MASKS]
    return config


@dataclass
class _Group:
    count: int = 0
    recent: int = 0
    baseline: int = 0
    example: str = ""
    level: str = "other"


_SEVERITY = {"error": 3, "warn": 2, "info": 1, "other": 0}


def mine(streams: Sequence[tuple[Sequence[str], bool]], window_start: datetime, now: datetime,
         year: int | None = None) -> list[LogTemplate]:
    """Templates over several streams of one container, each `(lines, previous)`; most telling
    first (jumped errors, then errors, warnings, by count). At most MAX_TEMPLATES."""
    miner = TemplateMiner(config=_config())
    groups: dict[int, _Group] = {}
    baseline_start: datetime | None = None
    for lines, previous in streams:
        last_at: datetime | None = None
        for line in lines:
            if not line.strip():
                continue
            parsed: ParsedLine = parse_line(line, year)
            at = parsed.at or last_at
            last_at = at
            result = miner.add_log_message(parsed.message[:2000])
            group = groups.setdefault(result["cluster_id"], _Group())
            group.count += 1
            if not group.example or _SEVERITY[parsed.level] > _SEVERITY[group.level]:
                group.example = line.strip()[:500]
            if _SEVERITY[parsed.level] > _SEVERITY[group.level]:
                group.level = parsed.level
            in_window = (at is None and previous) or (at is not None and window_start <= at <= now) \
                or (at is None and not previous)
            if in_window:
                group.recent += 1
            else:
                group.baseline += 1
                baseline_start = at if baseline_start is None or (at and at < baseline_start) else baseline_start
    window_minutes = max(1.0, (now - window_start).total_seconds() / 60)
    baseline_minutes = max(1.0, (window_start - baseline_start).total_seconds() / 60) if baseline_start else 1.0
    templates = []
    for cluster in miner.drain.clusters:
        group = groups.get(cluster.cluster_id)
        if group is None:
            continue
        recent_rate, baseline_rate = group.recent / window_minutes, group.baseline / baseline_minutes
        jumped = group.level in ("error", "warn") and group.recent > 0 and (
            group.baseline == 0 or recent_rate >= JUMP_FACTOR * baseline_rate)
        templates.append(LogTemplate(template=cluster.get_template(), count=group.count, example=group.example,
                                     level=group.level, recent=group.recent, baseline=group.baseline,
                                     jumped=jumped))
    templates.sort(key=lambda t: (not t.jumped, -_SEVERITY[t.level], -t.count))
    return templates[:MAX_TEMPLATES]
