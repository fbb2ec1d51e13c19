"""kube-state-metrics for the sandbox: its live state as the series verification queries read.

A real Prometheus scrapes this endpoint (`scrape_config`), so a runbook's verify PromQL sees the
sandbox change after a step exactly as it would see a real cluster change: a rollback that
makes the pods healthy raises `kube_deployment_status_replicas_available` when pods were
unavailable; a stuck rollout with `maxUnavailable: 0` keeps the old revision available and shows
instead as one pod too many in `kube_deployment_status_replicas` and `..._unavailable`, which the
rollback removes; a cordon sets `kube_node_spec_unschedulable`; cert-manager Certificates give
`certmanager_certificate_expiration_timestamp_seconds` from status.notAfter, as cert-manager's own
exporter does (so renew-certificate's verification sees a renewal). Only the series the built-in
runbooks, the demo and the tests read are exported, with kube-state-metrics' names and labels.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any

from bot.sandbox.kube.cluster import SandboxCluster
from bot.sandbox.loopback_http import TrackingHTTPServer


def _esc(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _line(name: str, labels: dict[str, Any], value: float) -> str:
    inner = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {value:g}"


def render(cluster: SandboxCluster) -> str:
    lines: list[str] = []
    with cluster.lock:
        for d in cluster.list("Deployment"):
            meta, spec, status = d.get("metadata") or {}, d.get("spec") or {}, d.get("status") or {}
            key = {"namespace": meta.get("namespace"), "deployment": meta.get("name")}
            lines.append(_line("kube_deployment_spec_replicas", key, spec.get("replicas", 1)))
            lines.append(_line("kube_deployment_status_replicas", key, status.get("replicas") or 0))
            lines.append(_line("kube_deployment_status_replicas_available", key, status.get("availableReplicas") or 0))
            lines.append(_line("kube_deployment_status_replicas_updated", key, status.get("updatedReplicas") or 0))
            lines.append(_line("kube_deployment_status_replicas_unavailable", key,
                               status.get("unavailableReplicas") or 0))
        for p in cluster.list("Pod"):
            meta, spec, status = p.get("metadata") or {}, p.get("spec") or {}, p.get("status") or {}
            owner = next(iter(meta.get("ownerReferences") or []), {})
            lines.append(_line("kube_pod_info", {"namespace": meta.get("namespace"), "pod": meta.get("name"),
                                                 "node": spec.get("nodeName") or "",
                                                 "created_by_kind": owner.get("kind", "<none>"),
                                                 "created_by_name": owner.get("name", "<none>")}, 1))
            for c in status.get("containerStatuses") or []:
                key = {"namespace": meta.get("namespace"), "pod": meta.get("name"), "container": c.get("name")}
                lines.append(_line("kube_pod_container_status_ready", key, 1 if c.get("ready") else 0))
                lines.append(_line("kube_pod_container_status_restarts_total", key, c.get("restartCount") or 0))
        for n in cluster.list("Node"):
            name = (n.get("metadata") or {}).get("name")
            lines.append(_line("kube_node_spec_unschedulable", {"node": name},
                               1 if (n.get("spec") or {}).get("unschedulable") else 0))
        for c in _certificates(cluster):
            meta, spec, status = c.get("metadata") or {}, c.get("spec") or {}, c.get("status") or {}
            issuer = spec.get("issuerRef") or {}
            not_after = _epoch(status.get("notAfter"))
            if not_after is not None:  # cert-manager's exporter: 0 before the first issuance; absent here
                labels = {"namespace": meta.get("namespace"), "name": meta.get("name"),
                          "issuer_name": issuer.get("name", ""), "issuer_kind": issuer.get("kind", "Issuer"),
                          "issuer_group": issuer.get("group", "cert-manager.io")}
                # a timestamp needs every digit: `_line`'s %g would round it to six
                lines.append(_line("certmanager_certificate_expiration_timestamp_seconds", labels, 0)
                             .rsplit(" ", 1)[0] + f" {not_after:.0f}")
        for j in cluster.list("Job"):
            meta, status = j.get("metadata") or {}, j.get("status") or {}
            lines.append(_line("kube_job_status_succeeded", {"namespace": meta.get("namespace"),
                                                             "job_name": meta.get("name")}, status.get("succeeded") or 0))
    return "\n".join(lines) + "\n"


def _certificates(cluster: SandboxCluster) -> list[dict[str, Any]]:
    """cert-manager Certificates, when the scenario has any (the kind is registered on load)."""
    rt = cluster.registry.for_object("cert-manager.io/v1", "Certificate")
    return cluster.list("certificates.cert-manager.io") if rt is not None else []


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class StateMetricsServer:
    """Serves `render(cluster)` at /metrics on a loopback port."""

    def __init__(self, cluster: SandboxCluster):
        self.cluster = cluster
        self._httpd: TrackingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        cluster = self.cluster

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                body = render(cluster).encode()
                self.send_response(200 if self.path.startswith("/metrics") else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Quiet."""

        self._httpd = TrackingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sandbox-state-metrics", daemon=True)
        self._thread.start()
        return self.target

    @property
    def target(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{host}:{port}"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.close_connections()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> StateMetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
