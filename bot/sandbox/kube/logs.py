"""Container logs of the sandbox: storage and the `pods/log` options of the real API server.

Log lines are text and keep their own timestamps. For `sinceSeconds`, `sinceTime` and
`timestamps=true` each line's time is read from the line itself (an RFC 3339 time at its start
or in a `ts`/`time`/`timestamp` JSON field, or a klog header); a line without one inherits the
time of the line before it (the first timed line, for leading untimed lines). When no line has
a time, the container's start time stands in, and time filters keep every line.

Errors mirror the kubelet and API server: a wrong or missing container name, a missing previous
instance, or a container still waiting to start answer 400 with the real messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from bot.sandbox.kube.errors import ApiError, bad_request
from bot.sandbox.kube.store import parse_time

LogKey = tuple[str, str, str, bool]  # namespace, pod, container, previous

_ISO_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
_KLOG_RE = re.compile(r"^[IWEF](\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?")
_JSON_TIME_KEYS = ("ts", "time", "timestamp", "@timestamp", "t")
_NOT_STARTED_MESSAGES: Mapping[str, str] = MappingProxyType(
    {
        "ErrImagePull": "image can't be pulled",
        "ImagePullBackOff": "trying and failing to pull image",
        "InvalidImageName": "image can't be pulled",
    }
)


@dataclass(frozen=True)
class LogOptions:
    """The query options of `GET .../pods/{name}/log` the sandbox honours."""

    container: str | None = None
    previous: bool = False
    tail_lines: int | None = None
    since_seconds: int | None = None
    since_time: datetime | None = None
    timestamps: bool = False
    limit_bytes: int | None = None


def _parse_iso(text: str) -> datetime | None:
    return parse_time(text.replace(" ", "T", 1) if len(text) > 10 and text[10] == " " else text)


def line_time(line: str, year: int) -> datetime | None:
    """The time a log line states about itself, or None."""
    stripped = line.lstrip()
    if stripped.startswith("{"):
        try:
            record = json.loads(stripped)
        except ValueError:
            record = None
        if isinstance(record, dict):
            for key in _JSON_TIME_KEYS:
                value = record.get(key)
                if isinstance(value, str) and (parsed := _parse_iso(value)):
                    return parsed
                if isinstance(value, int | float) and not isinstance(value, bool) and value > 1e9:
                    return datetime.fromtimestamp(value / 1000 if value > 1e12 else value, UTC)
    klog = _KLOG_RE.match(stripped)
    if klog:
        month, day, hour, minute, second, fraction = klog.groups()
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        try:
            return datetime(year, int(month), int(day), int(hour), int(minute), int(second), micro, UTC)
        except ValueError:
            return None
    match = _ISO_RE.search(stripped[:80])
    return _parse_iso(match.group(0)) if match else None


def _format_nano(moment: datetime) -> str:
    """RFC 3339 with nine fraction digits, as the kubelet prefixes lines for `timestamps=true`."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}000Z"


class LogStore:
    """Lines per (namespace, pod, container, previous). The cluster lock guards it."""

    def __init__(self) -> None:
        self._lines: dict[LogKey, list[str]] = {}

    def put(self, namespace: str, pod: str, container: str, previous: bool, lines: list[str]) -> None:
        self._lines[(namespace, pod, container, previous)] = [str(line) for line in lines]

    def snapshot(self) -> dict[LogKey, list[str]]:
        return {key: list(lines) for key, lines in self._lines.items()}

    def restore(self, state: dict[LogKey, list[str]]) -> None:
        self._lines = {key: list(lines) for key, lines in state.items()}

    def forget_pod(self, namespace: str, pod: str) -> None:
        for key in [k for k in self._lines if k[0] == namespace and k[1] == pod]:
            del self._lines[key]

    def get(self, namespace: str, pod: str, container: str, previous: bool) -> list[str] | None:
        return self._lines.get((namespace, pod, container, previous))


def container_names(pod: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    spec = pod.get("spec") or {}
    containers = [c.get("name", "") for c in spec.get("containers") or []]
    init = [c.get("name", "") for c in spec.get("initContainers") or []] + [
        c.get("name", "") for c in spec.get("ephemeralContainers") or []
    ]
    return containers, init


def resolve_container(pod: Mapping[str, Any], container: str | None) -> str:
    """The container a log request means, or the API server's 400 for a missing/invalid name."""
    name = (pod.get("metadata") or {}).get("name", "")
    containers, init = container_names(pod)
    if not container:
        if len(containers) == 1:
            return containers[0]
        message = (
            f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
        )
        if init:
            message += f" or one of the init containers: [{' '.join(init)}]"
        raise bad_request(message)
    if container not in containers and container not in init:
        raise bad_request(f"container {container} is not valid for pod {name}")
    return container


def _container_status(pod: Mapping[str, Any], container: str) -> Mapping[str, Any]:
    status = pod.get("status") or {}
    for field in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in status.get(field) or []:
            if cs.get("name") == container:
                return cs
    return {}


def read_log(store: LogStore, pod: Mapping[str, Any], options: LogOptions, now: datetime) -> str:
    """The text `kubectl logs` would print for this pod and these options."""
    meta = pod.get("metadata") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    container = resolve_container(pod, options.container)
    lines = store.get(namespace, name, container, options.previous)
    cs = _container_status(pod, container)
    if lines is None:
        if options.previous:
            raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        if (
            not (pod.get("spec") or {}).get("nodeName")
            and (pod.get("status") or {}).get("phase") == "Pending"
        ):
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
            )
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason and reason != "CrashLoopBackOff":
            detail = _NOT_STARTED_MESSAGES.get(reason, reason)
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {detail}')
        lines = []
    return _render(lines, options, now, _start_time(pod, cs, options.previous))


def _start_time(pod: Mapping[str, Any], cs: Mapping[str, Any], previous: bool) -> datetime | None:
    state = (cs.get("lastState") if previous else cs.get("state")) or {}
    for detail in state.values():
        if isinstance(detail, Mapping) and (started := parse_time(detail.get("startedAt"))):
            return started
    return parse_time((pod.get("status") or {}).get("startTime"))


def _render(lines: list[str], options: LogOptions, now: datetime, fallback: datetime | None) -> str:
    own = [line_time(line, now.year) for line in lines]
    times = _inherit_times(own, fallback or now)
    selected = list(zip(lines, times, strict=True))
    cutoff = options.since_time
    if options.since_seconds is not None:
        by_seconds = now - timedelta(seconds=options.since_seconds)
        cutoff = by_seconds if cutoff is None else max(cutoff, by_seconds)
    if cutoff is not None and any(t is not None for t in own):
        selected = [(line, t) for line, t in selected if t >= cutoff]
    if options.tail_lines is not None:
        selected = selected[-options.tail_lines :] if options.tail_lines > 0 else []
    text = "".join(
        f"{_format_nano(t)} {line}\n" if options.timestamps else f"{line}\n" for line, t in selected
    )
    if options.limit_bytes is not None:
        text = text.encode()[: options.limit_bytes].decode(errors="ignore")
    return text


def _inherit_times(own: list[datetime | None], fallback: datetime) -> list[datetime]:
    """Each line's own time, inherited forward; leading untimed lines take the first known time."""
    current = next((t for t in own if t is not None), fallback)
    result: list[datetime] = []
    for moment in own:
        if moment is not None:
            current = moment
        result.append(current)
    return result


def parse_log_options(query: Mapping[str, str]) -> LogOptions:
    """Read the log options from a request's query parameters (400 on malformed numbers)."""

    def integer(key: str) -> int | None:
        value = query.get(key)
        if value is None or value == "":
            return None
        try:
            number = int(value)
        except ValueError as exc:
            raise bad_request(f"invalid value for {key}: {value!r}") from exc
        if number < 0 and key != "tailLines":
            raise ApiError(422, "Invalid", f"{key}: Invalid value: {number}: must be greater than 0")
        return number

    since_time = None
    if query.get("sinceTime"):
        since_time = parse_time(query["sinceTime"])
        if since_time is None:
            raise bad_request(f"invalid value for sinceTime: {query['sinceTime']!r}")
    tail = integer("tailLines")
    return LogOptions(
        container=query.get("container") or None,
        previous=query.get("previous", "false").lower() == "true",
        tail_lines=None if tail is None or tail < 0 else tail,
        since_seconds=integer("sinceSeconds"),
        since_time=since_time,
        timestamps=query.get("timestamps", "false").lower() == "true",
        limit_bytes=integer("limitBytes"),
    )
