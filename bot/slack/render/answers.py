"""An answer to a question in an incident thread, as Block Kit. Pure.

Every line of an answer is untrusted (it quotes log lines, resource names, summaries): it is
redacted and escaped here, so a `<!channel>` in a log line stays text. Consecutive code lines
share one preformatted block; people are shown as mentions. Sections are cut to stay well
inside Block Kit's 3,000-character limit, and the gateway fits the whole message again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.slack.render.text import mention, untrusted

if TYPE_CHECKING:
    from bot.ask.answers import Answer, Line

SECTION_CHARS = 2800
LINE_CHARS = 600
MAX_SECTIONS = 8


def _line(line: Line) -> str:
    people = " ".join(mention(person) for person in line.people)
    return f"• {untrusted(line.text, LINE_CHARS)}" + (f" {people}" if people else "")


def _code(lines: list[Line]) -> str:
    body = "\n".join(untrusted(line.text, LINE_CHARS).replace("```", "ˋˋˋ") for line in lines)
    return f"```{body}```"


def _paragraphs(lines: tuple[Line, ...]) -> list[str]:
    """Plain lines one by one, runs of code lines as one preformatted paragraph."""
    out: list[str] = []
    run: list[Line] = []
    for line in lines:
        if line.code:
            run.append(line)
            continue
        if run:
            out.append(_code(run))
            run = []
        out.append(_line(line))
    if run:
        out.append(_code(run))
    return out


def _sections(paragraphs: list[str]) -> list[str]:
    sections: list[str] = []
    current = ""
    for paragraph in paragraphs:
        paragraph = paragraph[:SECTION_CHARS]
        if current and len(current) + 1 + len(paragraph) > SECTION_CHARS:
            sections.append(current)
            current = ""
        current = f"{current}\n{paragraph}" if current else paragraph
    if current:
        sections.append(current)
    return sections[:MAX_SECTIONS]


def render_answer(answer: Answer) -> dict[str, Any]:
    icon = ":speech_balloon:" if answer.intent is not None else ":grey_question:"
    heading = untrusted(answer.heading, 200)
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{heading}*"}}]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": text}}
               for text in _sections(_paragraphs(answer.lines))]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": untrusted(answer.source, 500)}]})
    return {"text": f"{untrusted(answer.heading, 200)} ({answer.intent or 'not understood'})", "blocks": blocks}
