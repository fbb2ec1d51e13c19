"""Label and field selectors, as the API server parses and applies them.

- `parse_label_selector("app=web,tier!=db,env in (a,b),!legacy")` understands `=`, `==`, `!=`,
  `in`, `notin`, `key` (exists) and `!key`; a malformed selector raises `ApiError` 400.
- `match_label_selector(spec, labels)` applies a `metav1.LabelSelector` object (matchLabels and
  matchExpressions) as controllers and PodDisruptionBudgets do; an empty selector matches
  everything, a missing one (None) matches nothing.
- `parse_field_selector` accepts only the field labels a real API server supports for the kind
  (plus `metadata.name`/`metadata.namespace` everywhere), so a query that would fail against a
  real cluster fails here too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from bot.sandbox.kube.errors import bad_request

_KEY_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_SET_RE = re.compile(r"^\s*(?P<key>[^\s!=(),]+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)\s*$")


@dataclass(frozen=True)
class Requirement:
    """One label requirement: `op` is one of `=`, `!=`, `in`, `notin`, `exists`, `!exists`."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        # `!=` and `notin` match objects without the label, as in Kubernetes.
        return not present or value not in self.values


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _check_key(key: str, selector: str) -> str:
    if not _KEY_RE.match(key):
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in selector {selector!r}")
    return key


def parse_label_selector(selector: str | None) -> tuple[Requirement, ...]:
    """Parse a label selector string; an empty or missing one selects everything."""
    if not selector or not selector.strip():
        return ()
    requirements: list[Requirement] = []
    for raw in _split_top_level(selector):
        part = raw.strip()
        if not part:
            raise bad_request(f"found '', expected: identifier in label selector {selector!r}")
        set_match = _SET_RE.match(part)
        if set_match:
            values = tuple(v.strip() for v in set_match.group("values").split(",") if v.strip())
            key = _check_key(set_match.group("key"), selector)
            requirements.append(Requirement(key, set_match.group("op"), values))
        elif "!=" in part:
            key, _, value = part.partition("!=")
            requirements.append(Requirement(_check_key(key.strip(), selector), "!=", (value.strip(),)))
        elif "==" in part:
            key, _, value = part.partition("==")
            requirements.append(Requirement(_check_key(key.strip(), selector), "=", (value.strip(),)))
        elif "=" in part:
            key, _, value = part.partition("=")
            requirements.append(Requirement(_check_key(key.strip(), selector), "=", (value.strip(),)))
        elif part.startswith("!"):
            requirements.append(Requirement(_check_key(part[1:].strip(), selector), "!exists"))
        else:
            requirements.append(Requirement(_check_key(part, selector), "exists"))
    return tuple(requirements)


def labels_match(requirements: tuple[Requirement, ...], labels: Mapping[str, str] | None) -> bool:
    """True when every requirement holds for the labels."""
    actual = labels or {}
    return all(req.matches(actual) for req in requirements)


def match_label_selector(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """Apply a `metav1.LabelSelector` object: None matches nothing, `{}` matches everything."""
    if selector is None:
        return False
    actual = labels or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if actual.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        op = expression.get("operator")
        key = expression.get("key", "")
        values = tuple(expression.get("values") or ())
        mapped = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}.get(op or "")
        if mapped is None or not Requirement(key, mapped, values).matches(actual):
            return False
    return True


def selector_to_string(selector: Mapping[str, Any] | None) -> str:
    """Render a `metav1.LabelSelector` as the string form (`Scale.status.selector` uses it)."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, op = expression.get("key", ""), expression.get("operator")
        values = ",".join(sorted(expression.get("values") or []))
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


# Field selectors ---------------------------------------------------------------------------------


def _path(dotted: str) -> Callable[[Mapping[str, Any]], str]:
    keys = dotted.split(".")

    def get(obj: Mapping[str, Any]) -> str:
        value: Any = obj
        for key in keys:
            if not isinstance(value, Mapping):
                return ""
            value = value.get(key)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return get


_COMMON_FIELDS = ("metadata.name", "metadata.namespace")

# Supported field labels per kind, as the real API server's field label conversion functions.
_KIND_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Pod": (
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ),
        "Event": (
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
        "Node": ("spec.unschedulable",),
        "Secret": ("type",),
        "Namespace": ("status.phase",),
        "ReplicaSet": ("status.replicas",),
        "ReplicationController": ("status.replicas",),
        "Job": ("status.successful",),
        "CertificateSigningRequest": ("spec.signerName",),
    }
)

_SPECIAL_GETTERS: Mapping[tuple[str, str], Callable[[Mapping[str, Any]], str]] = MappingProxyType(
    {
        ("Event", "source"): _path("source.component"),
        ("Pod", "spec.hostNetwork"): lambda o: (
            "true" if (o.get("spec") or {}).get("hostNetwork") else "false"
        ),
        ("Node", "spec.unschedulable"): lambda o: (
            "true" if (o.get("spec") or {}).get("unschedulable") else "false"
        ),
    }
)


@dataclass(frozen=True)
class FieldRequirement:
    """One field requirement: `field` `=`/`!=` `value`."""

    field: str
    negate: bool
    value: str
    getter: Callable[[Mapping[str, Any]], str]

    def matches(self, obj: Mapping[str, Any]) -> bool:
        equal = self.getter(obj) == self.value
        return not equal if self.negate else equal


def parse_field_selector(selector: str | None, kind: str) -> tuple[FieldRequirement, ...]:
    """Parse a field selector for objects of `kind`; unsupported fields raise `ApiError` 400."""
    if not selector or not selector.strip():
        return ()
    allowed = _COMMON_FIELDS + _KIND_FIELDS.get(kind, ())
    requirements: list[FieldRequirement] = []
    for raw in selector.split(","):
        part = raw.strip()
        if "!=" in part:
            field, _, value = part.partition("!=")
            negate = True
        elif "==" in part:
            field, _, value = part.partition("==")
            negate = False
        elif "=" in part:
            field, _, value = part.partition("=")
            negate = False
        else:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{part}'")
        field = field.strip()
        if field not in allowed:
            raise bad_request(f"field label not supported: {field}")
        getter = _SPECIAL_GETTERS.get((kind, field)) or _path(field)
        requirements.append(FieldRequirement(field, negate, value.strip(), getter))
    return tuple(requirements)


def fields_match(requirements: tuple[FieldRequirement, ...], obj: Mapping[str, Any]) -> bool:
    return all(req.matches(obj) for req in requirements)
