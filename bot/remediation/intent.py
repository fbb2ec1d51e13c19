"""What a step is about to write, recorded before the write, and whether the live object shows it.

A worker can die between sending a write to the API server and recording its answer. To tell
afterwards whether the write happened, the executor records the step's *intent* durably first:
the exact calls its dry run made (`Recorder`), which are the calls the real write repeats. The
recovery (`bot.remediation.recovery`) then re-reads the live objects and compares
(`judge`):

- `applied`: every call's effect is visible (a patch's fields hold their new values, the
  replicas are the new count, a deleted or evicted pod is gone or replaced, a Job exists);
- `not_applied`: no call's effect is visible and, where the step captured an undo, the object
  still holds the values from before;
- `undecided`: anything else (partly applied, or changed by someone else since): a person looks.

Comparison is "the live object contains the planned values": the API server adds defaults
and status, so equality would call every applied write unapplied. Lists of named entries
(containers) are matched by name, as a strategic merge patch merges them. And it returns what
it stored, not what was sent: false, zero and empty fields are left out (the undo of a cordon,
`unschedulable: false`, shows as no field), and quantities are canonical (`1024Mi` reads back
`1Gi`), so a missing field meets a wanted empty value and quantities compare by value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from kubernetes.utils import parse_quantity

from bot.remediation.kube_write import JSON_PATCH, STRATEGIC, KubeWriter, WriteError

Verdict = Literal["applied", "not_applied", "undecided"]


class _Intercepted:
    """A `KubeWriter` stand-in that passes every call through to the real writer and shows each
    mutating one (with whether it is a dry run) to `_before` first; reads go straight through."""

    def __init__(self, writer: KubeWriter):
        self._writer = writer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)

    def _before(self, call: dict[str, Any], dry_run: bool) -> None:
        raise NotImplementedError

    def patch(self, kind: str, namespace: str | None, name: str, body: Any, content_type: str,
              dry_run: bool) -> dict[str, Any]:
        self._before({"verb": "patch", "kind": kind, "namespace": namespace, "name": name, "body": body,
                      "content_type": content_type}, dry_run)
        return self._writer.patch(kind, namespace, name, body, content_type, dry_run)

    def scale(self, kind: str, namespace: str, name: str, replicas: int, dry_run: bool) -> dict[str, Any]:
        self._before({"verb": "scale", "kind": kind, "namespace": namespace, "name": name, "replicas": replicas},
                     dry_run)
        return self._writer.scale(kind, namespace, name, replicas, dry_run)

    def delete_pod(self, namespace: str, name: str, dry_run: bool) -> dict[str, Any]:
        self._before({"verb": "delete_pod", "kind": "Pod", "namespace": namespace, "name": name}, dry_run)
        return self._writer.delete_pod(namespace, name, dry_run)

    def evict(self, namespace: str, name: str, dry_run: bool) -> dict[str, Any]:
        self._before({"verb": "evict", "kind": "Pod", "namespace": namespace, "name": name}, dry_run)
        return self._writer.evict(namespace, name, dry_run)

    def create_job(self, namespace: str, body: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        self._before({"verb": "create_job", "kind": "Job", "namespace": namespace, "name": body["metadata"]["name"]},
                     dry_run)
        return self._writer.create_job(namespace, body, dry_run)


class Recorder(_Intercepted):
    """For a dry run: records every mutating call (a pod's with the uid it has now, so a pod
    replaced under the same name reads as deleted)."""

    def __init__(self, writer: KubeWriter):
        super().__init__(writer)
        self.calls: list[dict[str, Any]] = []

    def _before(self, call: dict[str, Any], dry_run: bool) -> None:
        if call["kind"] == "Pod":
            call["uid"] = (self._writer.get("Pod", call["namespace"], call["name"]).get("metadata") or {}).get("uid")
        self.calls.append(call)


class Leased(_Intercepted):
    """For the real write: `renew()` runs before each mutating call that is not a dry run, and
    raises (the executor's `LeaseLost`) when this worker no longer holds the step's lease.

    Why per call: a write made of many calls (a drain: cordon, then one eviction per pod) can
    outlast the lease even though each call is bounded by half of it. Renewed before each call,
    the lease always outlives the call in flight, so a live worker is never taken for a dead
    one; and a worker that did lose it (it hung past the lease, and another recovered the step)
    stops before its next call instead of writing under the recovery's feet."""

    def __init__(self, writer: KubeWriter, renew: Callable[[], None]):
        super().__init__(writer)
        self._renew = renew

    def _before(self, call: dict[str, Any], dry_run: bool) -> None:
        if not dry_run:
            self._renew()


def undo_calls(undo: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A captured undo (`operations.Plan.undo`) in the same shape as recorded calls."""
    if not undo:
        return []
    if undo["method"] == "scale":
        return [{"verb": "scale", "kind": undo["kind"], "namespace": undo["namespace"], "name": undo["name"],
                 "replicas": int(undo["replicas"])}]
    return [{"verb": "patch", "kind": undo["kind"], "namespace": undo["namespace"], "name": undo["name"],
             "body": undo["body"], "content_type": undo["content_type"]}]


def _empty(value: Any) -> bool:
    """What a real API server leaves out of an object it returns (`omitempty`): a field set to
    false, zero, "" or an empty list or map reads back as no field at all."""
    return value is None or (isinstance(value, (bool, int, float, str, list, dict)) and not value)


def _quantities(live: Any, want: Any) -> tuple[Decimal, Decimal] | None:
    """Both values as Kubernetes quantities, when both are (at least one a string): the API
    server stores quantities canonically (`1024Mi` reads back `1Gi`, `0.5` reads back `500m`)."""
    if not any(isinstance(v, str) for v in (live, want)) or \
            not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in (live, want)):
        return None
    try:
        return Decimal(parse_quantity(str(live))), Decimal(parse_quantity(str(want)))
    except (ValueError, ArithmeticError):
        return None


def contains(live: Any, want: Any, by_name: bool = False) -> bool:
    """Whether `live` (as a real API server returns it) holds every value of `want`: a None in
    `want` means "absent", a wanted false/zero/empty value is also met by an absent field, and
    two quantities are equal when their values are (whatever their spelling)."""
    if isinstance(want, dict):
        return isinstance(live, dict) and all(
            live.get(key) is None if value is None else
            contains(live[key], value, by_name) if key in live else _empty(value)
            for key, value in want.items())
    if isinstance(want, list):
        if not isinstance(live, list):
            return False
        if by_name and want and all(isinstance(w, dict) and "name" in w for w in want):
            named = {item.get("name"): item for item in live if isinstance(item, dict)}
            return all(w["name"] in named and contains(named[w["name"]], w, by_name) for w in want)
        return len(live) == len(want) and all(contains(x, w, by_name) for x, w in zip(live, want, strict=True))
    if live == want:
        return True
    values = _quantities(live, want)
    return values is not None and values[0] == values[1]


def _pointer(obj: Any, path: str) -> tuple[bool, Any]:
    for part in [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]:
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            return False, None
    return True, obj


def _patch_holds(live: dict[str, Any], call: dict[str, Any]) -> bool:
    if call["content_type"] == JSON_PATCH:
        for op in call["body"]:
            found, value = _pointer(live, op["path"])
            if op["op"] in ("add", "replace") and not (found and contains(value, op["value"])):
                return False
            if op["op"] == "remove" and found:
                return False
        return True
    return contains(live, call["body"], by_name=call["content_type"] == STRATEGIC)


def holds(writer: KubeWriter, call: dict[str, Any]) -> bool:
    """Whether the live object shows `call`'s effect. Raises WriteError when it cannot be read."""
    try:
        live = writer.get(call["kind"], call["namespace"], call["name"])
    except WriteError as exc:
        if exc.kind != "not_found":
            raise
        return call["verb"] in ("delete_pod", "evict")
    if call["verb"] == "patch":
        return _patch_holds(live, call)
    if call["verb"] == "scale":
        return int((live.get("spec") or {}).get("replicas", 1)) == int(call["replicas"])
    if call["verb"] in ("delete_pod", "evict"):
        meta = live.get("metadata") or {}
        return meta.get("uid") != call.get("uid") or bool(meta.get("deletionTimestamp"))
    return call["verb"] == "create_job"


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    detail: str


def judge(writer: KubeWriter, calls: list[dict[str, Any]], before: list[dict[str, Any]]) -> Judgement:
    """Whether `calls` (the recorded intent) took effect; `before` are the calls that would
    restore the earlier state (the captured undo), empty when none was captured."""
    done = [holds(writer, call) for call in calls]
    if calls and all(done):
        return Judgement("applied", "the live object shows the planned change")
    if any(done):
        return Judgement("undecided", f"{sum(done)} of {len(done)} planned writes show on the live objects")
    if before and not all(holds(writer, call) for call in before):
        return Judgement("undecided", "the live object shows neither the planned change nor its earlier state "
                                      "(changed by someone else since?)")
    return Judgement("not_applied", "the live object still shows its earlier state")
