"""Safe mrkdwn: untrusted text (alert labels, annotations, log lines) rendered inertly.

Slack parses `<...>` as links and mentions (`<!channel>`, `<@U123>`, `<https://x|label>`),
so `&`, `<` and `>` in untrusted text are escaped; secrets are redacted first.
"""

from __future__ import annotations

import re

from bot.redaction import redact

ELLIPSIS = "…"


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + ELLIPSIS


def untrusted(text: str, limit: int = 3000) -> str:
    """Redacted, escaped and cut to `limit` characters (after escaping)."""
    return truncate(escape(redact(text)), limit)


def link(url: str, label: str) -> str:
    """A mrkdwn link, or just the label when the URL is not plain http(s)."""
    if not url.startswith(("https://", "http://")) or any(ch in url for ch in "<>| \n"):
        return escape(label)
    return f"<{url}|{escape(label)}>"


def plain(text: str, limit: int) -> str:
    """Untrusted text for plain_text objects: redacted, angle brackets made inert look-alikes
    (plain_text is not parsed as mrkdwn, but a copied `<!channel>` should never survive)."""
    return truncate(redact(text).replace("<", "‹").replace(">", "›"), limit)


def mention(user_id: str) -> str:
    """A Slack mention of a user id; anything that is not one is shown as escaped text."""
    return f"<@{user_id}>" if re.fullmatch(r"[UW][A-Z0-9]{2,20}", user_id or "") else untrusted(user_id or "", 40)
