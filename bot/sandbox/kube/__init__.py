"""The sandbox Kubernetes API server: a simulated cluster the real `kubernetes` client talks to.

    cluster = SandboxCluster(now=scenario_now)
    cluster.load(objects, events, logs)
    with KubeApiServer(cluster) as server:
        api = sandbox_api_client(server.base_url)
        CoreV1Api(api).read_namespaced_pod_log("web-abc12", "shop", previous=True)

Modules: `resources` (kind/path registry), `store` (objects, resourceVersions, naming),
`cluster` (state, loading, the mutation record), `selectors`, `patch`, `admission` (defaults and
validation), `verbs` and `subresources` (the REST operations), `controller`, `reconciler` and
`deployment` (rollouts, scaling, replacement pods), `pods` (building and scheduling pods), `fate`
(which pod specs are known to fail), `logs`, `api` (routing), `server` (HTTP), `client`.

Loading never runs a controller; writes through the API do, synchronously, under the cluster's
one lock, so what a request returns and what any later read sees agree.
"""

from bot.sandbox.kube.api import ApiRequest, ApiResponse, handle
from bot.sandbox.kube.client import sandbox_api_client
from bot.sandbox.kube.cluster import Mutation, SandboxCluster
from bot.sandbox.kube.resources import BUILTIN_RESOURCES, ResourceType, pluralize
from bot.sandbox.kube.server import KubeApiServer

__all__ = [
    "BUILTIN_RESOURCES",
    "ApiRequest",
    "ApiResponse",
    "KubeApiServer",
    "Mutation",
    "ResourceType",
    "SandboxCluster",
    "handle",
    "pluralize",
    "sandbox_api_client",
]
