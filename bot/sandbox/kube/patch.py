"""The three patch formats of the Kubernetes API, applied to plain JSON objects.

- `application/json-patch+json` (RFC 6902) through the `jsonpatch` library;
- `application/merge-patch+json` (RFC 7386): maps merge, `null` deletes, lists are replaced;
- `application/strategic-merge-patch+json`: like a merge patch, except that the lists Kubernetes
  declares with `patchStrategy: merge` are merged element by element on their patch merge key
  (containers/env/volumes by `name`, volumeMounts by `mountPath`, container ports by
  `containerPort`, conditions by `type`, ...) and the directives `$patch: delete|replace|merge`,
  `$retainKeys`, `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` are honoured.

Every function returns a new object and never mutates its inputs. Failures raise `ApiError`
(400 for a malformed patch, 422 for a JSON patch operation that cannot apply), as a real API
server answers.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import jsonpatch

from bot.sandbox.kube.errors import ApiError, bad_request, unsupported_media_type

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_CONTAINER_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})

# Lists of maps merged by key: field name -> patch merge key (the context-free cases).
_MERGE_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "containers": "name",
        "initContainers": "name",
        "ephemeralContainers": "name",
        "env": "name",
        "volumes": "name",
        "volumeMounts": "mountPath",
        "volumeDevices": "devicePath",
        "imagePullSecrets": "name",
        "conditions": "type",
        "ownerReferences": "uid",
        "hostAliases": "ip",
        "topologySpreadConstraints": "topologyKey",
        "resourceClaims": "name",
    }
)

# Lists of scalars with patchStrategy merge (set union).
_PRIMITIVE_MERGE_LISTS = frozenset({"finalizers"})


def merge_key_for(path: tuple[str, ...]) -> str | None:
    """The patch merge key of the list at `path` (field names, list indexes left out), or None.

    None means the list is atomic and a patch replaces it whole.
    """
    if not path:
        return None
    field = path[-1]
    if field == "ports":
        # Container ports merge on containerPort; a Service's ports on port.
        return "containerPort" if len(path) >= 2 and path[-2] in _CONTAINER_LISTS else "port"
    if field == "addresses":
        # Node status addresses merge on type; Endpoints subsets' addresses are atomic.
        return "type" if len(path) >= 2 and path[-2] == "status" else None
    return _MERGE_KEYS.get(field)


def apply_patch(original: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """Apply a patch of the given content type to `original`; returns the patched copy."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == JSON_PATCH:
        return apply_json_patch(original, patch)
    if media == MERGE_PATCH:
        if not isinstance(patch, dict):
            raise bad_request("a merge patch must be a JSON object")
        return json_merge_patch(original, patch)
    if media == STRATEGIC_MERGE_PATCH:
        if not isinstance(patch, dict):
            raise bad_request("a strategic merge patch must be a JSON object")
        return strategic_merge_patch(original, patch)
    raise unsupported_media_type(content_type)


def apply_json_patch(original: dict[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902: a list of operations, applied in order, all or nothing."""
    if not isinstance(operations, list):
        raise bad_request("a JSON patch must be a list of operations")
    try:
        patched = jsonpatch.JsonPatch(operations).apply(copy.deepcopy(original))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, TypeError) as exc:
        raise ApiError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
        ) from exc
    if not isinstance(patched, dict):
        raise ApiError(422, "Invalid", "the patched document is not an object")
    return patched


def json_merge_patch(original: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, `null` deletes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(original) if isinstance(original, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Kubernetes strategic merge patch for built-in kinds (see the module docstring)."""
    merged = _merge_map(copy.deepcopy(original), patch, ())
    return merged if merged is not None else {}


def _merge_map(
    original: dict[str, Any] | None, patch: dict[str, Any], path: tuple[str, ...]
) -> dict[str, Any] | None:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return _strip_directives(patch)
    if directive not in (None, "merge"):
        raise bad_request(f"unknown patch type {directive!r} in strategic merge patch")
    result: dict[str, Any] = dict(original) if isinstance(original, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if not isinstance(value, list):
                raise bad_request(f"{key} must be a list")
            current = result.get(field)
            if isinstance(current, list):
                result[field] = [item for item in current if item not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        child_path = (*path, key)
        if isinstance(value, dict):
            merged = _merge_map(
                result.get(key) if isinstance(result.get(key), dict) else None, value, child_path
            )
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, child_path)
        else:
            result[key] = copy.deepcopy(value)
    if retain is not None:
        if not isinstance(retain, list):
            raise bad_request("$retainKeys must be a list of field names")
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(original: Any, patch: list[Any], path: tuple[str, ...]) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" and len(item) == 1 for item in patch):
        return [
            _strip_directives(item)
            for item in patch
            if not (isinstance(item, dict) and item.get("$patch") == "replace")
        ]
    current: list[Any] = list(original) if isinstance(original, list) else []
    if path and path[-1] in _PRIMITIVE_MERGE_LISTS:
        for item in patch:
            if item not in current:
                current.append(copy.deepcopy(item))
        return current
    key = merge_key_for(path)
    if key is None or not all(isinstance(item, dict) for item in patch):
        return [_strip_directives(item) for item in patch]
    for item in patch:
        if key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {key}")
        index = next(
            (
                i
                for i, existing in enumerate(current)
                if isinstance(existing, dict) and existing.get(key) == item[key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del current[index]
            continue
        if index is None:
            current.append(_strip_directives(item))
        else:
            merged = _merge_map(current[index], item, path)
            if merged is None:
                del current[index]
            else:
                current[index] = merged
    return current


def _strip_directives(value: Any) -> Any:
    """A deep copy without `$`-directives and without null-valued keys."""
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return copy.deepcopy(value)
