"""Slack mrkdwn to HTML for the emulator's web view: small, and escaped by construction.

Invariants:
- Every character of the input reaches the output through `html.escape` (or as one of a fixed set
  of tags this module writes), so a label, a log line or an alert annotation can never become
  markup or script in the page. A link is written only for an http, https or mailto URL; any other
  `<...>` is shown as the text it is.
- Slack's own escaping is undone exactly once (`&amp;`, `&lt;`, `&gt;`), as a Slack client does:
  `&lt;b&gt;` shows as `<b>`, `&amp;lt;` shows as `&lt;`.
- Code (`code`, ```pre```) is shown verbatim: no formatting, mentions or links inside it.

Covered: *bold*, _italic_, ~strike~, `code`, ```pre```, > quotes, line breaks, links `<url>` and
`<url|label>`, user mentions `<@U..>`, channels `<#C..>`, user groups `<!subteam^S..>`, `<!here>`
style broadcasts, `<!date^...|fallback>`, and the emoji shortcodes the bot uses.
No library renders Slack's mrkdwn dialect (Markdown libraries differ on every one of these rules),
hence this converter.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping

from markupsafe import Markup

LINK_SCHEMES = ("http://", "https://", "mailto:")
"""The only URLs the page turns into links; anything else stays text."""

EMOJI = {
    "no_entry": "⛔", "white_check_mark": "✅", "warning": "⚠️", "red_circle": "🔴", "mag": "🔍",
    "loudspeaker": "📢", "leftwards_arrow_with_hook": "↩️", "grey_question": "❔", "white_circle": "⚪",
    "twisted_rightwards_arrows": "🔀", "rotating_light": "🚨", "no_entry_sign": "🚫",
    "large_yellow_circle": "🟡", "large_orange_circle": "🟠", "large_green_circle": "🟢",
    "large_blue_circle": "🔵", "hourglass_flowing_sand": "⏳", "hourglass": "⌛", "speech_balloon": "💬",
    "pager": "📟", "octagonal_sign": "🛑", "moneybag": "💰", "memo": "📝", "link": "🔗",
    "level_slider": "🎚️", "key": "🔑", "information_source": "ℹ️", "heavy_plus_sign": "➕", "gear": "⚙️",
    "eyes": "👀", "compass": "🧭", "clipboard": "📋", "card_file_box": "🗃️", "bulb": "💡",
    "bar_chart": "📊", "ballot_box_with_check": "☑️", "arrows_counterclockwise": "🔄",
    "arrow_double_up": "⏫", "admission_tickets": "🎟️", "x": "❌", "fire": "🔥", "tada": "🎉",
    "heavy_check_mark": "✔️", "chart_with_upwards_trend": "📈", "wrench": "🔧",
}
"""Shortcode → character for the emoji the bot writes; other shortcodes stay as typed."""

_SLACK_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">"}
_PLACEHOLDER = "\x00{}\x00"
_PLACEHOLDER_RE = re.compile("\x00(\\d+)\x00")
_PRE_RE = re.compile(r"```\n?(.*?)```", re.DOTALL)
_CODE_RE = re.compile(r"`([^`\n]+)`")
_TOKEN_RE = re.compile(r"<([^<>\n]{1,4000})>")
_STYLES = (  # marker, tag: a marker hugs its text and is not inside a word, as in Slack
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]*?\S)\*(?![\w*])"), "b"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]*?\S)_(?![\w_])"), "i"),
    (re.compile(r"(?<![\w~])~(?=\S)([^~\n]*?\S)~(?![\w~])"), "s"),
)
_EMOJI_RE = re.compile(r":([a-z0-9_+-]{1,40}):")
_QUOTE_PREFIX = "&gt; "

Names = Mapping[str, str]


def slack_unescape(text: str) -> str:
    """Undo Slack's three entities, once."""
    return re.sub(r"&(amp|lt|gt);", lambda m: _SLACK_ENTITIES[m.group(0)], text)


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def emojize(escaped: str) -> str:
    """Known shortcodes in already-escaped text become their characters."""
    return _EMOJI_RE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), escaped)


def _mention(css: str, label: str) -> str:
    return f'<span class="mention {css}">{_escape(label)}</span>'


def _link(url: str, label: str) -> str:
    if url.lower().startswith(LINK_SCHEMES):
        return (f'<a href="{_escape(url)}" target="_blank" rel="noopener noreferrer nofollow">'
                f"{_escape(label)}</a>")
    return _escape(f"<{url}|{label}>" if label != url else f"<{url}>")


def _token(body: str, users: Names, usergroups: Names, channels: Names) -> str:
    """One `<...>` sequence as HTML (its parts unescaped from Slack, then escaped for HTML)."""
    target, _, label = body.partition("|")
    target, label = slack_unescape(target), slack_unescape(label)
    if target.startswith("@"):
        uid = target[1:]
        return _mention("user", "@" + (users.get(uid) or label.lstrip("@") or uid))
    if target.startswith("#"):
        cid = target[1:]
        return _mention("channel", "#" + (channels.get(cid) or label.lstrip("#") or cid))
    if target.startswith("!subteam^"):
        gid = target[len("!subteam^"):]
        return _mention("group", "@" + (usergroups.get(gid) or label.lstrip("@") or gid))
    if target.startswith("!date^"):
        return _escape(label or target)
    if target in ("!here", "!channel", "!everyone"):
        return _mention("broadcast", "@" + target[1:])
    return _link(target, label or target)


def _styled(escaped: str) -> str:
    for pattern, tag in _STYLES:
        escaped = pattern.sub(lambda m, t=tag: f"<{t}>{m.group(1)}</{t}>", escaped)
    return escaped


def _quoted(lines_html: str) -> str:
    out: list[str] = []
    quote: list[str] = []
    for line in lines_html.split("\n"):
        if line.startswith(_QUOTE_PREFIX) or line == "&gt;":
            quote.append(line[len(_QUOTE_PREFIX):])
            continue
        if quote:
            out.append("<blockquote>" + "<br>".join(quote) + "</blockquote>")
            quote = []
        out.append(line + "<br>")
    if quote:
        out.append("<blockquote>" + "<br>".join(quote) + "</blockquote>")
    joined = "".join(out)
    return joined[: -len("<br>")] if joined.endswith("<br>") else joined


def mrkdwn_to_html(text: object, *, users: Names | None = None, usergroups: Names | None = None,
                   channels: Names | None = None) -> Markup:
    """Slack mrkdwn `text` as safe HTML. `users`/`usergroups`/`channels` map ids to names for
    mentions (`U0ALICE` → `alice`); unknown ids are shown as the id (or the label Slack sent)."""
    source = str(text or "").replace("\x00", "").replace("\r\n", "\n")
    held: list[str] = []

    def hold(fragment: str) -> str:
        held.append(fragment)
        return _PLACEHOLDER.format(len(held) - 1)

    source = _PRE_RE.sub(lambda m: hold(f"<pre>{_escape(slack_unescape(m.group(1)))}</pre>"), source)
    source = _CODE_RE.sub(lambda m: hold(f"<code>{_escape(slack_unescape(m.group(1)))}</code>"), source)
    source = _TOKEN_RE.sub(lambda m: hold(_token(m.group(1), users or {}, usergroups or {}, channels or {})),
                           source)
    rendered = _quoted(_styled(emojize(_escape(slack_unescape(source)))))
    return Markup(_PLACEHOLDER_RE.sub(lambda m: held[int(m.group(1))], rendered))


def plain_to_html(text: object, *, emoji: bool = True) -> Markup:
    """A `plain_text` object's text: escaped, line breaks kept, shortcodes as emoji (Slack's
    `emoji: true` default)."""
    escaped = _escape(str(text or "").replace("\x00", ""))
    return Markup((emojize(escaped) if emoji else escaped).replace("\n", "<br>"))


def text_object_to_html(obj: object, **names: Names) -> Markup:
    """A Block Kit text object (`{"type": "mrkdwn" | "plain_text", "text": ...}`) as HTML."""
    if not isinstance(obj, Mapping):
        return Markup("")
    if obj.get("type") == "mrkdwn" and not obj.get("verbatim"):
        return mrkdwn_to_html(obj.get("text"), **names)
    if obj.get("type") == "mrkdwn":
        return Markup(_escape(slack_unescape(str(obj.get("text") or ""))).replace("\n", "<br>"))
    return plain_to_html(obj.get("text"), emoji=obj.get("emoji", True) is not False)


def text_renderer(users: Names, usergroups: Names, channels: Names) -> Callable[[object], Markup]:
    """`text_object_to_html` with the workspace's names bound (a Jinja filter)."""
    return lambda obj: text_object_to_html(obj, users=users, usergroups=usergroups, channels=channels)
