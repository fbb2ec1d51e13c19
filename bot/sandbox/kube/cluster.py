"""`SandboxCluster`: the state behind the sandbox API server.

One cluster holds the registry of served kinds, the object store, container logs, the record of
mutating requests and the controllers, all behind one re-entrant lock. Every API request runs
entirely under that lock, so a write and the controllers' reaction to it are atomic: a concurrent
reader sees the state before the write or after the rollout it caused, never half of it.

`load()` puts a scenario's frozen truth in place without running any controller and without
recording mutations: a crash-looping pod stays crash-looping until something acts through the API.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from bot.sandbox.kube.controller import Controller
from bot.sandbox.kube.logs import LogStore, container_names
from bot.sandbox.kube.resources import ResourceRegistry, ResourceType
from bot.sandbox.kube.store import Naming, ObjectStore, format_time

_NO_GENERATION = frozenset(
    {"ConfigMap", "Secret", "Event", "Endpoints", "ServiceAccount", "Namespace", "Node"}
)
SYSTEM_NAMESPACES: tuple[str, ...] = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class Mutation:
    """One mutating API request, in arrival order, whether it succeeded or not.

    `verb` follows Kubernetes audit verbs (`create`, `update`, `patch`, `delete`,
    `deletecollection`); an eviction is `create` on the `eviction` subresource. `code` is the HTTP
    status answered; `dry_run` requests changed nothing. `body` is the parsed request body and
    `summary` a one-line rendering of it. Also readable as a mapping (`m["verb"]`).
    """

    verb: str
    path: str
    kind: str
    resource: str
    namespace: str | None
    name: str | None
    subresource: str | None
    dry_run: bool
    code: int
    content_type: str | None
    body: Any
    summary: str
    at: str

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _summarize(body: Any, limit: int = 300) -> str:
    if body is None:
        return ""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SandboxCluster:
    """A simulated Kubernetes cluster: objects, events, logs and controllers (see the module docstring).

    `now` is the scenario clock (a timezone-aware datetime, fixed) or omitted for the wall clock;
    `clock` is an alternative callable returning aware datetimes. `seed` makes generated uids and
    names reproducible.
    """

    def __init__(
        self,
        now: datetime | Callable[[], datetime] | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
        seed: str = "opsbot-sandbox",
    ) -> None:
        if now is not None and clock is not None:
            raise ValueError("pass either now or clock, not both")
        if callable(now):
            clock, now = now, None
        if isinstance(now, datetime):
            if now.tzinfo is None:
                raise ValueError("now must be timezone-aware")
            fixed = now
            self._clock: Callable[[], datetime] = lambda: fixed
        else:
            self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._registry = ResourceRegistry()
        self._store = ObjectStore()
        self._naming = Naming(seed)
        self._logs = LogStore()
        self._mutations: list[Mutation] = []
        self._denied: set[tuple[str, str]] = set()
        self._controller = Controller(self._store, self._naming, self.now_text, self._forget_pod_logs)
        for namespace in SYSTEM_NAMESPACES:
            self._ensure_namespace(namespace)

    # RBAC, as far as tests need it -----------------------------------------------------------------

    def deny(self, verb: str, resource: str) -> None:
        """Refuse `verb` (get, list, create, update, patch, delete) on `resource` ("pods",
        "pods/log", "events", ...) with 403 Forbidden, as a ClusterRole lacking it would."""
        with self._lock:
            self._denied.add((verb, resource))

    def is_denied(self, verb: str, resource: str) -> bool:
        return (verb, resource) in self._denied

    # Shared parts, for the sandbox's own modules -------------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        """The one lock guarding all state; held for the whole of every API request."""
        return self._lock

    @property
    def registry(self) -> ResourceRegistry:
        return self._registry

    @property
    def store(self) -> ObjectStore:
        return self._store

    @property
    def naming(self) -> Naming:
        return self._naming

    @property
    def logs(self) -> LogStore:
        return self._logs

    @property
    def controller(self) -> Controller:
        return self._controller

    def now(self) -> datetime:
        """The cluster clock (timezone-aware)."""
        moment = self._clock()
        if moment.tzinfo is None:
            raise ValueError("the cluster clock must return timezone-aware datetimes")
        return moment

    def now_text(self) -> str:
        return format_time(self.now())

    def _forget_pod_logs(self, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        self._logs.forget_pod(meta.get("namespace", ""), meta.get("name", ""))

    def _ensure_namespace(self, namespace: str) -> None:
        if self._store.get(("", "namespaces"), "", namespace) is not None:
            return
        self._store.put(
            ("", "namespaces"),
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": namespace,
                    "uid": self._naming.uid(),
                    "creationTimestamp": self.now_text(),
                    "labels": {"kubernetes.io/metadata.name": namespace},
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            },
        )

    def namespace_exists(self, namespace: str) -> bool:
        return self._store.get(("", "namespaces"), "", namespace) is not None

    # Mutation record -----------------------------------------------------------------------------

    @property
    def mutations(self) -> list[Mutation]:
        """Every mutating API request so far, oldest first (a copy)."""
        with self._lock:
            return list(self._mutations)

    def clear_mutations(self) -> None:
        with self._lock:
            self._mutations.clear()

    def record_mutation(
        self,
        *,
        verb: str,
        path: str,
        rt: ResourceType,
        namespace: str | None,
        name: str | None,
        subresource: str | None,
        dry_run: bool,
        code: int,
        content_type: str | None,
        body: Any,
    ) -> None:
        with self._lock:
            self._mutations.append(
                Mutation(
                    verb=verb,
                    path=path,
                    kind=rt.kind,
                    resource=rt.plural,
                    namespace=namespace,
                    name=name,
                    subresource=subresource,
                    dry_run=dry_run,
                    code=code,
                    content_type=content_type,
                    body=copy.deepcopy(body),
                    summary=_summarize(body),
                    at=self.now_text(),
                )
            )

    # Loading -------------------------------------------------------------------------------------

    def load(
        self,
        objects: Iterable[Mapping[str, Any]],
        events: Iterable[Mapping[str, Any]] = (),
        logs: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Add a scenario's objects, events and logs as they are; no controller runs, nothing is recorded.

        Objects keep what they carry (uid, resourceVersion, generation, timestamps, status) and are
        served exactly as written; only missing uids (of objects and of owner references),
        creation timestamps and resourceVersions are filled. Namespaces the objects use are created.
        Raises ValueError for malformed input (no kind/name, duplicates, logs of unknown pods); a
        failed load leaves the cluster as it was.
        """
        with self._lock:
            saved = (self._store.snapshot(), self._registry.snapshot(), self._logs.snapshot())
            try:
                flat: list[Mapping[str, Any]] = []
                for obj in objects:
                    if isinstance(obj, Mapping) and obj.get("kind") == "List":
                        flat.extend(obj.get("items") or [])
                    else:
                        flat.append(obj)
                loaded = [self._load_object(obj) for obj in flat]
                for obj in loaded:
                    self._fill_owner_uids(obj)
                for event in events:
                    self._load_event(event)
                for entry in logs:
                    self._load_log(entry)
            except Exception:
                self._store.restore(saved[0])
                self._registry.restore(saved[1])
                self._logs.restore(saved[2])
                raise

    def _load_object(self, source: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(source, Mapping) or not source.get("kind") or not source.get("apiVersion"):
            raise ValueError(f"object without apiVersion/kind: {str(source)[:120]}")
        obj = copy.deepcopy(dict(source))
        meta = obj.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            raise ValueError(f"{obj['kind']} without metadata.name")
        rt = self._registry.ensure(obj["apiVersion"], obj["kind"], bool(meta.get("namespace")))
        if rt.namespaced:
            meta["namespace"] = meta.get("namespace") or "default"
            self._ensure_namespace(meta["namespace"])
        else:
            meta.pop("namespace", None)
        namespace = meta.get("namespace", "")
        if self._store.get(rt.storage_key, namespace, meta["name"]) is not None and rt.kind != "Namespace":
            raise ValueError(f"duplicate object {rt.kind} {namespace}/{meta['name']}")
        meta.setdefault("uid", self._naming.uid())
        meta.setdefault("creationTimestamp", self.now_text())
        version = str(meta.get("resourceVersion") or "")
        if version.isdigit():
            self._store.raise_floor(int(version))
            return self._store.put(rt.storage_key, obj, stamp=False)
        return self._store.put(rt.storage_key, obj)

    def _fill_owner_uids(self, obj: dict[str, Any]) -> None:
        """Owner references the scenario wrote without a uid get their owner's (the client needs one)."""
        namespace = (obj.get("metadata") or {}).get("namespace") or ""
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("uid") or not ref.get("kind") or not ref.get("name"):
                continue
            owner_rt = self._registry.for_object(str(ref.get("apiVersion", "")), ref["kind"])
            if owner_rt is None:
                continue
            owner = self._store.get(
                owner_rt.storage_key, namespace if owner_rt.namespaced else "", ref["name"]
            )
            if owner is not None:
                ref["uid"] = owner["metadata"].get("uid")

    def _load_event(self, source: Mapping[str, Any]) -> None:
        if not isinstance(source, Mapping):
            raise ValueError(f"event is not a mapping: {source!r}")
        event = copy.deepcopy(dict(source))
        event.setdefault("apiVersion", "v1")
        event.setdefault("kind", "Event")
        involved = event.get("involvedObject") or {}
        meta = event.setdefault("metadata", {})
        namespace = meta.get("namespace") or involved.get("namespace") or "default"
        meta["namespace"] = namespace
        if not meta.get("name"):
            digest = hashlib.sha256(json.dumps(source, sort_keys=True, default=str).encode()).hexdigest()[:16]
            meta["name"] = f"{involved.get('name') or 'event'}.{digest}"
        if involved and not involved.get("uid"):
            target = self._find_involved(involved)
            if target is not None:
                involved["uid"] = (target.get("metadata") or {}).get("uid")
        self._ensure_namespace(namespace)
        self._load_object(event)

    def _find_involved(self, involved: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            rt = self._registry.resolve(str(involved.get("kind", "")))
        except KeyError:
            return None
        namespace = involved.get("namespace") or "" if rt.namespaced else ""
        return self._store.get(rt.storage_key, namespace, str(involved.get("name", "")))

    def _load_log(self, entry: Mapping[str, Any]) -> None:
        if not isinstance(entry, Mapping) and callable(getattr(entry, "model_dump", None)):
            entry = entry.model_dump()  # a pydantic log-stream model from the scenario loader
        pod_name = entry.get("pod")
        container = entry.get("container")
        if not pod_name:
            raise ValueError(f"log entry without pod: {dict(entry)!r}")
        namespace = entry.get("namespace")
        candidates = [
            p
            for p in self._store.items(("", "pods"), namespace)
            if (p.get("metadata") or {}).get("name") == pod_name
        ]
        if not candidates:
            raise ValueError(f"logs for pod {pod_name!r}, which is not among the loaded pods")
        if len(candidates) > 1:
            raise ValueError(f"logs for pod {pod_name!r} are ambiguous: set the namespace")
        pod = candidates[0]
        containers, init = container_names(pod)
        if container is None and len(containers) == 1:
            container = containers[0]
        if container not in containers and container not in init:
            raise ValueError(f"logs for container {container!r}, which pod {pod_name!r} does not have")
        lines = entry.get("lines") or []
        if isinstance(lines, str):
            lines = lines.splitlines()
        self._logs.put(
            pod["metadata"]["namespace"], pod_name, str(container), bool(entry.get("previous")), list(lines)
        )

    # Direct inspection (tests) --------------------------------------------------------------------

    def get(self, kind_or_plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """A deep copy of one object, or None. `kind_or_plural`: `Deployment`, `deployments`, `deploy`..."""
        with self._lock:
            rt = self._registry.resolve(kind_or_plural)
            obj = self._store.get(rt.storage_key, (namespace or "") if rt.namespaced else "", name)
            return copy.deepcopy(obj) if obj is not None else None

    def list(self, kind_or_plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Deep copies of all objects of a kind, sorted by namespace and name; None means every namespace."""
        with self._lock:
            rt = self._registry.resolve(kind_or_plural)
            return copy.deepcopy(self._store.items(rt.storage_key, namespace if rt.namespaced else None))
