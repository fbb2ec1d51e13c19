"""Alert identity when the source gives none: a stable hash of the sorted label set."""

from __future__ import annotations

import hashlib
import json


def label_fingerprint(labels: dict[str, str]) -> str:
    """16 hex chars of SHA-256 over the canonical JSON of the labels (order-independent)."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def bounded_fingerprint(fingerprint: str, limit: int) -> str:
    """A source's own fingerprint, hashed when longer than the column allows."""
    return fingerprint if len(fingerprint) <= limit else hashlib.sha256(fingerprint.encode()).hexdigest()


def key_hash(group_key: str) -> str:
    """The indexed form of a grouping key of any length."""
    return hashlib.sha256(group_key.encode()).hexdigest()
