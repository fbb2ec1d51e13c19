"""`opsbot incidents [--open] [--limit N]`, `opsbot thread INC-N [--files DIR]` and
`opsbot timeline INC-N [--json]`: an incident from a terminal, against any opsbot database.
`opsbot incidents similar INC-N` (bot.postmortem.memory_cli) stays a subcommand of `incidents`.

Invariants:
- read-only: nothing here writes to the database or to Slack (the thread is read with
  conversations.replies, files with a GET of their `url_private`);
- bad input (not INC-N, an unknown incident, a limit out of range, no Slack configured) is one
  line on stderr and exit 2; a database or Slack that cannot be reached is one line and exit 1;
  never a traceback (the errors travel as `bot.cli.CliError`);
- the bot token is sent only to Slack's own hosts or the host of the configured Slack API URL
  (an emulator or proxy), never to whatever host a file URL or a redirect names;
- a file that cannot be saved is one line on stderr; the thread and the other files still come,
  and the exit status is then 1.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.postmortem.memory_cli import MAX_LIMIT as SIMILAR_MAX_LIMIT
from bot.postmortem.memory_cli import cmd_incidents_similar, parse_reference

DEFAULT_LIST_LIMIT = 20
MAX_LIST_LIMIT = 1000
REPLIES_PAGE_SIZE = 200
MAX_REPLY_PAGES = 50  # 10,000 messages: far beyond any incident thread
SLACK_HOST_SUFFIXES = (".slack.com", ".slack-edge.com")
SLACK_HOSTS = frozenset({"slack.com", "files.slack.com"})
DOWNLOAD_TIMEOUT_SECONDS = 30
MAX_FILE_BYTES = 200 * 1024 * 1024
DOWNLOAD_CHUNK_BYTES = 64 * 1024
UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]+")
NO_SLACK = ("no Slack is configured: set OPSBOT_SLACK_BOT_TOKEN (and OPSBOT_SLACK_API_URL for an endpoint "
            "other than slack.com) to read incident threads")


def _iso(moment: datetime | None) -> str:
    return moment.isoformat().replace("+00:00", "Z") if moment else "-"


def _incident_id(text: str) -> int:
    from bot.cli import CliError

    try:
        return parse_reference(text)
    except ValueError as exc:
        raise CliError(str(exc), code=2) from None


# -- opsbot incidents ---------------------------------------------------------------------------------
def incident_line(incident: Any) -> str:
    """One incident: reference, status, severity, title, opened, resolved, alerts, commander."""
    return (f"{incident.reference}  {incident.status:<8}  {incident.severity:<8}  {incident.title}  "
            f"opened {_iso(incident.created_at)}  resolved {_iso(incident.resolved_at)}  "
            f"alerts {incident.alert_count}  commander {incident.commander or '-'}")


def list_incidents(factory, only_open: bool, limit: int) -> list[str]:
    from sqlalchemy import select

    from bot.db.engine import reading
    from bot.db.models import Incident

    query = select(Incident).order_by(Incident.id.desc()).limit(limit)
    if only_open:
        # status, not `is_open`: a resolved incident keeps its group key (it may reopen) until closed
        query = query.where(Incident.status == "open")
    with reading(factory) as session:
        return [incident_line(incident) for incident in session.execute(query).scalars()]


def cmd_incidents_list(args: argparse.Namespace) -> int:
    from bot.cli import CliError, _with_database

    if not 1 <= args.list_limit <= MAX_LIST_LIMIT:
        raise CliError(f"--limit must be between 1 and {MAX_LIST_LIMIT}, not {args.list_limit}", code=2)
    lines = _with_database(lambda factory: list_incidents(factory, args.open, args.list_limit))
    print("\n".join(lines) if lines else ("no open incidents" if args.open else "no incidents"))
    return 0


# -- opsbot timeline ----------------------------------------------------------------------------------
def timeline_entries(factory, incident_id: int) -> list[dict[str, Any]] | None:
    """The incident's timeline oldest first, or None when there is no such incident."""
    from sqlalchemy import select

    from bot.db.engine import reading
    from bot.db.models import Incident, TimelineEntry

    with reading(factory) as session:
        if session.get(Incident, incident_id) is None:
            return None
        rows = session.execute(select(TimelineEntry).where(TimelineEntry.incident_id == incident_id)
                               .order_by(TimelineEntry.seq)).scalars()
        return [{"seq": row.seq, "at": _iso(row.at), "kind": row.kind, "actor": row.actor, "data": row.payload}
                for row in rows]


def timeline_line(entry: dict[str, Any]) -> str:
    data = json.dumps(entry["data"], sort_keys=True, separators=(",", ":"), default=str)
    return f"{entry['seq']:>4}  {entry['at']}  {entry['kind']}  {entry['actor']}  {data}"


def cmd_timeline(args: argparse.Namespace) -> int:
    from bot.cli import CliError, _with_database

    incident_id = _incident_id(args.incident)
    entries = _with_database(lambda factory: timeline_entries(factory, incident_id))
    if entries is None:
        raise CliError(f"no incident INC-{incident_id}", code=2)
    if args.json:
        print(json.dumps({"incident": f"INC-{incident_id}", "entries": entries}, indent=2, default=str))
    elif entries:
        print("\n".join(timeline_line(entry) for entry in entries))
    else:
        print(f"INC-{incident_id}: the timeline is empty")
    return 0


# -- opsbot thread ------------------------------------------------------------------------------------
def thread_root(factory, incident_id: int) -> tuple[str, str] | None:
    """(channel, ts) of the incident's card, "" for both when it was never posted; None: no incident."""
    from bot.db.engine import reading
    from bot.db.models import Incident
    from bot.incidents.service import card_message

    with reading(factory) as session:
        if session.get(Incident, incident_id) is None:
            return None
        card = card_message(session, incident_id)
        return (card.channel, card.ts) if card is not None else ("", "")


def read_thread(gateway, channel: str, ts: str) -> list[dict[str, Any]]:
    """Every message of the thread (root first), page after page."""
    messages: list[dict[str, Any]] = []
    seen: set[str] = set()  # Slack repeats the root at the top of every page
    cursor: str | None = None
    for _ in range(MAX_REPLY_PAGES):
        page, cursor = gateway.messages_page(channel, ts, oldest="0", limit=REPLIES_PAGE_SIZE, cursor=cursor)
        for message in page:
            if message.get("ts") not in seen:
                seen.add(message.get("ts"))
                messages.append(message)
        if not cursor:
            break
    return messages


def token_may_go_to(url: str, api_url: str | None) -> bool:
    """The bot token goes to Slack's hosts over HTTPS, or to the configured API URL's host."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    configured = (urlsplit(api_url).hostname or "").lower() if api_url else ""
    if configured and host == configured:
        return parts.scheme in ("http", "https") and (parts.scheme == "https" or _is_loopback(host))
    return parts.scheme == "https" and (host in SLACK_HOSTS or host.endswith(SLACK_HOST_SUFFIXES))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _TokenKeepingRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, dropping the Authorization header when one leaves the allowed hosts."""

    def __init__(self, api_url: str | None):
        super().__init__()
        self.api_url = api_url

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        follow = super().redirect_request(req, fp, code, msg, headers, newurl)
        if follow is not None and not token_may_go_to(newurl, self.api_url):
            follow.remove_header("Authorization")
        return follow


def saved_name(file: dict[str, Any]) -> str:
    """`<file id>-<name>`: unique per file, and no path separators or dot-dot from the name."""
    name = UNSAFE_NAME_CHARACTERS.sub("_", Path(str(file.get("name") or "file")).name).strip("._") or "file"
    return f"{UNSAFE_NAME_CHARACTERS.sub('_', str(file.get('id') or 'F'))}-{name}"


def download_file(file: dict[str, Any], folder: Path, token: str, api_url: str | None) -> Path:
    """Save one file of the thread into `folder`; ValueError or OSError with the reason."""
    url = file.get("url_private_download") or file.get("url_private")
    if not url:
        raise ValueError("Slack gave no url_private for it")
    if not token_may_go_to(url, api_url):
        raise ValueError(f"{urlsplit(url).hostname or url} is not a Slack host: the bot token is not sent there")
    opener = urllib.request.build_opener(_TokenKeepingRedirects(api_url))
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    target = folder / saved_name(file)
    partial = target.with_name(target.name + ".part")
    written = 0
    try:
        with opener.open(request, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response, partial.open("wb") as out:
            if "text/html" in (response.headers.get("Content-Type") or ""):
                raise ValueError("Slack answered with a web page (the token lacks files:read?)")
            while chunk := response.read(DOWNLOAD_CHUNK_BYTES):
                written += len(chunk)
                if written > MAX_FILE_BYTES:
                    raise ValueError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
                out.write(chunk)
        partial.replace(target)
    except urllib.error.HTTPError as exc:
        raise ValueError(f"HTTP {exc.code} from {urlsplit(url).hostname}") from None
    except urllib.error.URLError as exc:
        raise OSError(f"cannot reach {urlsplit(url).hostname}: {exc.reason}") from None
    finally:
        partial.unlink(missing_ok=True)
    return target


def save_files(messages: list[dict[str, Any]], folder: Path, token: str, api_url: str | None) -> list[str]:
    """Download every file of the thread; returns one problem line per file not saved."""
    problems = []
    for message in messages:
        for file in message.get("files") or []:
            label = file.get("name") or file.get("id") or "a file"
            try:
                target = download_file(file, folder, token, api_url)
            except (ValueError, OSError) as exc:
                problems.append(f"could not save {label}: {exc}")
            else:
                print(f"saved {label} to {target}", file=sys.stderr)
    return problems


def cmd_thread(args: argparse.Namespace) -> int:
    from bot.cli import CliError, _settings, _with_database
    from bot.slack.gateway import SlackError, SlackGateway, make_web_client
    from bot.slack.text_view import thread_text

    incident_id = _incident_id(args.incident)
    settings = _settings()
    if not settings.slack_bot_token:
        raise CliError(NO_SLACK, code=2)
    folder = Path(args.files) if args.files else None
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CliError(f"cannot create {folder}: {exc.strerror}", code=2) from None
    root = _with_database(lambda factory: thread_root(factory, incident_id))
    if root is None:
        raise CliError(f"no incident INC-{incident_id}", code=2)
    channel, ts = root
    if not ts:
        raise CliError(f"INC-{incident_id} has no Slack thread: its card was never posted")
    gateway = SlackGateway(make_web_client(settings.slack_bot_token, settings.slack_api_url))
    try:
        messages = read_thread(gateway, channel, ts)
    except SlackError as exc:
        raise CliError(f"cannot read the thread of INC-{incident_id} from Slack ({exc})") from None
    print(thread_text(messages))
    if folder is None:
        return 0
    problems = save_files(messages, folder, settings.slack_bot_token, settings.slack_api_url)
    for problem in problems:
        print(f"opsbot: {problem}", file=sys.stderr)
    return 1 if problems else 0


# -- the parsers --------------------------------------------------------------------------------------
def add_parsers(commands) -> None:
    """`incidents` (listing by default, `similar` as a subcommand), `thread` and `timeline`."""
    incidents = commands.add_parser("incidents", help="incidents: the newest ones, or past ones like a given one")
    incidents.add_argument("--open", action="store_true", help="only incidents still open")
    incidents.add_argument("--limit", dest="list_limit", type=int, default=DEFAULT_LIST_LIMIT,
                           help=f"how many, newest first (default {DEFAULT_LIST_LIMIT})")
    incidents.set_defaults(func=cmd_incidents_list)
    incident_commands = incidents.add_subparsers(dest="incidents_command", metavar="ACTION", required=False)
    alike = incident_commands.add_parser("similar", help="past incidents most like INC-N, with why (hypotheses)")
    alike.add_argument("incident", metavar="INC-N")
    alike.add_argument("--json", action="store_true", help="print JSON")
    alike.add_argument("--limit", type=int, default=3, help=f"how many (default 3, at most {SIMILAR_MAX_LIMIT})")
    alike.set_defaults(func=cmd_incidents_similar)

    thread = commands.add_parser("thread", help="an incident's Slack thread as text (read from Slack)")
    thread.add_argument("incident", metavar="INC-N")
    thread.add_argument("--files", metavar="DIR", help="also save the thread's files into DIR")
    thread.set_defaults(func=cmd_thread)

    timeline = commands.add_parser("timeline", help="an incident's timeline (the audit log), oldest first")
    timeline.add_argument("incident", metavar="INC-N")
    timeline.add_argument("--json", action="store_true", help="print JSON")
    timeline.set_defaults(func=cmd_timeline)
