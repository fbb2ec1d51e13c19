"""The week's numbers (`bot.incidents.weekly.WeekNumbers`) as Block Kit: a pure function.

`render_week(numbers)` returns blocks to append to a reply (the `/ops status` one): a divider,
a headline (incidents, alerts, alerts per incident), one section of fields (the times, the
steps, the bot's contribution) and a context line saying what the times measure. Every figure
is computed from our own rows, so nothing here is untrusted text; a figure with nothing to
measure shows "—", never 0. Four blocks and six fields: well inside Block Kit's limits.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from bot.incidents.weekly import KINDS, Times, WeekNumbers
from bot.postmortem.markdown import duration

TIMES = (("tta", "MTTA", "acknowledged"), ("ttd", "MTTD", "diagnosed"), ("ttr", "MTTR", "resolved"))
STEP_WORDS = (("proposed", "proposed"), ("approved", "approved"), ("auto_run", "auto-run"),
              ("rejected", "rejected"))
OUTCOME_WORDS = (("succeeded", "succeeded"), ("rolled_back", "rolled back"), ("failed", "failed"))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _time(label: str, measured: Times, what: str) -> str:
    if not measured.count:
        return f"*{label}*\n— (none {what})"
    mean, middle = duration(round(measured.mean_seconds or 0)), duration(round(measured.median_seconds or 0))
    return f"*{label}*\n{mean} (median {middle}, {_plural(measured.count, 'incident')})"


def _share(numbers: WeekNumbers, kind: str) -> str:
    share = numbers.share(kind)
    return f"{round(share * 100)} % {kind} ({numbers.resolutions[kind]})" if share is not None else f"— {kind}"


def render_week(numbers: WeekNumbers) -> list[dict[str, Any]]:
    last_day = numbers.end - timedelta(days=1)
    when = f"{numbers.start:%a %d %b}–{last_day:%a %d %b} UTC{', so far' if numbers.so_far else ''}"
    noise = (f", {numbers.noise_reduction:.1f} alerts per incident" if numbers.noise_reduction is not None else "")
    headline = (f":bar_chart: *{numbers.week}* ({when}): "
                f"{numbers.opened} opened, {numbers.resolved} resolved · "
                f"{_plural(numbers.alerts, 'alert')}{noise}")
    steps = " · ".join(f"{numbers.steps[key]} {word}" for key, word in STEP_WORDS)
    outcomes = " · ".join(f"{numbers.steps[key]} {word}" for key, word in OUTCOME_WORDS)
    fields = [_time(label, getattr(numbers, key), what) for key, label, what in TIMES]
    fields += [f"*Steps*\n{steps}", f"*Step outcomes*\n{outcomes}",
               "*Bot's contribution*\n" + "\n".join(_share(numbers, kind) for kind in KINDS)]
    return [
        {"type": "divider"},
        {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": text} for text in fields]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": (
            "Times from each incident's first alert, as its postmortem gives them; mean, then median. "
            "Steps count in the week they were proposed.")}]},
    ]
