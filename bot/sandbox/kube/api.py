"""Routing of Kubernetes REST paths to the sandbox's verbs, independent of the HTTP server.

`handle(cluster, request)` turns one request into one response. It holds the cluster lock for
the whole request, converts every `ApiError` into a `Status` body with the matching HTTP code,
and records every mutating request on a resource path (POST, PUT, PATCH, DELETE), successful or
not, in `cluster.mutations`, so the record's order is the order in which writes took effect.

Paths served: `/version`, `/healthz`, `/api`, `/api/v1`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`
and the resource paths `/api/v1/...` and `/apis/{g}/{v}/...` (cluster-wide or
`namespaces/{ns}/...`, object names, and the `status`, `scale`, `log` and `eviction`
subresources). Watches are refused with 400: nothing in the bot watches.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from bot.sandbox.kube import subresources, verbs
from bot.sandbox.kube.cluster import SandboxCluster
from bot.sandbox.kube.errors import ApiError, bad_request, forbidden, method_not_allowed, path_not_found
from bot.sandbox.kube.logs import parse_log_options
from bot.sandbox.kube.resources import ResourceType

VERSION_INFO: Mapping[str, str] = MappingProxyType(
    {
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-opsbot-sandbox",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }
)

_MUTATING = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP request as the API layer needs it (query: the last value of each parameter)."""

    method: str
    path: str
    query: Mapping[str, str]
    body: bytes = b""
    content_type: str | None = None
    server_address: str = "127.0.0.1"


@dataclass(frozen=True)
class ApiResponse:
    code: int
    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True)
class Route:
    """A parsed resource path."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


def _json(code: int, payload: Any) -> ApiResponse:
    return ApiResponse(code, json.dumps(payload, separators=(",", ":")).encode())


def _error(error: ApiError) -> ApiResponse:
    return _json(error.code, error.to_status())


def handle(cluster: SandboxCluster, request: ApiRequest) -> ApiResponse:
    """Serve one request; never raises for client errors (they become Status responses)."""
    with cluster.lock:
        try:
            return _dispatch(cluster, request)
        except ApiError as error:
            return _error(error)


def _segments(path: str) -> list[str]:
    return [s for s in path.split("?")[0].split("/") if s]


def _discovery(cluster: SandboxCluster, request: ApiRequest, segments: list[str]) -> ApiResponse | None:
    registry = cluster.registry
    if segments in (["version"], ["version", ""]):
        return _json(200, dict(VERSION_INFO))
    if segments and segments[0] in ("healthz", "livez", "readyz"):
        return ApiResponse(200, b"ok", "text/plain; charset=utf-8")
    if segments == ["api"]:
        return _json(200, registry.api_versions(request.server_address))
    if segments == ["api", "v1"]:
        return _json(200, registry.api_resource_list("", "v1"))
    if segments == ["apis"]:
        return _json(200, registry.api_group_list())
    if len(segments) == 2 and segments[0] == "apis":
        doc = registry.api_group(segments[1])
        if doc is None:
            raise path_not_found()
        return _json(200, doc)
    if len(segments) == 3 and segments[0] == "apis":
        doc = registry.api_resource_list(segments[1], segments[2])
        if doc is None:
            raise path_not_found()
        return _json(200, doc)
    return None


def parse_route(cluster: SandboxCluster, segments: list[str]) -> Route:
    """Resolve a resource path to (resource, namespace, name, subresource) or raise 404/400."""
    if segments[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", segments[2:]
    elif len(segments) >= 3 and segments[0] == "apis":
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        raise path_not_found()
    if not rest:
        raise path_not_found()
    if rest[0] == "watch":
        raise bad_request("watch is not supported by the opsbot sandbox API server")
    registry = cluster.registry
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and registry.lookup(group, version, rest[2]) is not None:
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        raise path_not_found()
    rt = registry.lookup(group, version, rest[0])
    if rt is None:
        raise path_not_found()
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    if namespace is not None and not rt.namespaced:
        raise path_not_found()
    if rt.namespaced and namespace is None and name is not None:
        raise path_not_found()
    if subresource is not None and subresource not in rt.subresources:
        raise path_not_found()
    return Route(rt, namespace, name, subresource)


def _parse_body(request: ApiRequest) -> Any:
    if not request.body:
        return None
    try:
        return json.loads(request.body)
    except ValueError as exc:
        raise bad_request(f"the body of the request could not be decoded as JSON: {exc}") from exc


def _dry_run(request: ApiRequest, body: Any = None) -> bool:
    """`dryRun=All` from the query, or from a DeleteOptions body; other values are a 400."""
    value = request.query.get("dryRun")
    from_body = body.get("dryRun") if isinstance(body, dict) else None
    if from_body:
        if from_body != ["All"]:
            raise bad_request(f'dryRun: Unsupported value: "{from_body}": supported values: "All"')
        return True
    if value is None or value == "":
        return False
    if value != "All":
        raise bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    return True


def _authorise(cluster: SandboxCluster, route: Route, method: str) -> None:
    verb = _MUTATING.get(method) or ("get" if route.name is not None else "list")
    resource = route.rt.plural + (f"/{route.subresource}" if route.subresource else "")
    if cluster.is_denied(verb, resource):
        raise forbidden(route.rt, route.name, verb, resource, route.namespace)


def _dispatch(cluster: SandboxCluster, request: ApiRequest) -> ApiResponse:
    segments = _segments(request.path)
    method = request.method.upper()
    if method == "GET":
        discovery = _discovery(cluster, request, segments)
        if discovery is not None:
            return discovery
    route = parse_route(cluster, segments)
    _authorise(cluster, route, method)
    if method in _MUTATING:
        return _mutate(cluster, request, route, method)
    if method != "GET":
        raise method_not_allowed()
    if request.query.get("watch", "").lower() in ("true", "1"):
        raise bad_request("watch is not supported by the opsbot sandbox API server")
    rt, namespace, name, sub = route.rt, route.namespace, route.name, route.subresource
    if name is None:
        return _json(
            200,
            verbs.list_objects(
                cluster, rt, namespace, request.query.get("labelSelector"), request.query.get("fieldSelector")
            ),
        )
    if sub == "log":
        text = subresources.pod_log(cluster, rt, namespace, name, parse_log_options(request.query))
        return ApiResponse(200, text.encode(), "text/plain")
    if sub == "scale":
        return _json(200, subresources.read_scale(cluster, rt, namespace, name))
    if sub == "eviction":
        raise method_not_allowed()
    return _json(200, verbs.get_object(cluster, rt, namespace, name))


def _mutate(cluster: SandboxCluster, request: ApiRequest, route: Route, method: str) -> ApiResponse:
    body: Any = None
    dry_run = False
    verb = _MUTATING[method]
    if route.name is None and method == "DELETE":
        verb = "deletecollection"
    try:
        body = _parse_body(request)
        dry_run = _dry_run(request, body if method == "DELETE" else None)
        if route.subresource == "eviction" and method == "POST":
            dry_run = dry_run or subresources.eviction_dry_run(body)
        code, payload = _write(cluster, request, route, method, body, dry_run)
    except ApiError as error:
        code, payload = error.code, error.to_status()
    cluster.record_mutation(
        verb=verb,
        path=request.path.split("?")[0],
        rt=route.rt,
        namespace=route.namespace,
        name=route.name or _body_name(body),
        subresource=route.subresource,
        dry_run=dry_run,
        code=code,
        content_type=request.content_type,
        body=body,
    )
    return _json(code, payload)


def _body_name(body: Any) -> str | None:
    if isinstance(body, dict):
        meta = body.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("name"), str):
            return meta["name"]
    return None


def _write(
    cluster: SandboxCluster, request: ApiRequest, route: Route, method: str, body: Any, dry_run: bool
) -> tuple[int, Any]:
    rt, namespace, name, sub = route.rt, route.namespace, route.name, route.subresource
    if "create" not in rt.verbs:
        raise method_not_allowed()
    if name is None:
        if method == "POST":
            if rt.namespaced and namespace is None:
                raise method_not_allowed()
            return 201, verbs.create_object(cluster, rt, namespace, body, dry_run)
        if method == "DELETE":
            options = body if isinstance(body, dict) else {}
            query = request.query
            return 200, verbs.delete_collection(
                cluster,
                rt,
                namespace,
                query.get("labelSelector"),
                query.get("fieldSelector"),
                options,
                dry_run,
            )
        raise method_not_allowed()
    if sub == "eviction":
        if method != "POST":
            raise method_not_allowed()
        return 201, subresources.evict(cluster, rt, namespace, name, body, dry_run)
    if sub == "log":
        raise method_not_allowed()
    if method == "POST":
        raise method_not_allowed()
    if method == "DELETE":
        if sub is not None:
            raise method_not_allowed()
        options = body if isinstance(body, dict) else {}
        if request.query.get("propagationPolicy"):
            options = {**options, "propagationPolicy": request.query["propagationPolicy"]}
        if request.query.get("gracePeriodSeconds"):
            try:
                grace = int(request.query["gracePeriodSeconds"])
            except ValueError as exc:
                raise bad_request(
                    f"invalid gracePeriodSeconds: {request.query['gracePeriodSeconds']!r}"
                ) from exc
            options = {**options, "gracePeriodSeconds": grace}
        return 200, verbs.delete_object(cluster, rt, namespace, name, options, dry_run)
    content_type = (request.content_type or "application/json").split(";")[0].strip()
    if sub == "scale":
        patch_type = content_type if method == "PATCH" else None
        return 200, subresources.write_scale(cluster, rt, namespace, name, body, patch_type, dry_run)
    if method == "PUT":
        return 200, verbs.update_object(cluster, rt, namespace, name, body, sub, dry_run)
    return 200, verbs.patch_object(cluster, rt, namespace, name, body, content_type, sub, dry_run)
