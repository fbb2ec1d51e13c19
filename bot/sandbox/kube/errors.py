"""API errors of the sandbox API server, rendered as real `metav1.Status` objects.

Every failure the server answers is an `ApiError`; the HTTP layer turns it into a `Status`
body with the same `code` as the HTTP status, so the real client raises `ApiException` with
the status, reason and message a real API server would give.
"""

from __future__ import annotations

from typing import Any

from bot.sandbox.kube.resources import ResourceType


class ApiError(Exception):
    """A failed API request: HTTP `code`, Status `reason`, human `message`, optional details."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def to_status(self) -> dict[str, Any]:
        """The `Status` object for the response body."""
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def _details(rt: ResourceType | None, name: str | None, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if rt is not None:
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural
    details.update(extra)
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.qualified} "{name}" not found', _details(rt, name))


def namespace_not_found(namespace: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'namespaces "{namespace}" not found',
        {"name": namespace, "kind": "namespaces"},
    )


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rt.qualified} "{name}" already exists', _details(rt, name))


def conflict(rt: ResourceType, name: str) -> ApiError:
    message = (
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    return ApiError(409, "Conflict", message, _details(rt, name))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(rt: ResourceType, name: str, field: str, message: str) -> ApiError:
    """422 Invalid, as validation failures are reported (`Kind.group "name" is invalid: ...`)."""
    full = f'{rt.qualified_kind} "{name}" is invalid: {field}: {message}'
    cause = {"reason": "FieldValueInvalid", "message": message, "field": field}
    details = _details(rt, name, causes=[cause])
    details["kind"] = rt.kind
    return ApiError(422, "Invalid", full, details)


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message, {})


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415, "UnsupportedMediaType", f'the body of the request was in an unknown format: "{content_type}"'
    )


def too_many_requests(message: str, causes: list[dict[str, str]]) -> ApiError:
    return ApiError(429, "TooManyRequests", message, {"causes": causes})


SERVICE_ACCOUNT = "system:serviceaccount:opsbot:opsbot"


def forbidden(rt: ResourceType, name: str | None, verb: str, resource: str, namespace: str | None) -> ApiError:
    """RBAC's refusal, worded as the real API server words it."""
    subject = f'{rt.qualified} "{name}"' if name else rt.qualified
    where = f' in the namespace "{namespace}"' if namespace else ""
    return ApiError(403, "Forbidden", f'{subject} is forbidden: User "{SERVICE_ACCOUNT}" cannot {verb} resource '
                                      f'"{resource}" in API group "{rt.group}"{where}', _details(rt, name))
