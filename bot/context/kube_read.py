"""Read-only calls to the Kubernetes API, each bounded in time, none able to fail the caller.

Objects come back as plain dicts in the API's own shape (camelCase, as `kubectl get -o json`
prints them): the typed client is asked not to deserialise (`_preload_content=False`), which
keeps every field a newer server adds and costs less. A call that fails returns None and
records a `Gap` saying what could not be checked and why (forbidden by RBAC, not found, timed
out, API server unreachable), so the RCA can say so.

Only get, list and pod logs are used: the bot reads, and Secrets are never read (see
deploy/kubernetes/base/rbac.yaml).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.context.model import Gap

log = logging.getLogger(__name__)
LIST_LIMIT = 500
LOG_LIMIT_BYTES = 256 * 1024
MIN_REQUEST_SECONDS = 0.2


def _why(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        if exc.status == 403:
            return "forbidden by RBAC"
        if exc.status == 404:
            return "not found"
        if exc.status == 401:
            return "not authorised (credentials rejected)"
        return f"the API server answered {exc.status} {exc.reason or ''}".strip()
    text = str(exc)
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return "timed out"
    if "refused" in text.lower() or "Max retries" in text:
        return "API server unreachable"
    return f"{type(exc).__name__}"


API_CLASSES = ("CoreV1Api", "AppsV1Api", "BatchV1Api", "AutoscalingV2Api", "StorageV1Api", "NetworkingV1Api",
               "CustomObjectsApi", "AdmissionregistrationV1Api", "ApiregistrationV1Api")


def load_api_classes() -> None:
    """Import the client's API modules now. The `kubernetes` package loads each on first use
    (about a second for all of them on a small machine), which would otherwise come out of the
    first investigation's time budget and leave its reads unread."""
    for name in API_CLASSES:
        getattr(k8s, name)


class KubeReader:
    """Bounded reads for one investigation. Thread-safe: gatherers run in parallel."""

    def __init__(self, api_client: k8s.ApiClient, deadline: float, request_seconds: float = 5.0):
        self.core = k8s.CoreV1Api(api_client)  # the classes of API_CLASSES
        self.apps = k8s.AppsV1Api(api_client)
        self.batch = k8s.BatchV1Api(api_client)
        self.autoscaling = k8s.AutoscalingV2Api(api_client)
        self.storage = k8s.StorageV1Api(api_client)
        self.networking = k8s.NetworkingV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self.admission = k8s.AdmissionregistrationV1Api(api_client)
        self.apiregistration = k8s.ApiregistrationV1Api(api_client)
        self._deadline, self._request_seconds = deadline, request_seconds
        self._lock = threading.Lock()
        self.gaps: list[Gap] = []
        self.calls = 0

    def _timeout(self) -> float | None:
        left = self._deadline - time.monotonic()
        return None if left < MIN_REQUEST_SECONDS else min(self._request_seconds, left)

    def _gap(self, what: str, why: str) -> None:
        with self._lock:
            if all(g.what != what for g in self.gaps):
                self.gaps.append(Gap(what, why))

    def _call(self, what: str, method, *args, quiet: tuple[int, ...] = (), **kwargs) -> Any:
        timeout = self._timeout()
        if timeout is None:
            self._gap(what, "the investigation's time budget ran out")
            return None
        with self._lock:
            self.calls += 1
        try:
            response = method(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
            return response.data
        except Exception as exc:  # noqa: BLE001 - every failure becomes a gap, never an error
            if isinstance(exc, ApiException) and exc.status in quiet:
                return None
            why = _why(exc)
            if not (isinstance(exc, ApiException) and exc.status == 404):
                log.info("kubernetes read failed: %s: %s", what, why)
            self._gap(what, why)
            return None

    def items(self, what: str, method, *args, quiet_404: bool = False, **kwargs) -> list[dict[str, Any]] | None:
        """A list call's items, or None when it could not be read (`quiet_404`: a kind this
        cluster may not have, such as a custom resource, is no gap)."""
        data = self._call(what, method, *args, quiet=(404,) if quiet_404 else (), limit=LIST_LIMIT, **kwargs)
        if data is None:
            return None
        try:
            return list(json.loads(data).get("items") or [])
        except (ValueError, AttributeError):
            self._gap(what, "the API server's answer was not JSON")
            return None

    def one(self, what: str, method, *args, quiet_404: bool = False, **kwargs) -> dict[str, Any] | None:
        data = self._call(what, method, *args, quiet=(404,) if quiet_404 else (), **kwargs)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            self._gap(what, "the API server's answer was not JSON")
            return None

    def pod_log(self, namespace: str, pod: str, container: str, previous: bool, tail_lines: int) -> str | None:
        what = f"{'previous ' if previous else ''}logs of {namespace}/{pod} ({container})"
        # 400: the container has no such instance yet (waiting to start, or never restarted)
        data = self._call(what, self.core.read_namespaced_pod_log, pod, namespace, quiet=(400,), container=container,
                          previous=previous, tail_lines=tail_lines, limit_bytes=LOG_LIMIT_BYTES, timestamps=False)
        if data is None:
            return None
        return data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(data)
