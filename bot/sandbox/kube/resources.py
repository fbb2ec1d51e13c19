"""The kind/path registry of the sandbox API server.

A `ResourceType` names one REST resource as the API server serves it: group, version, plural,
kind, scope and subresources. `BUILTIN_RESOURCES` is an immutable module constant; every
`SandboxCluster` owns a `ResourceRegistry` that starts from it and grows when a scenario holds a
kind nobody registered (a custom resource), which is then served generically.

Invariants:
- (group, version, plural) identifies at most one `ResourceType` in a registry.
- Objects are stored once per `storage_key` (group, plural), whatever version they are served
  under: `autoscaling/v1` and `autoscaling/v2` HorizontalPodAutoscalers share one store, and the
  `events.k8s.io/v1` events are a read-only view of the core/v1 events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

ALL_VERBS: tuple[str, ...] = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)
READ_VERBS: tuple[str, ...] = ("get", "list", "watch")

# Subresources and how discovery describes them: (kind, group, version, verbs).
_SUBRESOURCE_INFO: Mapping[str, tuple[str | None, str | None, str | None, tuple[str, ...]]] = (
    MappingProxyType(
        {
            "status": (None, None, None, ("get", "patch", "update")),
            "scale": ("Scale", "autoscaling", "v1", ("get", "patch", "update")),
            "log": ("Pod", None, None, ("get",)),
            "eviction": ("Eviction", "policy", "v1", ("create",)),
        }
    )
)


@dataclass(frozen=True)
class ResourceType:
    """One served REST resource (for example `apps/v1` `deployments`)."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    verbs: tuple[str, ...] = ALL_VERBS
    storage: tuple[str, str] | None = None
    builtin: bool = True
    categories: tuple[str, ...] = field(default=())

    @property
    def api_version(self) -> str:
        """`v1` for the core group, otherwise `group/version`."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def storage_key(self) -> tuple[str, str]:
        """Where objects of this resource live in the store: (group, plural)."""
        return self.storage if self.storage is not None else (self.group, self.plural)

    @property
    def qualified(self) -> str:
        """The resource name used in API error messages, e.g. `deployments.apps`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """The kind used in `Invalid` messages, e.g. `Deployment.apps`."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def discovery_entries(self) -> list[dict[str, object]]:
        """The APIResourceList entries for this resource and its subresources."""
        main: dict[str, object] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        entries: list[dict[str, object]] = [main]
        for sub in sorted(self.subresources):
            kind, group, version, verbs = _SUBRESOURCE_INFO[sub]
            entry: dict[str, object] = {
                "name": f"{self.plural}/{sub}",
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": kind or self.kind,
                "verbs": list(verbs),
            }
            if group is not None:
                entry["group"] = group
                entry["version"] = version
            entries.append(entry)
        return entries


def _rt(
    api_version: str,
    kind: str,
    plural: str,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    subs: tuple[str, ...] = ("status",),
    verbs: tuple[str, ...] = ALL_VERBS,
    storage: tuple[str, str] | None = None,
) -> ResourceType:
    group, _, version = api_version.rpartition("/")
    return ResourceType(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        namespaced=namespaced,
        short_names=short,
        subresources=frozenset(subs),
        verbs=verbs,
        storage=storage,
        categories=("all",) if kind in _ALL_CATEGORY else (),
    )


_ALL_CATEGORY = frozenset(
    {"Pod", "Service", "Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "Job", "CronJob"}
)

BUILTIN_RESOURCES: tuple[ResourceType, ...] = (
    _rt("v1", "Namespace", "namespaces", False, ("ns",)),
    _rt("v1", "Pod", "pods", True, ("po",), ("status", "log", "eviction")),
    _rt("v1", "Event", "events", True, ("ev",), ()),
    _rt("v1", "Node", "nodes", False, ("no",)),
    _rt("v1", "Service", "services", True, ("svc",)),
    _rt("v1", "Endpoints", "endpoints", True, ("ep",), ()),
    _rt("v1", "ConfigMap", "configmaps", True, ("cm",), ()),
    _rt("v1", "Secret", "secrets", True, (), ()),
    _rt("v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",)),
    _rt("v1", "PersistentVolume", "persistentvolumes", False, ("pv",)),
    _rt("v1", "ServiceAccount", "serviceaccounts", True, ("sa",), ()),
    _rt("v1", "ResourceQuota", "resourcequotas", True, ("quota",)),
    _rt("v1", "LimitRange", "limitranges", True, ("limits",), ()),
    _rt("v1", "ReplicationController", "replicationcontrollers", True, ("rc",), ("status", "scale")),
    _rt("apps/v1", "Deployment", "deployments", True, ("deploy",), ("status", "scale")),
    _rt("apps/v1", "StatefulSet", "statefulsets", True, ("sts",), ("status", "scale")),
    _rt("apps/v1", "ReplicaSet", "replicasets", True, ("rs",), ("status", "scale")),
    _rt("apps/v1", "DaemonSet", "daemonsets", True, ("ds",)),
    _rt("apps/v1", "ControllerRevision", "controllerrevisions", True, (), ()),
    _rt("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True, ("hpa",)),
    _rt("autoscaling/v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True, ("hpa",)),
    _rt("batch/v1", "Job", "jobs", True, (), ("status",)),
    _rt("batch/v1", "CronJob", "cronjobs", True, ("cj",)),
    _rt("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", True, ("netpol",), ()),
    _rt("networking.k8s.io/v1", "Ingress", "ingresses", True, ("ing",)),
    _rt("networking.k8s.io/v1", "IngressClass", "ingressclasses", False, (), ()),
    _rt("coordination.k8s.io/v1", "Lease", "leases", True, (), ()),
    _rt("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True, ("pdb",)),
    _rt("storage.k8s.io/v1", "StorageClass", "storageclasses", False, ("sc",), ()),
    _rt("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", True, (), ()),
    _rt("scheduling.k8s.io/v1", "PriorityClass", "priorityclasses", False, ("pc",), ()),
    _rt("rbac.authorization.k8s.io/v1", "Role", "roles", True, (), ()),
    _rt("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True, (), ()),
    _rt("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False, (), ()),
    _rt("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False, (), ()),
    _rt(
        "events.k8s.io/v1",
        "Event",
        "events",
        True,
        ("ev",),
        (),
        verbs=READ_VERBS,
        storage=("", "events"),
    ),
)

# Subresources that well-known CustomResourceDefinitions declare, keyed by (group, kind): a generic
# kind registered from a scenario serves them as the real CRD does (cert-manager's Certificate has
# `subresources: {status: {}}`, which `cmctl renew` and the renew-certificate runbook write).
KNOWN_CUSTOM_SUBRESOURCES: Mapping[tuple[str, str], frozenset[str]] = MappingProxyType(
    {("cert-manager.io", "Certificate"): frozenset({"status"})}
)

# When several versions of a group serve the same resource, the first one listed is preferred.
_PREFERRED_VERSION: Mapping[str, str] = MappingProxyType({"autoscaling": "v2"})


def pluralize(kind: str) -> str:
    """The REST plural of a kind by the usual English rules (`NetworkPolicy` -> `networkpolicies`)."""
    word = kind.lower()
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def split_api_version(api_version: str) -> tuple[str, str]:
    """`apps/v1` -> (`apps`, `v1`); `v1` -> (``, `v1`)."""
    group, _, version = api_version.rpartition("/")
    return group, version


class ResourceRegistry:
    """The resources one sandbox cluster serves: the built-ins plus generic kinds from scenarios.

    Not thread-safe by itself; `SandboxCluster` calls it under its lock.
    """

    def __init__(self, resources: Iterable[ResourceType] = BUILTIN_RESOURCES) -> None:
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        self._order: list[ResourceType] = []
        for rt in resources:
            self._add(rt)

    def _add(self, rt: ResourceType) -> None:
        key = (rt.group, rt.version, rt.plural)
        if key in self._by_path:
            raise ValueError(f"resource {rt.api_version} {rt.plural} is registered twice")
        self._by_path[key] = rt
        self._order.append(rt)

    def snapshot(self) -> tuple[ResourceType, ...]:
        return tuple(self._order)

    def restore(self, state: tuple[ResourceType, ...]) -> None:
        self._order = list(state)
        self._by_path = {(rt.group, rt.version, rt.plural): rt for rt in state}

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(tuple(self._order))

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The resource served at /apis/{group}/{version}/.../{plural}, or None."""
        return self._by_path.get((group, version, plural))

    def for_object(self, api_version: str, kind: str) -> ResourceType | None:
        """The resource that serves objects of this apiVersion and kind, or None."""
        group, version = split_api_version(api_version)
        for rt in self._order:
            if rt.group == group and rt.version == version and rt.kind == kind and rt.storage is None:
                return rt
        return None

    def ensure(self, api_version: str, kind: str, namespaced: bool) -> ResourceType:
        """The resource for this apiVersion/kind, registering a generic one when unknown.

        A generic kind is namespaced when any of its objects has a namespace.
        """
        known = self.for_object(api_version, kind)
        if known is not None:
            if not known.builtin and namespaced and not known.namespaced:
                upgraded = ResourceType(
                    group=known.group,
                    version=known.version,
                    kind=known.kind,
                    plural=known.plural,
                    namespaced=True,
                    subresources=known.subresources,
                    builtin=False,
                )
                self._order[self._order.index(known)] = upgraded
                self._by_path[(known.group, known.version, known.plural)] = upgraded
                return upgraded
            return known
        group, version = split_api_version(api_version)
        if not version:
            raise ValueError(f"object of kind {kind!r} has no apiVersion")
        plural = pluralize(kind)
        # A generic kind that shares a group/plural with a built-in (another version) shares its store.
        sibling = next((r for r in self._order if (r.group, r.plural) == (group, plural)), None)
        rt = ResourceType(
            group=group,
            version=version,
            kind=kind,
            plural=plural,
            namespaced=sibling.namespaced if sibling is not None else namespaced,
            subresources=sibling.subresources
            if sibling is not None
            else KNOWN_CUSTOM_SUBRESOURCES.get((group, kind), frozenset()),
            builtin=False,
        )
        self._add(rt)
        return rt

    def resolve(self, name: str) -> ResourceType:
        """A resource by kind, plural, singular or short name, optionally `plural.group`.

        Prefers the built-in preferred version. Raises KeyError when nothing matches.
        """
        wanted, _, group = name.partition(".")
        lowered = wanted.lower()
        candidates = [
            rt
            for rt in self._order
            if rt.storage is None
            and (not group or rt.group == group)
            and (
                rt.kind == wanted
                or rt.plural == lowered
                or rt.singular == lowered
                or lowered in rt.short_names
            )
        ]
        if not candidates:
            raise KeyError(f"no resource type named {name!r}")
        candidates.sort(key=lambda rt: (rt.group != "", not self._preferred(rt)))
        return candidates[0]

    def _preferred(self, rt: ResourceType) -> bool:
        return _PREFERRED_VERSION.get(rt.group, rt.version) == rt.version

    def group_versions(self) -> dict[str, list[str]]:
        """Named groups (not core) and their versions, preferred version first."""
        groups: dict[str, list[str]] = {}
        for rt in self._order:
            if not rt.group:
                continue
            versions = groups.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        for group, versions in groups.items():
            preferred = _PREFERRED_VERSION.get(group)
            if preferred in versions:
                versions.remove(preferred)
                versions.insert(0, preferred)
        return groups

    def resources_in(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._order if rt.group == group and rt.version == version]

    # Discovery documents -------------------------------------------------------------------------

    def api_versions(self, server_address: str) -> dict[str, object]:
        """The `/api` document."""
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }

    def _group_doc(self, group: str, versions: list[str]) -> dict[str, object]:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def api_group_list(self) -> dict[str, object]:
        """The `/apis` document."""
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [self._group_doc(g, vs) for g, vs in self.group_versions().items()],
        }

    def api_group(self, group: str) -> dict[str, object] | None:
        """The `/apis/{group}` document, or None for an unknown group."""
        versions = self.group_versions().get(group)
        if versions is None:
            return None
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group_doc(group, versions)}

    def api_resource_list(self, group: str, version: str) -> dict[str, object] | None:
        """The `/api/v1` or `/apis/{group}/{version}` document, or None when nothing is served."""
        resources = self.resources_in(group, version)
        if not resources:
            return None
        entries: list[dict[str, object]] = []
        for rt in resources:
            entries.extend(rt.discovery_entries())
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": entries,
        }
