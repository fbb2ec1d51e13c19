"""Server-side HTML for the emulator's web view: Jinja2 templates over what the bot really sent.

Invariants:
- Autoescape is on for every template; the only HTML that is not escaped by Jinja comes from
  `web_mrkdwn` (escaped by construction), so no text from a message, a file name or a modal can
  become markup.
- Rendering is pure: the same workspace snapshot and viewer give the same HTML; nothing here
  reads the emulator or changes it.
- Block Kit is shown as Slack shows it where the page can (sections with fields and accessories,
  context, actions with buttons and menus, images, headers, dividers, files, inputs in modals);
  a block or element of another type is shown as a labelled placeholder, never dropped silently.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from bot.sandbox.slack_emulator.web_inbound import block_id_of
from bot.sandbox.slack_emulator.web_mrkdwn import mrkdwn_to_html, plain_to_html, text_renderer

TEMPLATES_DIR = Path(__file__).with_name("templates")
FILES_PATH = "/web/files/"
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
"""Image types shown inline (and served inline); any other file is a download (SVG can carry script)."""
IMAGE_URL_SCHEMES = ("http://", "https://")


@dataclass(frozen=True)
class Directory:
    """Names the page shows instead of ids."""

    users: dict[str, str] = field(default_factory=dict)
    humans: list[tuple[str, str, str]] = field(default_factory=list)
    usergroups: dict[str, str] = field(default_factory=dict)
    channels: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Directory:
        return cls(dict(raw["users"]), list(raw["humans"]), dict(raw["usergroups"]), list(raw["channels"]))

    @property
    def channel_names(self) -> dict[str, str]:
        return dict(self.channels)


def file_url(file_id: str, filename: str) -> str:
    """Where the page fetches an uploaded file's bytes."""
    return f"{FILES_PATH}{quote(file_id, safe='')}/{quote(filename or 'file', safe='')}"


def file_mimetype(filename: str) -> str:
    return mimetypes.guess_type(filename or "")[0] or "application/octet-stream"


def is_inline_image(filename: str) -> bool:
    return file_mimetype(filename) in INLINE_IMAGE_TYPES


def clock(ts: object) -> str:
    """A Slack `ts` as the wall-clock time it was posted (UTC, HH:MM:SS)."""
    try:
        return datetime.fromtimestamp(float(str(ts)), UTC).strftime("%H:%M:%S")
    except (TypeError, ValueError, OverflowError):
        return ""


def safe_image_url(url: object) -> str | None:
    """An image block's URL when the page may load it (http/https, or one of our file URLs)."""
    if isinstance(url, str) and (url.lower().startswith(IMAGE_URL_SCHEMES) or url.startswith(FILES_PATH)):
        return url
    return None


@dataclass
class Feed:
    """One pane's messages, in the order shown: stored messages and what only the viewer sees."""

    items: list[dict[str, Any]]
    title: str
    channel: str
    thread_ts: str | None = None


class Renderer:
    """The page and its fragments (channel pane, thread pane, modal)."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR) -> None:
        self._env = Environment(loader=FileSystemLoader(str(templates_dir)),
                                autoescape=select_autoescape(default=True, default_for_string=True),
                                undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self._env.filters.update(clock=clock, file_url=file_url, inline_image=is_inline_image,
                                 image_url=safe_image_url, plain=plain_to_html,
                                 block_id=block_id_of)

    def _bind(self, directory: Directory) -> dict[str, Any]:
        names = {"users": directory.users, "usergroups": directory.usergroups, "channels": directory.channel_names}
        return {"text": text_renderer(**names), "mrkdwn": lambda value: mrkdwn_to_html(value, **names),
                "directory": directory, "user_name": lambda uid: directory.users.get(str(uid), str(uid or "?"))}

    def page(self, directory: Directory, viewer: str, scenarios: list[tuple[str, str]]) -> str:
        return self._env.get_template("page.html").render(viewer=viewer, scenarios=scenarios,
                                                          **self._bind(directory))

    def feed(self, directory: Directory, feed: Feed, viewer: str, *, in_thread: bool) -> Markup:
        template = self._env.get_template("feed.html")
        return Markup(template.render(feed=feed, viewer=viewer, in_thread=in_thread, **self._bind(directory)))

    def modal(self, directory: Directory, view: dict[str, Any], errors: dict[str, str]) -> Markup:
        template = self._env.get_template("modal.html")
        return Markup(template.render(view=view, errors=errors, **self._bind(directory)))

    def static(self, name: str) -> tuple[bytes, str] | None:
        """A file of `templates/static` (CSS, JS) and its content type; None for anything else."""
        if "/" in name or "\\" in name or name.startswith("."):
            return None
        path = TEMPLATES_DIR / "static" / name
        if not path.is_file():
            return None
        kind = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}.get(path.suffix)
        return (path.read_bytes(), kind) if kind else None
