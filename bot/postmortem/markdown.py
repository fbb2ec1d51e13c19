"""The postmortem as Markdown, from a Jinja2 template a team can change. Pure.

The default template is `postmortems/template.md.j2`; `OPSBOT_POSTMORTEM_TEMPLATE` may name
another. The template sees the facts (`bot.postmortem.facts`) as `pm` and nothing else: it can
reword and reorder, never invent. Autoescaping is off (Markdown, not HTML); facts that came
from outside were redacted when stored. A template that does not render is an error naming
the file and line, never a half-written postmortem.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "postmortems" / "template.md.j2"


class TemplateProblem(ValueError):
    pass


def duration(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds} s"
    minutes = seconds // 60
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60} min"


def utc(moment: str | None) -> str:
    if not moment:
        return "—"
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_markdown(facts: dict[str, Any], template: Path | None = None) -> str:
    path = template or DEFAULT_TEMPLATE
    environment = Environment(loader=FileSystemLoader(str(path.parent)), autoescape=False,
                              undefined=StrictUndefined, keep_trailing_newline=True, trim_blocks=False)
    environment.filters.update(duration=duration, utc=utc)
    try:
        return environment.get_template(path.name).render(pm=facts)
    except TemplateError as exc:
        where = f"{path}:{exc.lineno}" if getattr(exc, "lineno", None) else str(path)
        raise TemplateProblem(f"postmortem template {where}: {exc}") from None
