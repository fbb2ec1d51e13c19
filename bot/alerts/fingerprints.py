"""Alert identity when the source gives none: a stable hash of the sorted label set."""

from __future__ import annotations

import hashlib
import json


def label_fingerprint(labels: dict[str, str]) -> str:
    """16 hex chars of SHA-256 over the canonical JSON of the labels (order-independent)."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
