"""`sandbox_api_client`: a real `kubernetes.client.ApiClient` pointed at a sandbox API server.

No credentials, no TLS, no kubeconfig: the returned client talks plain HTTP to `base_url`, so
every typed API (`CoreV1Api(api_client)`, `AppsV1Api(api_client)`, ...) works unchanged against
the sandbox. Each call returns a new client; close it (or use it as a context manager) when done.
"""

from __future__ import annotations

from kubernetes import client as k8s


def sandbox_api_client(base_url: str) -> k8s.ApiClient:
    """A configured real client for the sandbox at `base_url` (e.g. `http://127.0.0.1:43127`)."""
    configuration = k8s.Configuration(host=base_url.rstrip("/"))
    configuration.verify_ssl = False
    configuration.proxy = None
    return k8s.ApiClient(configuration=configuration)
