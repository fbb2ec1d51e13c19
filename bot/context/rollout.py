"""Rollout history, read exactly as on a real cluster. Pure.

A Deployment's revisions are its ReplicaSets (annotation `deployment.kubernetes.io/revision`,
owner reference to the Deployment); a StatefulSet's or DaemonSet's are its ControllerRevisions
(`revision`, the template inside `data`). The diff compares the current revision's pod
template with the previous one field by field, in the terms an engineer reviews a change:
image, command and args, each env var, env sources, resources, probes, mounts, volumes, and
the scheduling fields, plus template annotations (a changed `checksum/config` is a config
change).

Secrets: the diff says *that* an env var changed, was added or removed, never its value, unless
the value is plainly not secret (`bot.redaction.shown_setting`: a feature flag, a log level, a
replica count, an address without credentials); otherwise it reads `[REDACTED]`. A `valueFrom`
shows its reference (`secretKeyRef orders-db/dsn`), which is not secret. In `command` and
`args`, the value of a secret-named flag (`--db-password=…`, `--token …`) and any
secret-looking argument are masked the same way; so are a probe's `exec.command` and its
`httpGet.httpHeaders` values (an `X-Api-Key` or `Authorization` header on a liveness probe),
each header judged by its name and value like an env var. The diff is masked here, where it
is made, so no later stage (the analyzers' evidence, the evidence file, the model) ever holds
a value.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bot.context.kube_facts import conditions_of, controller_of, parse_time, ref_of
from bot.context.model import Revision, RolloutView, TemplateChange
from bot.redaction import MASK, is_secret_name, looks_secret, shown_setting

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
_CONTAINER_FIELDS = ("image", "command", "args", "envFrom", "resources", "livenessProbe", "readinessProbe",
                     "startupProbe", "volumeMounts", "ports", "securityContext", "workingDir")
_POD_FIELDS = ("volumes", "serviceAccountName", "nodeSelector", "affinity", "tolerations", "imagePullSecrets",
               "priorityClassName", "topologySpreadConstraints", "hostNetwork", "dnsPolicy")
_IGNORED_ANNOTATIONS = ("kubectl.kubernetes.io/restartedAt",)
_PROBE_FIELDS = ("livenessProbe", "readinessProbe", "startupProbe")
# How a valueFrom source is shown: the reference's fields that name it (none is secret).
_VALUE_FROM_REFERENCES = (("secretKeyRef", ("name", "key")), ("configMapKeyRef", ("name", "key")),
                          ("fieldRef", ("fieldPath",)), ("resourceFieldRef", ("containerName", "resource")))
MAX_VALUE_CHARS = 300


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _short(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"
    return value


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e.get("name", "?"): e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def _env_shown(name: str, value: Any) -> Any:
    """What the diff may show of env var `name`: a valueFrom's reference, the value when it is
    plainly not secret, else the mask."""
    if isinstance(value, dict):
        for source, fields in _VALUE_FROM_REFERENCES:
            if isinstance(value.get(source), dict):
                ref = value[source]
                return f"{source} " + "/".join(str(ref[f]) for f in fields if ref.get(f) not in (None, ""))
        return MASK
    text = "" if value is None else str(value)
    return text if text == "" or shown_setting(name, text) else MASK  # set to nothing: nothing to hide


def _masked_arguments(value: Any) -> Any:
    """`command` / `args` with the values of secret-named flags and secret-looking arguments masked."""
    if not isinstance(value, list):
        return value
    masked: list[Any] = []
    value_is_secret = False
    for arg in value:
        text = str(arg)
        flag, equals, flag_value = text.partition("=")
        if value_is_secret and not text.startswith("-"):
            masked.append(MASK)
        elif text.startswith("-") and equals:
            masked.append(f"{flag}={MASK}" if is_secret_name(flag) or looks_secret(flag_value) else arg)
        else:
            masked.append(MASK if looks_secret(text) else arg)
        value_is_secret = text.startswith("-") and not equals and is_secret_name(text)
    return masked


def _masked_header(header: Any) -> Any:
    """A probe's HTTP header with its value shown only when plainly not secret, judged as the
    env var of the same name (`X-Probe-Mode` as `X_PROBE_MODE`)."""
    if not isinstance(header, dict) or "value" not in header:
        return header
    return {**header, "value": _env_shown(str(header.get("name", "")).replace("-", "_"), header["value"])}


def _masked_probe(probe: Any) -> Any:
    """A probe with its `httpGet.httpHeaders` values and its `exec.command` masked."""
    if not isinstance(probe, dict):
        return probe
    masked = dict(probe)
    http, run = probe.get("httpGet"), probe.get("exec")
    if isinstance(http, dict) and isinstance(http.get("httpHeaders"), list):
        masked["httpGet"] = {**http, "httpHeaders": [_masked_header(h) for h in http["httpHeaders"]]}
    if isinstance(run, dict) and "command" in run:
        masked["exec"] = {**run, "command": _masked_arguments(run["command"])}
    return masked


# How each container field that may hold a secret is masked before the diff shows it.
_MASKED_FIELDS = {"command": _masked_arguments, "args": _masked_arguments,
                  **dict.fromkeys(_PROBE_FIELDS, _masked_probe)}


def _shown(key: str, value: Any) -> Any:
    masker = _MASKED_FIELDS.get(key)
    return _short(masker(value) if masker else value)


def template_changes(before: dict[str, Any], after: dict[str, Any]) -> list[TemplateChange]:
    """What changed from pod template `before` to `after` (each a template with metadata+spec)."""
    changes: list[TemplateChange] = []
    spec_a, spec_b = before.get("spec") or {}, after.get("spec") or {}
    for group in ("initContainers", "containers"):
        old = {c.get("name"): c for c in spec_a.get(group) or []}
        new = {c.get("name"): c for c in spec_b.get(group) or []}
        prefix = "initContainers" if group == "initContainers" else "containers"
        for name in sorted(set(old) | set(new)):
            a, b = old.get(name), new.get(name)
            if a is None or b is None:
                changes.append(TemplateChange(f"{prefix}[{name}]", "present" if a else None, "present" if b else None))
                continue
            for key in _CONTAINER_FIELDS:
                if a.get(key) != b.get(key):
                    changes.append(TemplateChange(f"{prefix}[{name}].{key}", _shown(key, a.get(key)),
                                                  _shown(key, b.get(key))))
            env_a, env_b = _env(a), _env(b)
            for var in sorted(set(env_a) | set(env_b)):
                if env_a.get(var, KeyError) != env_b.get(var, KeyError):
                    changes.append(TemplateChange(f"{prefix}[{name}].env.{var}",
                                                  _env_shown(var, env_a[var]) if var in env_a else None,
                                                  _env_shown(var, env_b[var]) if var in env_b else None))
    for key in _POD_FIELDS:
        if spec_a.get(key) != spec_b.get(key):
            changes.append(TemplateChange(f"spec.{key}", _short(spec_a.get(key)), _short(spec_b.get(key))))
    ann_a = (before.get("metadata") or {}).get("annotations") or {}
    ann_b = (after.get("metadata") or {}).get("annotations") or {}
    for key in sorted(set(ann_a) | set(ann_b)):
        if key not in _IGNORED_ANNOTATIONS and ann_a.get(key) != ann_b.get(key):
            changes.append(TemplateChange(f"annotations.{key}", ann_a.get(key), ann_b.get(key)))
    return changes


def _replicaset_revision(rs: dict[str, Any]) -> Revision | None:
    meta, status = rs.get("metadata") or {}, rs.get("status") or {}
    number = _int((meta.get("annotations") or {}).get(REVISION_ANNOTATION))
    if number is None:
        return None
    template = (rs.get("spec") or {}).get("template") or {}
    return Revision(number=number, name=meta.get("name", "?"),
                    hash=(meta.get("labels") or {}).get("pod-template-hash"),
                    created_at=parse_time(meta.get("creationTimestamp")), template=template,
                    replicas=int(status.get("replicas") or 0), ready=int(status.get("readyReplicas") or 0))


def _controller_revision(cr: dict[str, Any]) -> Revision | None:
    meta, data = cr.get("metadata") or {}, cr.get("data") or {}
    number = _int(cr.get("revision"))
    if number is None:
        return None
    template = ((data.get("spec") or {}).get("template")) or {}
    name = meta.get("name", "?")
    labels = meta.get("labels") or {}
    return Revision(number=number, name=name, hash=labels.get("controller-revision-hash") or name.rsplit("-", 1)[-1],
                    created_at=parse_time(meta.get("creationTimestamp")), template=template, replicas=0, ready=0)


def rollout_view(workload: dict[str, Any], owned: list[dict[str, Any]]) -> RolloutView:
    """History of `workload` from the ReplicaSets or ControllerRevisions it owns."""
    ref = ref_of(workload)
    revisions: list[Revision] = []
    for item in owned:
        if controller_of(item) != ref:
            continue
        revision = _replicaset_revision(item) if item.get("kind", "ReplicaSet") == "ReplicaSet" \
            else _controller_revision(item)
        if revision is not None:
            revisions.append(revision)
    revisions.sort(key=lambda r: r.number)
    current = revisions[-1] if revisions else None
    if current is not None and ref.kind == "Deployment":
        wanted = _int(((workload.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANNOTATION))
        current = next((r for r in revisions if r.number == wanted), current)
    previous = max((r for r in revisions if current and r.number < current.number), key=lambda r: r.number,
                   default=None)
    changes = template_changes(previous.template, current.template) if current and previous else []
    return RolloutView(workload=ref, revisions=revisions, current=current, previous=previous, changes=changes,
                       in_progress=_in_progress(workload))


def _in_progress(workload: dict[str, Any]) -> bool:
    spec, status = workload.get("spec") or {}, workload.get("status") or {}
    kind = workload.get("kind")
    if kind == "Deployment":
        progressing = conditions_of(workload).get("Progressing")
        if progressing and progressing[1] == "ProgressDeadlineExceeded":
            return True
        return int(status.get("updatedReplicas") or 0) < int(spec.get("replicas", 1) or 0)
    if kind == "StatefulSet":
        return bool(status.get("updateRevision")) and status.get("updateRevision") != status.get("currentRevision")
    if kind == "DaemonSet":
        return int(status.get("updatedNumberScheduled") or 0) < int(status.get("desiredNumberScheduled") or 0)
    return False


def rollout_from_pods(workload: dict[str, Any], pods: list[dict[str, Any]]) -> RolloutView | None:
    """History of a StatefulSet or DaemonSet without readable ControllerRevisions, from its
    pods: each `controller-revision-hash` is a revision, dated by its oldest pod, its template
    taken from a pod's spec. The current one is the StatefulSet's `updateRevision`, else the
    newest hash. Good enough to tell "the new pods fail, the old ones serve" and what differs."""
    ref = ref_of(workload)
    by_hash: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        revision_hash = labels.get("controller-revision-hash")
        if revision_hash:
            by_hash.setdefault(revision_hash, []).append(pod)
    if len(by_hash) < 2:
        return None
    revisions = []
    for revision_hash, members in by_hash.items():
        oldest = min(members, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
        spec = oldest.get("spec") or {}
        template = {"metadata": {}, "spec": {k: spec.get(k) for k in ("containers", "initContainers", "volumes")
                                             if spec.get(k) is not None}}
        revisions.append(Revision(number=0, name=f"{ref.name}-{revision_hash}", hash=revision_hash,
                                  created_at=parse_time((oldest.get("metadata") or {}).get("creationTimestamp")),
                                  template=template, replicas=len(members), ready=0))
    revisions.sort(key=lambda r: r.created_at or datetime.min.replace(tzinfo=UTC))
    revisions = [replace(r, number=index + 1) for index, r in enumerate(revisions)]
    wanted = ((workload.get("status") or {}).get("updateRevision") or "").rsplit("-", 1)[-1]
    current = next((r for r in revisions if wanted and r.hash == wanted), revisions[-1])
    previous = max((r for r in revisions if r is not current and (r.created_at or datetime.min.replace(tzinfo=UTC))
                    <= (current.created_at or datetime.max.replace(tzinfo=UTC))), key=lambda r: r.number,
                   default=None)
    changes = template_changes(previous.template, current.template) if previous else []
    return RolloutView(workload=ref, revisions=revisions, current=current, previous=previous, changes=changes,
                       in_progress=_in_progress(workload))
