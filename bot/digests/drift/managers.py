"""Who last set a field, read from `metadata.managedFields`. Pure.

Each managedFields entry names a field manager (`kubectl-edit`, `kube-controller-manager`,
`argocd-controller`...), the operation (`Update` or `Apply`), a `time` and the set of fields it
owns as `fieldsV1`: a tree whose keys are `f:<field>` (a map key), `k:{"name":"web"}` (a list
item by its merge key), `v:<json>` (a set member) or `i:<index>`, with `.` meaning the node itself.

Invariants:
- A path is owned by an entry when walking the path through the entry's tree reaches its end,
  or reaches an empty node first (the entry owns that whole subtree atomically).
- When several entries own a path (shared ownership under server-side apply), the most recent
  `time` wins; an entry without a time loses to one with a time.
- Kubernetes records the field manager, the operation and the time, never the user; callers
  must say so instead of naming a person.
- Manual managers and "applied by a tool" managers are declared here as data; GitOps controllers
  come from `bot.context.kube_facts` so the whole bot agrees on them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.context.kube_facts import GITOPS_MANAGERS, gitops_owner, parse_time
from bot.digests.drift.compare import Item, Segment

# Field managers that mean a person ran a command (what each one is, in words).
MANUAL_MANAGERS: dict[str, str] = {
    "kubectl-edit": "kubectl edit",
    "kubectl-client-side-apply": "kubectl apply (client-side)",
    "kubectl-patch": "kubectl patch",
    "kubectl-scale": "kubectl scale",
    "kubectl-set": "kubectl set",
    "kubectl-label": "kubectl label",
    "kubectl-annotate": "kubectl annotate",
    "kubectl-replace": "kubectl replace",
    "kubectl-create": "kubectl create",
    "kubectl-rollout": "kubectl rollout",
    "kubectl": "kubectl apply (server-side)",
    "k9s": "k9s",
    "lens": "Lens",
}
# Field managers of tools that apply manifests from a source (an object they manage was applied).
APPLY_MANAGERS = frozenset({"kubectl", "kubectl-client-side-apply", "kustomize", "kustomize-controller",
                            "helm-controller", "argocd-controller", "argocd-application-controller",
                            *GITOPS_MANAGERS})
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
USER_NOT_RECORDED = "Kubernetes records the field manager, not the user"


@dataclass(frozen=True)
class FieldOwner:
    """The managedFields entry that owns a field."""

    manager: str
    operation: str
    time: datetime | None
    subresource: str | None = None

    @property
    def manual(self) -> bool:
        return self.manager in MANUAL_MANAGERS

    @property
    def gitops(self) -> str | None:
        return GITOPS_MANAGERS.get(self.manager)

    def describe(self) -> str:
        """"field manager kubectl-edit (kubectl edit, Update) at 2024-05-01 09:12 UTC"."""
        what = MANUAL_MANAGERS.get(self.manager) or GITOPS_MANAGERS.get(self.manager)
        subresource = f"/{self.subresource}" if self.subresource else None
        detail = ", ".join(p for p in (what, self.operation, subresource) if p)
        when = f" at {self.time:%Y-%m-%d %H:%M} UTC" if self.time else ""
        return f"field manager {self.manager}" + (f" ({detail})" if detail else "") + when


def _item_matches(child: str, item: Item) -> bool:
    if not child.startswith("k:"):
        return False
    try:
        keys = json.loads(child[2:])
    except ValueError:
        return False
    return isinstance(keys, dict) and keys.get(item.key) == item.value


def _step(node: dict[str, Any], segment: Segment) -> dict[str, Any] | None:
    if isinstance(segment, Item):
        return next((v for k, v in node.items() if _item_matches(k, segment)), None)
    if isinstance(segment, int):
        return node.get(f"i:{segment}")
    return node.get(f"f:{segment}")


def fieldset_owns(fields: Any, path: Sequence[Segment]) -> bool:
    """True when the fieldsV1 tree `fields` covers `path` (see the module invariants)."""
    node = fields
    for segment in path:
        if not isinstance(node, dict):
            return False
        if not node and node is not fields:
            return True  # an empty node owns its subtree atomically
        node = _step(node, segment)
        if node is None:
            return False
    return isinstance(node, dict)


def _entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    entries = ((obj.get("metadata") or {}).get("managedFields")) or []
    return [e for e in entries if isinstance(e, dict)]


def owner_of(obj: dict[str, Any], path: Sequence[Segment]) -> FieldOwner | None:
    """The entry that last set `path` in the live object `obj` (None: no entry owns it, as for
    a field that was removed, or an object without managedFields)."""
    owners = [FieldOwner(str(e.get("manager") or "?"), str(e.get("operation") or ""),
                         parse_time(e.get("time")), e.get("subresource") or None)
              for e in _entries(obj) if fieldset_owns(e.get("fieldsV1"), path)]
    if not owners:
        return None
    return max(owners, key=lambda o: (o.time is not None, o.time or datetime.min))


def looks_applied(obj: dict[str, Any]) -> str | None:
    """Why `obj` looks applied from manifests by a tool (None: it does not)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if LAST_APPLIED_ANNOTATION in annotations:
        return f"annotation {LAST_APPLIED_ANNOTATION}"
    controller = gitops_owner(obj)
    if controller:
        return f"applied by {controller}"
    manager = next((str(e.get("manager")) for e in _entries(obj) if e.get("manager") in APPLY_MANAGERS), None)
    return f"field manager {manager}" if manager else None
