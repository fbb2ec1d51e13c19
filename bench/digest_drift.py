"""The drift digest at size: how long one run takes as the declared state grows.

    .venv/bin/python bench/digest_drift.py [--namespaces 10] [--apps 50] [--repeat 3]

Generates a plain-YAML source of NAMESPACES × APPS applications (a Deployment, a Service and a
ConfigMap each), loads the same objects into the sandbox API server (served over HTTP and read
through the real `kubernetes` client, as a cluster would be) with one drifted field in one
application out of ten (replicas changed by `kubectl-scale`), and times `bot.digests.drift.build`
end to end: reading and parsing the files, listing the live objects, comparing. Prints the
median and spread of REPEAT runs, the findings (which must equal the drift planted), and one line:
`bench: digest_drift objects=N median_s=N per_1000_objects_s=N findings=N`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.context.clusters import ClusterAccess, ClusterDirectory  # noqa: E402
from bot.digests.drift import DriftConfig, build  # noqa: E402
from bot.digests.model import DigestContext  # noqa: E402
from bot.sandbox.kube import KubeApiServer, SandboxCluster, sandbox_api_client  # noqa: E402

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
DRIFTED_EVERY = 10  # one application in ten has its replicas changed by hand


def application(namespace: str, name: str) -> list[dict]:
    labels = {"app": name, "app.kubernetes.io/part-of": "bench"}
    container = {"name": name, "image": f"registry.example.com/{name}:1.0.0",
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                 "env": [{"name": "LOG_LEVEL", "value": "info"}]}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": namespace, "labels": labels},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace, "labels": labels},
         "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-config", "namespace": namespace,
                                                               "labels": labels},
         "data": {"feature.flags": "a=1,b=0"}},
    ]


def live(document: dict, drifted: bool) -> dict:
    obj = yaml.safe_load(yaml.safe_dump(document))
    if drifted and obj["kind"] == "Deployment":
        obj["spec"]["replicas"] = 5
        obj["metadata"]["managedFields"] = [{"manager": "kubectl-scale", "operation": "Update", "apiVersion": "apps/v1",
                                             "time": "2026-12-06T22:00:00Z", "fieldsType": "FieldsV1",
                                             "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
    return obj


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--apps", type=int, default=50, help="applications per namespace")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="opsbot-bench-drift-") as folder:
        source = Path(folder) / "declared"
        objects: list[dict] = []
        planted = 0
        for n in range(args.namespaces):
            namespace = f"team-{n:02d}"
            (source / namespace).mkdir(parents=True)
            for a in range(args.apps):
                docs = application(namespace, f"app-{a:03d}")
                drifted = a % DRIFTED_EVERY == 0
                planted += drifted
                (source / namespace / f"app-{a:03d}.yaml").write_text(yaml.safe_dump_all(docs))
                objects += [live(doc, drifted) for doc in docs]
        cluster = SandboxCluster(now=NOW)
        cluster.load(objects)
        timings, report = [], None
        with KubeApiServer(cluster) as server:
            directory = ClusterDirectory(ClusterAccess(None, lambda: sandbox_api_client(server.base_url), None))
            config = DriftConfig(sources=[{"path": str(source)}])
            for _ in range(args.repeat):
                started = time.perf_counter()
                report = build(config, DigestContext(clusters=directory, now=NOW, base_dir=Path(folder)))
                timings.append(time.perf_counter() - started)
    median = statistics.median(timings)
    declared = len(objects)
    print(f"drift digest over {declared} declared objects ({args.namespaces} namespaces × {args.apps} applications × 3 "
          f"objects), {planted} drifted by hand, {args.repeat} runs")
    print(f"  median {median:.2f} s (min {min(timings):.2f}, max {max(timings):.2f}); "
          f"{median / declared * 1000:.2f} s per 1,000 objects")
    print(f"  headline: {report.headline}; problems: {len(report.problems)}")
    print(f"  reproduce: .venv/bin/python bench/digest_drift.py --namespaces {args.namespaces} --apps {args.apps} "
          f"--repeat {args.repeat}")
    found = len(report.findings)
    if found != planted or report.problems:
        print(f"  UNEXPECTED: {found} findings for {planted} planted; problems {list(report.problems)[:3]}")
    print(f"bench: digest_drift objects={declared} median_s={median:.2f} "
          f"per_1000_objects_s={median / declared * 1000:.2f} findings={found}")
    return 0 if found == planted and not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
