"""image_pull: the image cannot be pulled (wrong name or tag, registry unreachable, no access).

Explicit evidence: containers waiting in ErrImagePull / ImagePullBackOff / InvalidImageName and
the kubelet's "Failed to pull image" events, whose message says why: not found or manifest
unknown (the name or tag is wrong), unauthorized or denied (a missing or expired pull secret),
no such host or a timeout (the registry is unreachable), toomanyrequests (rate limited).
"""

from __future__ import annotations

import re

from bot.context.model import Context
from bot.diagnosis import evidence as ev
from bot.diagnosis.findings import WorkloadFindings, fix_target
from bot.diagnosis.model import Evidence, Hypothesis

PULL_WAITING = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable")
_IMAGE = re.compile(r'image "([^"]+)"|pull(?:ing)? image "?([^"\s:]+(?::[^"\s]+)?)"?', re.I)
CAUSES = (
    (re.compile(r"not found|manifest unknown|does not exist|no such image|name unknown", re.I),
     "the image name or tag does not exist in the registry"),
    (re.compile(r"unauthorized|denied|authentication required|authorization failed|\b403\b|\b401\b|"
                r"no basic auth credentials|access to the resource is denied", re.I),
     "the registry refuses access (missing or expired imagePullSecret)"),
    (re.compile(r"no such host|i/o timeout|connection refused|TLS handshake timeout|network is unreachable|"
                r"dial tcp|context deadline exceeded", re.I), "the registry is unreachable"),
    (re.compile(r"toomanyrequests|rate limit", re.I), "the registry is rate-limiting pulls"),
    (re.compile(r"InvalidImageName|invalid reference format|couldn't parse image", re.I),
     "the image reference is malformed"),
)


def image_and_cause(messages: list[str]) -> tuple[str | None, str | None]:
    image = cause = None
    for message in messages:
        match = _IMAGE.search(message)
        if match and image is None:
            image = match.group(1) or match.group(2)
        for pattern, meaning in CAUSES:
            if cause is None and pattern.search(message):
                cause = meaning
    return image, cause


def _registry_said(messages: list[str]) -> str | None:
    """The registry's own words at the end of a pull error ("...: not found", "401 Unauthorized")."""
    for message in messages:
        if ("Failed to pull" in message or "failed to" in message) and ":" in message:
            return message.rsplit(": ", 1)[-1].strip().strip('"')[:160] or None
    return None


def analyze(ctx: Context, findings: list[WorkloadFindings]) -> list[Hypothesis]:
    hypotheses = []
    for found in findings:
        waiting = [(p, c) for reason in PULL_WAITING for p, c in found.waiting.get(reason, [])]
        pull_events = [e for e in found.events if e.reason in ("Failed", "ErrImagePull", "BackOff", "InspectFailed")
                       and re.search(r"pull|image", e.message, re.I) and e.type == "Warning"]
        # the kubelet's "Failed to pull image ...: <the registry's answer>" says why; "Error:
        # ImagePullBackOff" only says that it keeps failing
        pull_events.sort(key=lambda e: ("Failed to pull" not in e.message and "failed to" not in e.message, -e.count))
        if not waiting and not [e for e in pull_events if "Failed to pull" in e.message or "ErrImagePull" in e.message]:
            continue
        supporting = [ev.container_waiting(p, c) for p, c in waiting[:2]]
        supporting += [ev.event(e, ctx.now) for e in pull_events[:2]]
        messages = [e.message for e in pull_events] + [c.message or "" for _, c in waiting]
        image, cause = image_and_cause(messages)
        image = image or (waiting[0][1].image if waiting else None)
        target = fix_target(found)
        said = _registry_said(messages)
        secrets = sorted({ref.get("name", "") for p in found.pods for ref in p.spec.get("imagePullSecrets") or []} - {""})
        if secrets:
            supporting.append(Evidence(f"the pods pull with imagePullSecrets: {', '.join(secrets)}", "kubernetes",
                                       f"{found.ref} spec.template.spec.imagePullSecrets"))
        summary = f"{target} cannot start: image {image or '?'} cannot be pulled" + (f": {cause}" if cause else "")
        if said:
            summary += f' (the registry said: "{said}")'
        if secrets and cause and "access" in cause:
            summary += f"; the pods use pull secret {', '.join(secrets)}"
        rollout = found.rollout
        facts: dict[str, str] = {"rollout_recent": "false"}
        if rollout and rollout.previous and found.rollout_recent and any(c.path.endswith(".image")
                                                                          for c in rollout.changes):
            old = rollout.image_of(rollout.previous)
            summary += f" (revision {rollout.current.number} changed the image from {old[0] if old else '?'})"
            facts = {"rollout_recent": "true", "previous_revision": str(rollout.previous.number)}
        action = {"the image name or tag does not exist in the registry":
                  "Fix the image reference (or push the missing tag); roll back if a rollout changed it.",
                  "the registry refuses access (missing or expired imagePullSecret)":
                  "Renew or add the imagePullSecret for the registry in the pod's namespace."}.get(
                      cause or "", "Check that the registry is reachable from the nodes and the image exists.")
        hypotheses.append(Hypothesis("image_pull", target, 0.92 if waiting else 0.75, summary + ".", supporting, [],
                                     explicit=True, action=action, signal_key="available_replicas", facts=facts))
        if target != found.ref:
            hypotheses.append(Hypothesis("image_pull", found.ref, 0.8, summary + ".", supporting, [], True,
                                         action=action, signal_key="available_replicas"))
    return hypotheses
