"""Argument checking against Slack's published OpenAPI (swagger 2.0) description of the Web API.

For each method the emulator looks up `/<method>` in the spec and checks the call's
arguments: every `required: true` parameter present (the `token` parameter excepted: tokens
travel in the `Authorization` header), no parameter the method does not have, and booleans
and integers that parse. Failures answer `invalid_arguments` with Slack-style messages
(`[ERROR] missing required field: channel`).

The published spec is old. Where it lags the real API, the differences are listed
explicitly below, each with the reason; nothing else is relaxed:

* `METHODS_MISSING_FROM_SPEC`: `files.getUploadURLExternal` and `files.completeUploadExternal`
  (the upload flow slack_sdk's `files_upload_v2` uses) are absent from the spec.
* `PARAMS_MISSING_FROM_SPEC`: parameters the real API has and slack_sdk 3.47 sends by name
  (`metadata`, `markdown_text`, `include_all_metadata`, `interactivity_pointer`, ...).
* `REQUIRED_IN_REAL_API`: parameters the spec marks optional but Slack rejects calls without
  (`conversations.replies` needs `channel` and `ts`, ...).
* `team_id` is accepted on every method: slack_sdk adds it to every call of a
  `WebClient(team_id=...)`, which is how Bolt builds the client it hands to listeners.
* `ONE_OF_REQUIRED`: alternatives: `views.open` takes `trigger_id` *or*
  `interactivity_pointer` (the spec requires `trigger_id`), `views.update` needs `view_id` or
  `external_id`.

The spec also says which methods accept JSON bodies (`consumes`). Slack ignores a JSON body
sent to a form-only method (the read methods: `users.info`, `conversations.history`, ...), so
the emulator does the same and says why in a `[WARN]` message.

The catalog is immutable once built and is loaded per emulator instance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its swagger `type` and whether a call must carry it."""

    name: str
    type: str = "string"
    required: bool = False
    source: str = "openapi"


@dataclass(frozen=True)
class MethodSpec:
    """What a method accepts. `params` is read-only; `one_of` lists groups of which at least
    one member must be present."""

    name: str
    params: Mapping[str, ParamSpec]
    accepts_json: bool = True
    one_of: tuple[tuple[str, ...], ...] = ()
    source: str = "openapi"


def _p(name: str, type_: str = "string", required: bool = False) -> ParamSpec:
    return ParamSpec(name, type_, required, source="allow-list")


METHODS_MISSING_FROM_SPEC: Mapping[str, tuple[ParamSpec, ...]] = MappingProxyType({
    # https://docs.slack.dev/reference/methods/files.getUploadURLExternal (2024 upload flow)
    "files.getUploadURLExternal": (
        _p("filename", required=True), _p("length", "integer", required=True),
        _p("alt_txt"), _p("snippet_type"),
    ),
    # https://docs.slack.dev/reference/methods/files.completeUploadExternal
    "files.completeUploadExternal": (
        _p("files", required=True), _p("channel_id"), _p("channels"), _p("initial_comment"),
        _p("thread_ts"), _p("blocks"),
    ),
})

PARAMS_MISSING_FROM_SPEC: Mapping[str, tuple[ParamSpec, ...]] = MappingProxyType({
    "chat.postMessage": (_p("metadata"), _p("markdown_text"), _p("container_id")),
    "chat.update": (_p("metadata"), _p("markdown_text"), _p("file_ids"), _p("reply_broadcast", "boolean")),
    "chat.postEphemeral": (_p("markdown_text"),),
    "conversations.history": (_p("include_all_metadata", "boolean"),),
    "conversations.replies": (_p("include_all_metadata", "boolean"),),
    "views.open": (_p("interactivity_pointer"),),
})

REQUIRED_IN_REAL_API: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "chat.delete": ("channel", "ts"),
    "conversations.history": ("channel",),
    "conversations.info": ("channel",),
    "conversations.join": ("channel",),
    "conversations.replies": ("channel", "ts"),
    "users.info": ("user",),
    "views.update": ("view",),
})

ONE_OF_REQUIRED: Mapping[str, tuple[tuple[str, ...], ...]] = MappingProxyType({
    "views.open": (("trigger_id", "interactivity_pointer"),),
    "views.update": (("view_id", "external_id"),),
})

# Accepted on every method: `token` (legacy form-body token) and `team_id`, which slack_sdk's
# `WebClient(team_id=...)` adds to every call as a default parameter; Bolt builds its per-request
# client that way, so every call a Bolt listener makes carries it. Slack accepts it everywhere.
_ALWAYS_ALLOWED = frozenset({"token", "team_id"})
_BOOL_STRINGS = frozenset({"true", "false", "1", "0"})
_INT_RE = re.compile(r"^-?\d+$")


@dataclass(frozen=True)
class ArgumentCheck:
    """The outcome of checking one call. `messages` are Slack-style `[ERROR]`/`[WARN]` lines;
    `errors` counts the `[ERROR]` ones (the call fails when it is non-zero)."""

    messages: tuple[str, ...] = ()
    json_ignored: bool = False
    errors: int = 0

    @property
    def ok(self) -> bool:
        return self.errors == 0


@dataclass(frozen=True)
class ApiCatalog:
    """The methods the emulator knows the arguments of. Immutable once built."""

    methods: Mapping[str, MethodSpec] = field(default_factory=lambda: MappingProxyType({}))
    spec_path: Path | None = None

    @classmethod
    def from_openapi(cls, path: Path | None) -> ApiCatalog:
        """Build the catalog from the swagger file plus the documented additions. With no
        spec (`path` None) only the two methods missing from the spec are checked."""
        methods: dict[str, MethodSpec] = {}
        if path is not None:
            spec = json.loads(Path(path).read_text(encoding="utf-8"))
            for route, operations in spec.get("paths", {}).items():
                name = route.lstrip("/")
                params: dict[str, ParamSpec] = {}
                consumes: set[str] = set()
                for op in operations.values():
                    if not isinstance(op, dict):
                        continue
                    consumes.update(op.get("consumes") or [])
                    for raw in op.get("parameters") or []:
                        pname = raw.get("name")
                        if not pname or pname in _ALWAYS_ALLOWED:
                            continue
                        params[pname] = ParamSpec(pname, str(raw.get("type", "string")), bool(raw.get("required")))
                accepts_json = not consumes or "application/json" in consumes
                methods[name] = MethodSpec(name, params, accepts_json)
        for name, extra in METHODS_MISSING_FROM_SPEC.items():
            if name not in methods:
                methods[name] = MethodSpec(name, {p.name: p for p in extra}, True, source="allow-list")
        for name, extra in PARAMS_MISSING_FROM_SPEC.items():
            base = methods.get(name)
            if base is None:
                continue
            merged = dict(base.params)
            for p in extra:
                merged.setdefault(p.name, p)
            methods[name] = MethodSpec(name, merged, base.accepts_json, base.one_of, base.source)
        for name, required in REQUIRED_IN_REAL_API.items():
            base = methods.get(name)
            if base is None:
                continue
            merged = dict(base.params)
            for pname in required:
                old = merged.get(pname, ParamSpec(pname, source="allow-list"))
                merged[pname] = ParamSpec(pname, old.type, True, old.source)
            methods[name] = MethodSpec(name, merged, base.accepts_json, base.one_of, base.source)
        for name, groups in ONE_OF_REQUIRED.items():
            base = methods.get(name)
            if base is None:
                continue
            merged = dict(base.params)
            for group in groups:  # members of a one-of group are individually optional
                for pname in group:
                    old = merged.get(pname, ParamSpec(pname, source="allow-list"))
                    merged[pname] = ParamSpec(pname, old.type, False, old.source)
            methods[name] = MethodSpec(name, merged, base.accepts_json, groups, base.source)
        frozen = {n: MethodSpec(m.name, MappingProxyType(dict(m.params)), m.accepts_json, m.one_of, m.source)
                  for n, m in methods.items()}
        return cls(MappingProxyType(frozen), path)

    def get(self, method: str) -> MethodSpec | None:
        return self.methods.get(method)

    def check(self, method: str, args: Mapping[str, Any], *, json_body: bool) -> ArgumentCheck:
        """Check `args` (already merged from query string and body) for `method`.

        With a JSON body on a form-only method the body's arguments count as absent (Slack
        ignores them), which usually surfaces as a missing required field.
        """
        spec = self.methods.get(method)
        if spec is None:
            return ArgumentCheck()
        messages: list[str] = []
        errors = 0
        json_ignored = json_body and not spec.accepts_json
        present = {} if json_ignored else {k: v for k, v in args.items() if k not in _ALWAYS_ALLOWED}
        if json_ignored:
            messages.append(f"[WARN] {method} does not accept application/json bodies; the arguments "
                            "were ignored. Send them form-encoded (application/x-www-form-urlencoded).")
        for pname, param in spec.params.items():
            if param.required and pname not in present:
                messages.append(f"[ERROR] missing required field: {pname}")
                errors += 1
        for group in spec.one_of:
            if not any(p in present for p in group):
                messages.append(f"[ERROR] missing required field: one of {', '.join(group)}")
                errors += 1
        unknown = sorted(k for k in present if k not in spec.params)
        for pname in unknown:
            messages.append(f"[ERROR] unknown field: {pname} ({method} has no such argument "
                            "in Slack's API description)")
            errors += 1
        for pname, value in present.items():
            param = spec.params.get(pname)
            if param is None:
                continue
            problem = _type_problem(param.type, value)
            if problem:
                messages.append(f"[ERROR] invalid value for field {pname}: {problem}")
                errors += 1
        return ArgumentCheck(tuple(messages), json_ignored, errors)


def _type_problem(type_: str, value: Any) -> str | None:
    """Why `value` does not fit the swagger `type_`, or None. Strings are not checked: Slack
    takes JSON-encoded arrays and objects (`blocks`, `view`) as "string" arguments."""
    if type_ == "boolean":
        if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
            return None
        if isinstance(value, str) and value.lower() in _BOOL_STRINGS:
            return None
        return f"expected boolean, got {value!r}"
    if type_ == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        if isinstance(value, str) and _INT_RE.match(value):
            return None
        return f"expected integer, got {value!r}"
    if type_ == "number":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return None
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                return f"expected number, got {value!r}"
            return None
        return f"expected number, got {value!r}"
    return None
