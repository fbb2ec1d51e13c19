"""The drift digest: each source's declared objects against the live cluster.

For every configured source (a directory of manifests or a kustomization) the builder reads the
declared objects (`manifests`), reads their live counterparts through the cluster's API (one
list per kind and namespace, discovery for the REST paths), diffs them (`compare`), asks
`managedFields` who set each differing field (`managers`) and files each difference under one of
`SECTIONS`.

Invariants:
- Never raises: an unreadable source, an unknown cluster, a failed API call or an unserved kind
  is a line in `problems`, and every other source, kind and object is still compared.
- Only what the manifest declares is compared (see `compare`); Secrets are never read (the bot's
  RBAC does not allow it), and `spec.replicas` of a workload an HPA targets is not compared.
- An object a GitOps controller owns is reported under "Differs from its Git source" and never
  carries a `Fix`: the repair belongs in Git or in a sync, not in a direct change.
- "Extra" is conservative: only kinds the source declares, only in the namespaces it declares
  objects in, only objects without an owner that look applied by a tool and carry every label
  all of the source's objects share, never `NEVER_EXTRA_KINDS`; and not at all when a manifest
  of the source could not be read (its objects would look extra).
- Finding keys are `drift/<cluster>/<Kind>/<namespace or ->/<name>/<field path or object>`, stable
  between runs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import BaseModel, ConfigDict, Field

from bot.context.kube_facts import gitops_owner, parse_time
from bot.context.rollout import rollout_view
from bot.digests.drift.compare import FieldDiff, IgnoreRules, diff_objects, shown_value
from bot.digests.drift.managers import USER_NOT_RECORDED, FieldOwner, looks_applied, owner_of
from bot.digests.drift.manifests import DeclaredObject, load_source
from bot.digests.model import SEVERITY_ORDER, DigestContext, DigestReport, Finding, Fix

SECTION_MISSING = "Missing"
SECTION_EXTRA = "Extra"
SECTION_BY_HAND = "Changed by hand"
SECTION_DECLARED = "Differs from declared"
SECTION_GITOPS = "Differs from its Git source"
SECTIONS: tuple[str, ...] = (SECTION_MISSING, SECTION_EXTRA, SECTION_BY_HAND, SECTION_DECLARED,
                              SECTION_GITOPS)
# Severity of a difference by its category (by hand is always a warning, missing critical).
CATEGORY_SEVERITY = {"image": "warning", "replicas": "warning", "resources": "warning", "env": "warning",
                     "label": "info", "annotation": "info", "other": "info"}
SEVERITY_BY_SECTION = {SECTION_MISSING: "critical", SECTION_EXTRA: "warning", SECTION_BY_HAND: "warning"}
DEFAULT_IGNORE_FIELDS: tuple[str, ...] = (
    "status", "metadata.managedFields", "metadata.uid", "metadata.resourceVersion", "metadata.generation",
    "metadata.creationTimestamp", "metadata.selfLink", "metadata.deletionTimestamp",
    "metadata.annotations.deployment.kubernetes.io/revision",
    "metadata.annotations.kubectl.kubernetes.io/last-applied-configuration",
)
NEVER_EXTRA_KINDS = frozenset({"Pod", "ReplicaSet", "Event", "Endpoints", "EndpointSlice",
                               "ControllerRevision", "Lease", "Node", "Namespace"})
NOT_READ_KINDS = frozenset({"Secret"})  # the bot's RBAC never reads them
HPA_PATHS = ("/apis/autoscaling/v2", "/apis/autoscaling/v1")
REPLICAS_PATH = "spec.replicas"
LIST_PAGE_SIZE = 500
DEFAULT_CLUSTER_LABEL = "default"


class DriftSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="A directory of plain YAML manifests (read recursively) or a kustomization "
                                  "directory; relative paths resolve against the digests file's folder.")
    cluster: str | None = Field(None, description="The cluster to compare against (None: the default one).")
    namespace: str | None = Field(None, description="Compare only this namespace; also the namespace of "
                                                    "manifests that name none.")


class DriftConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[DriftSource] = Field(default_factory=list, description="What is declared, and where.")
    ignore_fields: list[str] = Field(default_factory=lambda: list(DEFAULT_IGNORE_FIELDS),
                                     description="Dotted field paths never compared (`[*]`: any list item).")
    kustomize_timeout_seconds: float = Field(60.0, gt=0, description="How long one kustomize build may take.")
    request_timeout_seconds: float = Field(10.0, gt=0, description="How long one API call may take.")


@dataclass(frozen=True)
class Served:
    """How the cluster serves one kind: its REST base path and scope."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        scope = f"/namespaces/{quote(namespace, safe='')}" if self.namespaced and namespace else ""
        return f"{base}{scope}/{self.plural}" + (f"/{quote(name, safe='')}" if name else "")


def _reason(status: int | None, exc: Exception | None = None) -> str:
    if exc is not None:
        text = str(exc).lower()
        return "timed out" if "timed out" in text or "timeout" in text else "API server unreachable"
    return {401: "not authorised", 403: "forbidden by RBAC", 404: "not found"}.get(status or 0,
                                                                                    f"answered HTTP {status}")


class LiveReader:
    """Raw, read-only GETs (plain dicts, as `kubectl get -o json` shows them); failures become
    `problems` lines prefixed with the cluster's label."""

    def __init__(self, api_client: Any, label: str, timeout_seconds: float):
        self._api, self._label, self._timeout = api_client, label, timeout_seconds
        self._discovery: dict[str, dict[str, Any] | None] = {}
        self.unreadable_versions: set[str] = set()
        self.problems: list[str] = []

    def _fetch(self, path: str, query: dict[str, Any] | None = None) -> tuple[int | None, Any]:
        url = path + (f"?{urlencode(query)}" if query else "")
        try:
            params = self._api.param_serialize("GET", url, header_params={"Accept": "application/json"},
                                               auth_settings=["BearerToken"])
            response = self._api.call_api(*params, _request_timeout=self._timeout)
            response.read()
            body = json.loads(response.data) if 200 <= response.status < 300 else None
            return response.status, body
        except Exception as exc:  # noqa: BLE001 - any failure is a problem line, never an error
            return None, exc

    def served(self, api_version: str, kind: str) -> Served | None:
        if api_version not in self._discovery:
            base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            status, body = self._fetch(base)
            if status != 200 and status != 404:
                self.unreadable_versions.add(api_version)
                why = _reason(status, body if status is None else None)
                self.problems.append(f"cluster {self._label}: could not read which kinds {api_version} "
                                     f"serves ({why})")
            self._discovery[api_version] = body if status == 200 else None
        document = self._discovery[api_version]
        if document is None:
            return None
        entry = next((r for r in document.get("resources") or []
                      if r.get("kind") == kind and "/" not in str(r.get("name"))), None)
        return Served(api_version, kind, str(entry["name"]), bool(entry.get("namespaced"))) if entry else None

    def items(self, served: Served, namespace: str | None) -> list[dict[str, Any]] | None:
        """Every object of `served` in `namespace` (None: could not be listed)."""
        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            query: dict[str, Any] = {"limit": LIST_PAGE_SIZE, **({"continue": token} if token else {})}
            status, body = self._fetch(served.path(namespace), query)
            if status == 404:  # a namespace that does not exist holds nothing
                return found
            if status != 200 or not isinstance(body, dict):
                where = f" in {namespace}" if namespace else ""
                self.problems.append(f"cluster {self._label}: could not list {served.plural}{where} "
                                     f"({_reason(status, body if status is None else None)})")
                return None
            for item in body.get("items") or []:
                item.setdefault("apiVersion", served.api_version)
                item.setdefault("kind", served.kind)
                found.append(item)
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                return found

    def one(self, served: Served, name: str) -> tuple[bool, dict[str, Any] | None]:
        """(read, object) for a cluster-scoped object; (True, None) when it does not exist."""
        status, body = self._fetch(served.path(None, name))
        if status == 404:
            return True, None
        if status != 200:
            self.problems.append(f"cluster {self._label}: could not read {served.kind} {name} "
                                 f"({_reason(status, body if status is None else None)})")
            return False, None
        return True, body

    def hpa_targets(self, namespace: str) -> set[tuple[str, str]] | None:
        """(kind, name) of every workload an HPA in `namespace` scales."""
        for base in HPA_PATHS:
            path = f"{base}/namespaces/{quote(namespace, safe='')}/horizontalpodautoscalers"
            status, body = self._fetch(path)
            if status == 200 and isinstance(body, dict):
                return {(str(ref.get("kind")), str(ref.get("name"))) for ref in
                        ((h.get("spec") or {}).get("scaleTargetRef") or {} for h in body.get("items") or [])}
        self.problems.append(f"cluster {self._label}: could not list HorizontalPodAutoscalers in "
                             f"{namespace}, so replicas an HPA drives may be reported as drift")
        return None


@dataclass
class Outcome:
    findings: list[Finding]
    problems: list[str]
    notes: list[str]
    compared: int = 0
    drifted_objects: int = 0
    drifted_fields: int = 0


@dataclass(frozen=True)
class Target:
    """One declared object, placed: where the cluster serves it and in which namespace."""

    declared: DeclaredObject
    served: Served
    namespace: str | None

    @property
    def identity(self) -> tuple[str, str | None, str]:
        return (self.served.kind, self.namespace, self.declared.name)


def subject_of(kind: str, namespace: str | None, name: str, cluster: str | None) -> str:
    where = f"{namespace}/{name}" if namespace else name
    return f"{kind} {where}" + (f" (cluster {cluster})" if cluster else "")


def _key(cluster: str, kind: str, namespace: str | None, name: str, field: str) -> str:
    return f"drift/{cluster}/{kind}/{namespace or '-'}/{name}/{field}"


def _template_images(template: dict[str, Any]) -> dict[str, str]:
    spec = template.get("spec") or {}
    return {str(c.get("name")): str(c.get("image")) for group in ("initContainers", "containers")
            for c in spec.get(group) or [] if c.get("image")}


def rollback_fix(declared: dict[str, Any], live: dict[str, Any], replica_sets: list[dict[str, Any]],
                 cluster: str | None) -> Fix | None:
    """Roll back to the newest earlier revision whose pod template runs every declared image."""
    wanted = _template_images((declared.get("spec") or {}).get("template") or {})
    if not wanted:
        return None
    view = rollout_view(live, replica_sets)
    matching = [r for r in view.revisions if r is not view.current
                and all(_template_images(r.template).get(n) == image for n, image in wanted.items())]
    if not matching:
        return None
    revision = max(matching, key=lambda r: r.number)
    meta = live.get("metadata") or {}
    return Fix("rollback-deployment", {"namespace": meta.get("namespace"), "name": meta.get("name"),
                                       "to_revision": revision.number},
               f"Roll {meta.get('namespace')}/{meta.get('name')} back to revision {revision.number}, "
               "which runs the declared image(s)", cluster)


class SourceCheck:
    """Compares one source against one cluster; collects findings, problems and notes."""

    def __init__(self, source: DriftSource, label: str, reader: LiveReader, ignore: list[str],
                 cluster_label: str, outcome: Outcome):
        self.source, self.label, self.reader = source, label, reader
        self.ignore_patterns = ignore
        self.cluster_label, self.cluster_name = cluster_label, source.cluster
        self.outcome = outcome
        self._replica_sets: dict[str, list[dict[str, Any]] | None] = {}

    def place(self, objects: list[DeclaredObject]) -> list[Target]:
        targets: dict[tuple[str, str | None, str], Target] = {}
        unserved: dict[str, int] = defaultdict(int)
        skipped: dict[str, int] = defaultdict(int)
        for obj in objects:
            served = self.reader.served(obj.api_version, obj.kind)
            if served is None and obj.api_version in self.reader.unreadable_versions:
                continue  # discovery failed: already a problem line
            if served is None:
                unserved[f"{obj.api_version} {obj.kind}"] += 1
                continue
            namespace = (obj.namespace or self.source.namespace or "default") if served.namespaced else None
            if obj.kind in NOT_READ_KINDS:
                skipped[f"{obj.kind}s (never read)"] += 1
            elif self.source.namespace and namespace != self.source.namespace:
                skipped[f"objects outside namespace {self.source.namespace}"] += 1
            else:
                target = Target(obj, served, namespace)
                if target.identity in targets:
                    first = targets[target.identity].declared
                    self.outcome.problems.append(
                        f"{self.label}: {obj.kind} {obj.name} is declared twice ({first.origin} line "
                        f"{first.line} and {obj.origin} line {obj.line}); the later one is compared")
                targets[target.identity] = target
        for what, count in sorted(unserved.items()):
            self.outcome.problems.append(f"{self.label}: cluster {self.cluster_label} does not serve {what}; "
                                         f"{count} declared object(s) not compared")
        for what, count in sorted(skipped.items()):
            self.outcome.notes.append(f"{self.label}: {count} {what} not compared")
        return list(targets.values())

    def run(self, objects: list[DeclaredObject], complete: bool) -> Outcome:
        targets = self.place(objects)
        kinds = {t.served for t in targets if t.served.namespaced}
        namespaces = sorted({t.namespace for t in targets if t.namespace})
        live: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        listed: dict[tuple[Served, str], list[dict[str, Any]]] = {}
        for served in sorted(kinds, key=lambda s: (s.api_version, s.kind)):
            for namespace in namespaces:
                items = self.reader.items(served, namespace)
                if items is not None:
                    listed[(served, namespace)] = items
                    live.update({(served.kind, namespace, str(i["metadata"]["name"])): i for i in items})
        hpa = {ns: self.reader.hpa_targets(ns) or set() for ns in namespaces
               if any(t.served.kind in ("Deployment", "StatefulSet", "ReplicaSet") for t in targets)}
        hpa_driven = 0
        for target in targets:
            if target.served.namespaced:
                if (target.served, target.namespace) not in listed:
                    continue  # the list failed: already a problem line
                obj = live.get(target.identity)
            else:
                read, obj = self.reader.one(target.served, target.declared.name)
                if not read:
                    continue
            self.outcome.compared += 1
            if obj is None:
                self._missing(target)
            else:
                scaled = hpa.get(target.namespace or "", set())
                replicas_by_hpa = (target.served.kind, target.declared.name) in scaled
                hpa_driven += replicas_by_hpa
                self._differences(target, obj, replicas_by_hpa)
        if hpa_driven:
            self.outcome.notes.append(f"{self.label}: spec.replicas of {hpa_driven} workload(s) an HPA "
                                      "drives not compared")
        if complete:
            self._extras(targets, listed)
        else:
            self.outcome.notes.append(f"{self.label}: extra objects not looked for, because a manifest could "
                                      "not be read (its objects would look extra)")
        return self.outcome

    def _missing(self, target: Target) -> None:
        declared = target.declared
        self.outcome.drifted_objects += 1
        self.outcome.findings.append(Finding(
            key=_key(self.cluster_label, declared.kind, target.namespace, declared.name, "object"),
            section=SECTION_MISSING, severity="critical",
            subject=subject_of(declared.kind, target.namespace, declared.name, self.cluster_name),
            detail=f"declared in {self.label} ({declared.origin} line {declared.line}), "
                   f"not found in cluster {self.cluster_label}"))

    def _differences(self, target: Target, live: dict[str, Any], replicas_by_hpa: bool) -> None:
        ignore = [*self.ignore_patterns, *([REPLICAS_PATH] if replicas_by_hpa else [])]
        diffs = diff_objects(target.declared.body, live, IgnoreRules(ignore))
        if not diffs:
            return
        self.outcome.drifted_objects += 1
        self.outcome.drifted_fields += len(diffs)
        controller = gitops_owner(live)
        image_fix = None
        deployment = controller is None and target.served.kind == "Deployment"
        if deployment and any(d.category == "image" for d in diffs):
            replica_sets = self._deployment_replica_sets(target)
            image_fix = rollback_fix(target.declared.body, live, replica_sets, self.source.cluster)
        for diff in diffs:
            owner = owner_of(live, diff.path)
            fix = None
            if controller is None and diff.category == "image":
                fix = image_fix
            elif deployment and diff.category == "replicas" and isinstance(diff.declared, int) \
                    and not replicas_by_hpa:
                where = f"{target.namespace}/{target.declared.name}"
                fix = Fix("scale-deployment", {"namespace": target.namespace, "name": target.declared.name,
                                               "replicas": diff.declared},
                          f"Scale {where} to {diff.declared} replicas as declared", self.source.cluster)
            self.outcome.findings.append(self._field_finding(target, diff, owner, controller, fix))

    def _deployment_replica_sets(self, target: Target) -> list[dict[str, Any]]:
        namespace = target.namespace or ""
        if namespace not in self._replica_sets:
            served = self.reader.served("apps/v1", "ReplicaSet")
            self._replica_sets[namespace] = self.reader.items(served, namespace) if served else None
        return self._replica_sets[namespace] or []

    def _field_finding(self, target: Target, diff: FieldDiff, owner: FieldOwner | None,
                       controller: str | None, fix: Fix | None) -> Finding:
        declared_text = shown_value(diff.path, diff.declared, diff.declared_present)
        live_text = shown_value(diff.path, diff.live, diff.live_present)
        detail = f"{diff.display}: declared {declared_text}, live {live_text}"
        if controller is not None:
            section = SECTION_GITOPS
            detail += f"; owned by {controller}: fix it in Git or let it sync, not by hand"
        elif owner is not None and owner.manual:
            section = SECTION_BY_HAND
        else:
            section = SECTION_DECLARED
        if owner is not None and owner.manual:
            detail += f"; changed by hand with {owner.describe()} ({USER_NOT_RECORDED})"
        elif owner is not None:
            detail += f"; last set by {owner.describe()}"
        severity = SEVERITY_BY_SECTION.get(section) or CATEGORY_SEVERITY.get(diff.category, "info")
        numbers = {}
        if diff.category == "replicas" and isinstance(diff.declared, int) and isinstance(diff.live, int):
            numbers = {"declared": float(diff.declared), "live": float(diff.live)}
        declared = target.declared
        key = _key(self.cluster_label, declared.kind, target.namespace, declared.name, diff.display)
        return Finding(key=key, section=section, severity=severity,  # type: ignore[arg-type]
                       subject=subject_of(declared.kind, target.namespace, declared.name, self.cluster_name),
                       detail=detail, since=owner.time if owner else None, fix=fix, numbers=numbers)

    def _extras(self, targets: list[Target], listed: dict[tuple[Served, str], list[dict[str, Any]]]) -> None:
        label_sets = [set(((t.declared.body.get("metadata") or {}).get("labels") or {}).items())
                      for t in targets]
        shared = set.intersection(*label_sets) if label_sets else set()
        if not shared and not self.source.namespace:
            self.outcome.notes.append(f"{self.label}: extra objects not looked for: its objects share no "
                                      "label and no namespace is configured for it")
            return
        declared = {t.identity for t in targets}
        for (served, namespace), items in sorted(listed.items(), key=lambda p: (p[0][0].kind, p[0][1])):
            if served.kind in NEVER_EXTRA_KINDS:
                continue
            for obj in items:
                meta = obj.get("metadata") or {}
                name = str(meta.get("name"))
                labels = set((meta.get("labels") or {}).items())
                why = looks_applied(obj)
                if (served.kind, namespace, name) in declared or meta.get("ownerReferences") \
                        or not shared <= labels or why is None:
                    continue
                self.outcome.drifted_objects += 1
                self.outcome.findings.append(Finding(
                    key=_key(self.cluster_label, served.kind, namespace, name, "object"),
                    section=SECTION_EXTRA, severity="warning",
                    subject=subject_of(served.kind, namespace, name, self.cluster_name),
                    detail=f"in cluster {self.cluster_label} but not declared in {self.label} ({why}); "
                           "removed from the source but never deleted?",
                    since=parse_time(meta.get("creationTimestamp"))))


def _source_root(source: DriftSource, base_dir: Any) -> Path:
    path = Path(source.path).expanduser()
    return path if path.is_absolute() or base_dir is None else Path(base_dir) / path


def check_source(source: DriftSource, config: DriftConfig, context: DigestContext) -> Outcome:
    """One source: read what it declares, then compare it with its cluster."""
    label = source.path
    loaded = load_source(_source_root(source, context.base_dir), config.kustomize_timeout_seconds)
    outcome = Outcome([], [f"{label}: {p}" for p in loaded.problems], [f"{label}: {n}" for n in loaded.notes])
    access = context.clusters.resolve(source.cluster) if context.clusters is not None else None
    cluster_label = source.cluster or (access.name if access else None) or DEFAULT_CLUSTER_LABEL
    if access is None or access.api_client is None:
        why = "is not configured" if access is None else "has no Kubernetes API configured"
        outcome.problems.append(f"{label}: cluster {cluster_label} {why}; nothing compared")
        return outcome
    try:
        client = access.api_client()
    except Exception as exc:  # noqa: BLE001 - a bad kubeconfig is a problem line
        outcome.problems.append(f"{label}: could not make a Kubernetes client for cluster {cluster_label} "
                                f"({type(exc).__name__})")
        return outcome
    try:
        reader = LiveReader(client, cluster_label, config.request_timeout_seconds)
        SourceCheck(source, label, reader, config.ignore_fields, cluster_label, outcome).run(
            loaded.objects, loaded.complete)
        outcome.problems.extend(dict.fromkeys(reader.problems))
        outcome.notes.append(f"{label}: {outcome.compared} objects compared with cluster {cluster_label}")
    finally:
        client.close()
    return outcome


def _headline(findings: list[Finding], compared: int, drifted: int, fields: int, problems: list[str],
              sources: str) -> str:
    if not findings:
        if problems:
            return (f"No drift found in the {compared} objects that could be compared; "
                    f"{len(problems)} problem(s)")
        return f"No drift: {compared} objects match what is declared in {sources}"
    missing = sum(f.section == SECTION_MISSING for f in findings)
    extra = sum(f.section == SECTION_EXTRA for f in findings)
    parts = [f"{fields} {'field' if fields == 1 else 'fields'}"] if fields or not (missing or extra) else []
    parts += [f"{n} {what}" for n, what in ((missing, "missing"), (extra, "extra")) if n]
    return f"{drifted} {'object' if drifted == 1 else 'objects'} drifted ({', '.join(parts)})"


def build(config: DriftConfig, context: DigestContext) -> DigestReport:
    """The drift digest over every configured source (see the module invariants)."""
    findings: list[Finding] = []
    problems: list[str] = []
    notes: list[str] = []
    compared = drifted = fields = 0
    if not config.sources:
        problems.append("no drift sources are configured")
    for source in config.sources:
        try:
            outcome = check_source(source, config, context)
        except Exception as exc:  # noqa: BLE001 - one broken source must not hide the others
            problems.append(f"{source.path}: could not be compared ({type(exc).__name__}: {exc})")
            continue
        findings += outcome.findings
        problems += outcome.problems
        notes += outcome.notes
        compared += outcome.compared
        drifted += outcome.drifted_objects
        fields += outcome.drifted_fields
    findings.sort(key=lambda f: (SEVERITY_ORDER[f.severity], SECTIONS.index(f.section), f.subject, f.key))
    sources = ", ".join(s.path for s in config.sources) or "no source"
    return DigestReport(
        name="drift", title="Drift", generated_at=context.now,
        headline=_headline(findings, compared, drifted, fields, problems, sources),
        findings=tuple(findings), problems=tuple(problems), notes=tuple(notes),
        summary={"objects_compared": float(compared), "objects_drifted": float(drifted),
                 "fields_drifted": float(fields),
                 "missing": float(sum(f.section == SECTION_MISSING for f in findings)),
                 "extra": float(sum(f.section == SECTION_EXTRA for f in findings))})
