"""The object store of the sandbox API server, its resourceVersion counter and its naming.

Invariants:
- Objects are kept per storage key (group, plural) and (namespace, name); cluster-scoped objects
  use the namespace "". Each stored object is owned by the store: callers that hand objects out
  deep-copy them first (the API layer does).
- `resource_version` is one global, strictly increasing counter; every write takes the next value
  and stamps it on the written object, so a stale `metadata.resourceVersion` is detectable.
- Nothing here locks: `SandboxCluster` holds its single lock around every use, so one write and the
  controller's reaction to it are atomic for readers.
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

StorageKey = tuple[str, str]

# The alphabet Kubernetes uses for generated name suffixes and pod-template hashes: no vowels, no
# look-alike characters, so generated names never spell words.
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, as `metav1.Time` serialises."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    """Parse an RFC 3339 timestamp; None for missing or unparseable values."""
    if not text or not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def safe_encode(number: int, length: int | None = None) -> str:
    """Encode a number the way `rand.SafeEncodeString(fmt.Sprint(n))` does in Kubernetes."""
    encoded = "".join(SAFE_ALPHABET[ord(digit) % len(SAFE_ALPHABET)] for digit in str(number))
    return encoded if length is None else encoded[:length]


def metadata(obj: dict[str, Any]) -> dict[str, Any]:
    """The object's metadata map, created when missing."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        obj["metadata"] = meta
    return meta


class Naming:
    """Deterministic identities: uids, name suffixes and pod IPs derived from a seed and a counter.

    Two clusters built with the same seed that receive the same requests hand out the same names,
    so tests and demo transcripts are reproducible.
    """

    def __init__(self, seed: str) -> None:
        self._seed = seed
        self._counter = 0

    def _digest(self, purpose: str) -> bytes:
        self._counter += 1
        return hashlib.sha256(f"{self._seed}/{purpose}/{self._counter}".encode()).digest()

    def uid(self) -> str:
        """A version-4-shaped UUID."""
        return str(uuid.UUID(bytes=self._digest("uid")[:16], version=4))

    def suffix(self, length: int = 5) -> str:
        """`length` characters of the safe alphabet (pod name suffixes)."""
        digest = self._digest("suffix")
        return "".join(SAFE_ALPHABET[b % len(SAFE_ALPHABET)] for b in digest[:length])

    def hex(self, length: int = 16) -> str:
        """Lower-case hex (event name suffixes, container ids)."""
        return self._digest("hex").hex()[:length]

    def pod_ip(self) -> str:
        digest = self._digest("ip")
        return f"10.244.{digest[0] % 64}.{2 + digest[1] % 250}"


class ObjectStore:
    """Objects by storage key and (namespace, name), plus the global resourceVersion counter."""

    def __init__(self) -> None:
        self._objects: dict[StorageKey, dict[tuple[str, str], dict[str, Any]]] = {}
        self._resource_version = 1000

    @property
    def resource_version(self) -> int:
        """The resourceVersion of the latest write."""
        return self._resource_version

    def raise_floor(self, version: int) -> None:
        """Make the counter continue above `version` (loaded objects keep their own versions)."""
        self._resource_version = max(self._resource_version, version)

    def next_resource_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def get(self, key: StorageKey, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get(key, {}).get((namespace, name))

    def put(self, key: StorageKey, obj: dict[str, Any], *, stamp: bool = True) -> dict[str, Any]:
        """Store `obj` (taking ownership); with `stamp`, give it the next resourceVersion."""
        meta = metadata(obj)
        if stamp:
            meta["resourceVersion"] = self.next_resource_version()
        self._objects.setdefault(key, {})[(meta.get("namespace") or "", meta["name"])] = obj
        return obj

    def remove(self, key: StorageKey, namespace: str, name: str) -> dict[str, Any] | None:
        removed = self._objects.get(key, {}).pop((namespace, name), None)
        if removed is not None:
            self._resource_version += 1
        return removed

    def items(self, key: StorageKey, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects under a key, sorted by (namespace, name); `namespace` None means all."""
        bucket = self._objects.get(key, {})
        selected = [
            obj
            for (ns, _), obj in sorted(bucket.items(), key=lambda kv: kv[0])
            if namespace is None or ns == namespace
        ]
        return selected

    def snapshot(self) -> tuple[Any, int]:
        """An opaque copy of the whole store, for `restore` (all-or-nothing loads)."""
        return copy.deepcopy(self._objects), self._resource_version

    def restore(self, state: tuple[Any, int]) -> None:
        self._objects, self._resource_version = copy.deepcopy(state[0]), state[1]

    def storage_keys(self) -> Iterator[StorageKey]:
        """Every storage key that has ever held an object."""
        return iter(tuple(self._objects))
