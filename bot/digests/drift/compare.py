"""Normalising and diffing a declared object against its live counterpart. Pure.

The manifest is a declared subset of the live object: only the fields the manifest writes are
compared. Everything the cluster fills in (status, server-side metadata, defaults such as a
Deployment's `strategy`, a container's `terminationMessagePath` or `imagePullPolicy`, a port's
`protocol: TCP`) is absent from the manifest and so is never drift.

Invariants:
- A field absent from the manifest is never drift; a declared empty value (`null`, `{}`, `[]`,
  `""`) matches an absent live field.
- Quantities under resource-like keys compare by value (`500m` == `0.5`, `1Gi` == `1024Mi`);
  numbers compare by value (`1` == `1.0`); nothing else is coerced (`"1k"` in an env var is text).
- Lists of named things (containers, env, volumes, ports...) are matched by their merge key, as
  the API server merges them, so order does not matter and a diff names the item
  (`containers[web].image`). For the lists in `EXTRA_ITEMS_REPORTED`, a live item the manifest
  does not declare is drift too (an env var added by hand). Other lists compare as a whole, or
  element by element when both hold the same number of mappings.
- A path is ignored when it equals an ignore pattern or lies below it; `[*]` in a pattern stands
  for any list item.
- Values shown to a person go through `shown_value`: env values only when plainly not secret,
  every text through `bot.redaction.redact`, long values cut.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.context.kube_facts import parse_quantity
from bot.redaction import MASK, redact, shown_setting

# Merge keys of the lists of named things, by field name (the first key every item carries wins).
LIST_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",),
    "env": ("name",), "volumes": ("name",), "volumeMounts": ("mountPath",), "volumeDevices": ("devicePath",),
    "ports": ("containerPort", "port"), "imagePullSecrets": ("name",), "hostAliases": ("ip",),
    "topologySpreadConstraints": ("topologyKey",), "conditions": ("type",), "subjects": ("name",),
}
# Keyed lists where a live item the manifest does not declare is drift.
EXTRA_ITEMS_REPORTED = frozenset({"env", "containers", "initContainers"})
# A scalar is a quantity when its parent key is one of these, or its own key is in the second set.
QUANTITY_PARENT_KEYS = frozenset({"requests", "limits", "hard", "capacity", "default", "defaultRequest",
                                  "max", "min", "maxLimitRequestRatio"})
QUANTITY_LEAF_KEYS = frozenset({"sizeLimit", "storage"})
# Top-level fields that identify an object rather than describe it.
IDENTITY_PATHS = ("apiVersion", "kind", "metadata.name", "metadata.namespace")
MAX_SHOWN_CHARS = 160
EMPTY_VALUES: tuple[Any, ...] = (None, {}, [], "")
ABSENT_TEXT = "absent"
PRESENT_TEXT = "present"


@dataclass(frozen=True)
class Item:
    """A path segment naming one element of a keyed list: `containers[web]` is Item("name", "web")."""

    key: str
    value: Any


Segment = str | Item | int
Path = tuple[Segment, ...]


@dataclass(frozen=True)
class FieldDiff:
    """One declared field whose live value differs. `live_present` is False when the live
    object lacks the field; `declared_present` is False for a live item the manifest lacks."""

    path: Path
    declared: Any
    live: Any
    live_present: bool = True
    declared_present: bool = True

    @property
    def display(self) -> str:
        return display_path(self.path)

    @property
    def category(self) -> str:
        return category_of(self.path)


def display_path(path: Sequence[Segment]) -> str:
    text = ""
    for segment in path:
        if isinstance(segment, Item):
            text += f"[{segment.value}]"
        elif isinstance(segment, int):
            text += f"[{segment}]"
        else:
            text += f".{segment}" if text else segment
    return text


def category_of(path: Sequence[Segment]) -> str:
    """What kind of difference a path is: image, replicas, resources, env, label, annotation, other."""
    names = [s for s in path if isinstance(s, str)]
    if names and names[-1] == "image":
        return "image"
    if tuple(names) == ("spec", "replicas"):
        return "replicas"
    if "resources" in names:
        return "resources"
    if "env" in names or "envFrom" in names:
        return "env"
    if "labels" in names and "metadata" in names:
        return "label"
    if "annotations" in names and "metadata" in names:
        return "annotation"
    return "other"


def _pattern(ignore: str) -> re.Pattern[str]:
    body = re.escape(ignore).replace(re.escape("[*]"), r"\[[^\]]*\]")
    return re.compile(rf"{body}(?:$|[.\[])")


class IgnoreRules:
    """Dotted paths (`status`, `metadata.annotations.deployment.kubernetes.io/revision`,
    `spec.template.spec.containers[*].imagePullPolicy`) that are never compared."""

    def __init__(self, patterns: Iterable[str]):
        self._patterns = [_pattern(p) for p in (*IDENTITY_PATHS, *patterns) if p]

    def ignored(self, path: Sequence[Segment]) -> bool:
        text = display_path(path)
        return any(p.match(text) for p in self._patterns)


def _is_quantity_path(path: Sequence[Segment]) -> bool:
    names = [s for s in path if isinstance(s, str)]
    if not names:
        return False
    return names[-1] in QUANTITY_LEAF_KEYS or (len(names) > 1 and names[-2] in QUANTITY_PARENT_KEYS)


def scalars_equal(declared: Any, live: Any, path: Sequence[Segment]) -> bool:
    if declared == live and type(declared) is type(live):
        return True
    numbers = (int, float)
    if isinstance(declared, numbers) and isinstance(live, numbers) and not isinstance(declared, bool) \
            and not isinstance(live, bool):
        return math.isclose(float(declared), float(live), rel_tol=1e-9)
    scalar = (str, *numbers)
    if _is_quantity_path(path) and isinstance(declared, scalar) and isinstance(live, scalar):
        a, b = parse_quantity(str(declared)), parse_quantity(str(live))
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return False


def _merge_key(field_name: Any, declared: list[Any], live: list[Any]) -> str | None:
    if not isinstance(field_name, str) or field_name not in LIST_MERGE_KEYS:
        return None
    if not all(isinstance(i, dict) for i in (*declared, *live)):
        return None
    return next((k for k in LIST_MERGE_KEYS[field_name] if all(k in i for i in declared)), None)


class Differ:
    """Walks a declared object against a live one, collecting `FieldDiff`s."""

    def __init__(self, ignore: IgnoreRules):
        self._ignore = ignore
        self.diffs: list[FieldDiff] = []

    def compare(self, declared: Any, live: Any, path: Path = ()) -> None:
        if path and self._ignore.ignored(path):
            return
        if isinstance(declared, dict):
            if not isinstance(live, dict):
                self._absent_or_changed(declared, live, path)
                return
            for key, value in declared.items():
                if key in live:
                    self.compare(value, live[key], (*path, str(key)))
                elif value not in EMPTY_VALUES:
                    self._missing(value, (*path, str(key)))
            return
        if isinstance(declared, list):
            self._compare_list(declared, live, path)
            return
        if not scalars_equal(declared, live, path):
            self.diffs.append(FieldDiff(path, declared, live))

    def _absent_or_changed(self, declared: Any, live: Any, path: Path) -> None:
        if live is None:
            self._missing(declared, path)
        else:
            self.diffs.append(FieldDiff(path, declared, live))

    def _missing(self, declared: Any, path: Path) -> None:
        """A declared value the live object lacks: one diff per declared leaf (so each is
        categorised and attributed on its own), one per keyed-list item."""
        if self._ignore.ignored(path) or declared in EMPTY_VALUES:
            return
        if isinstance(declared, dict):
            for key, value in declared.items():
                self._missing(value, (*path, str(key)))
            return
        self.diffs.append(FieldDiff(path, declared, None, live_present=False))

    def _compare_list(self, declared: list[Any], live: Any, path: Path) -> None:
        field_name = path[-1] if path else None
        if live is None and field_name in LIST_MERGE_KEYS:
            live = []  # each declared item is then reported on its own (and env values masked)
        if not isinstance(live, list):
            if declared:
                self._absent_or_changed(declared, live, path)
            return
        key = _merge_key(field_name, declared, live)
        if key is not None:
            live_items = {json.dumps(i.get(key), sort_keys=True, default=str): i for i in live}
            declared_ids = set()
            for item in declared:
                identity = json.dumps(item.get(key), sort_keys=True, default=str)
                declared_ids.add(identity)
                step = (*path, Item(key, item.get(key)))
                if identity in live_items:
                    self.compare(item, live_items[identity], step)
                elif not self._ignore.ignored(step):
                    self.diffs.append(FieldDiff(step, item, None, live_present=False))
            if field_name in EXTRA_ITEMS_REPORTED:
                for identity, item in live_items.items():
                    step = (*path, Item(key, item.get(key)))
                    if identity not in declared_ids and not self._ignore.ignored(step):
                        self.diffs.append(FieldDiff(step, None, item, declared_present=False))
            return
        if len(declared) == len(live) and all(isinstance(i, dict) for i in (*declared, *live)):
            for index, (a, b) in enumerate(zip(declared, live, strict=True)):
                self.compare(a, b, (*path, index))
            return
        if len(declared) != len(live) or not all(
                scalars_equal(a, b, path) if not isinstance(a, (dict, list)) else a == b
                for a, b in zip(declared, live, strict=True)):
            self.diffs.append(FieldDiff(path, declared, live))


def diff_objects(declared: dict[str, Any], live: dict[str, Any], ignore: IgnoreRules) -> list[FieldDiff]:
    """Every declared field of `declared` that differs in `live`, in manifest order."""
    differ = Differ(ignore)
    differ.compare(declared, live)
    return differ.diffs


def _env_name(path: Sequence[Segment]) -> str | None:
    for before, segment in zip(path, path[1:], strict=False):
        if before == "env" and isinstance(segment, Item):
            return str(segment.value)
    return None


def _cut(text: str) -> str:
    return text if len(text) <= MAX_SHOWN_CHARS else text[: MAX_SHOWN_CHARS - 1] + "…"


def shown_value(path: Sequence[Segment], value: Any, present: bool = True) -> str:
    """A value as the digest may print it: env values masked unless plainly not secret, a
    valueFrom shown as its reference, everything redacted and cut to `MAX_SHOWN_CHARS`."""
    if not present:
        return ABSENT_TEXT
    env_name = _env_name(path)
    if "valueFrom" in path:  # a reference (secretKeyRef orders-db/dsn) is not secret
        env_name = None
    elif env_name is None and path and isinstance(path[-1], Item) and isinstance(value, dict):
        return PRESENT_TEXT  # a whole container or volume: its content may hold anything
    if env_name is not None:
        if isinstance(value, dict) and "name" in value:  # a whole env item
            value = {k: v for k, v in value.items() if k != "name"}
            value = value.get("value", value.get("valueFrom", value))
        if isinstance(value, dict):
            return _cut(redact(json.dumps(value, sort_keys=True, separators=(",", ":"))))
        text = "" if value is None else str(value)
        return text if text == "" or shown_setting(env_name, text) else MASK
    if isinstance(value, (dict, list)):
        return _cut(redact(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)))
    return _cut(redact(str(value)))
