"""NetworkPolicy semantics, as the API documents them, for one connection. Pure.

- A policy selects the pods of its own namespace that its `podSelector` matches (an empty
  selector selects every pod there).
- A pod is isolated for egress (ingress) when at least one selecting policy lists `Egress`
  (`Ingress`) in its policy types; then only what the union of those policies' rules allows
  passes. A pod no policy isolates may connect freely.
- A rule allows a connection when one of its ports matches (no ports: every port) and one of
  its peers matches (no peers: every destination). A `podSelector` peer alone means the
  policy's namespace; a `namespaceSelector` is judged on the namespace's labels when they were
  read, else on the one label every namespace has, `kubernetes.io/metadata.name` (set by the
  API server since 1.21); a selector on other labels of a namespace not read, a named port or
  an `ipBlock` for an in-cluster peer is "maybe".

Answers are three-valued: True (allowed), False (denied), None (cannot tell). A diagnosis
blames a policy only on False.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.context.model import NetworkPolicyView

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Endpoint:
    """One side of a connection: a pod's namespace and labels (an unknown peer has labels None),
    and its namespace's labels when they were read."""

    namespace: str | None
    labels: dict[str, str] | None
    namespace_labels: dict[str, str] | None = None


DNS = Endpoint("kube-system", {"k8s-app": "kube-dns"})
DNS_PORT = 53


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str] | None) -> bool | None:
    """matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist); None when labels are unknown."""
    selector = selector or {}
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return True
    if labels is None:
        return None
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and present and labels[key] in values) \
                or (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def _namespace_matches(selector: dict[str, Any], other: Endpoint) -> bool | None:
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return True
    if other.namespace is None:
        return None
    if other.namespace_labels is not None:
        return selector_matches(selector, {**other.namespace_labels, NAMESPACE_NAME_LABEL: other.namespace})
    if set(selector.get("matchLabels") or {}) - {NAMESPACE_NAME_LABEL} or selector.get("matchExpressions"):
        return None  # other namespace labels were not read
    return selector_matches(selector, {NAMESPACE_NAME_LABEL: other.namespace})


def _all_of(*answers: bool | None) -> bool | None:
    return False if False in answers else (None if None in answers else True)


def _any_of(answers: list[bool | None]) -> bool | None:
    return True if True in answers else (None if None in answers else False)


def _peer_matches(peer: dict[str, Any], policy_namespace: str | None, other: Endpoint) -> bool | None:
    if "ipBlock" in peer:
        return True if (peer["ipBlock"] or {}).get("cidr") in ("0.0.0.0/0", "::/0") \
            and not (peer["ipBlock"] or {}).get("except") else None
    if "namespaceSelector" in peer:
        in_namespace = _namespace_matches(peer.get("namespaceSelector") or {}, other)
    else:
        in_namespace = None if other.namespace is None else other.namespace == policy_namespace
    return _all_of(in_namespace, selector_matches(peer.get("podSelector"), other.labels))


def _port_matches(rule_ports: list[dict[str, Any]], ports: set[int | str]) -> bool | None:
    if not rule_ports:
        return True
    answers: list[bool | None] = []
    for entry in rule_ports:
        port, end = entry.get("port"), entry.get("endPort")
        if port is None:
            answers.append(True)
        elif isinstance(port, int):
            answers.append(any(isinstance(p, int) and port <= p <= (end or port) for p in ports)
                           or (None if any(isinstance(p, str) for p in ports) else False))
        else:
            answers.append(True if port in ports else None)
    return _any_of(answers)


def _selecting(policies: list[NetworkPolicyView], namespace: str | None, labels: dict[str, str], kind: str
               ) -> list[NetworkPolicyView]:
    return [p for p in policies if p.ref.namespace == namespace and kind in p.policy_types
            and selector_matches(p.pod_selector, labels) is True]


def isolating(policies: list[NetworkPolicyView], namespace: str | None, labels: dict[str, str], direction: str
              ) -> list[NetworkPolicyView]:
    """The policies that isolate this pod for `direction` ("Egress" or "Ingress")."""
    return _selecting(policies, namespace, labels, direction)


def allows(policies: list[NetworkPolicyView], direction: str, pod: Endpoint, other: Endpoint,
           ports: set[int | str]) -> bool | None:
    """Whether `pod` may connect to (Egress) or be reached from (Ingress) `other` on `ports`."""
    chosen = isolating(policies, pod.namespace, pod.labels or {}, direction)
    if not chosen:
        return True
    rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    answers: list[bool | None] = []
    for policy in chosen:
        for rule in getattr(policy, rules_key):
            peers = rule.get(peers_key) or []
            peer_ok = _any_of([_peer_matches(p, policy.ref.namespace, other) for p in peers]) if peers else True
            answers.append(_all_of(peer_ok, _port_matches(rule.get("ports") or [], ports)))
    return _any_of(answers)
