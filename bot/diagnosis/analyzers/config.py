"""config_error: a missing or invalid env var, ConfigMap, Secret, command or args.

Explicit evidence: containers waiting in CreateContainerConfigError ("configmap \"x\" not found",
"couldn't find key K in Secret ns/x"), CreateContainerError / RunContainerError (an executable
that does not exist), FailedMount of a ConfigMap or Secret volume. From logs: the crashed
instance says a setting is missing or invalid, naming it. The object to fix is the workload
(its reference or env) or, when the logs name a key that an existing ConfigMap the pod uses
holds, that ConfigMap. When a recent rollout changed exactly these settings and the previous
revision worked, it is a bad rollout instead (see `deploy`), and confidence here drops.
"""

from __future__ import annotations

import re

from bot.context.log_signals import env_names_in, paths_in, quoted_in
from bot.context.model import Context, ObjectRef, PodView
from bot.diagnosis import evidence as ev
from bot.diagnosis import rules
from bot.diagnosis.findings import ErrorLine, WorkloadFindings, fix_target, short
from bot.diagnosis.model import Evidence, Hypothesis

CONFIG_WAITING = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError", "StartError")
_REFERENCED = re.compile(r'(configmap|secret)s? "?([a-z0-9][a-z0-9.-]*)"? not found|'
                         r"couldn't find key (\S+) in (ConfigMap|Secret) ([a-z0-9-]+)/([a-z0-9.-]+)", re.I)
_CANNOT_EXEC = re.compile(r"executable file not found|exec: \"[^\"]+\": (?:stat|no such file)|exec format error|"
                          r"no such file or directory: unknown|permission denied: unknown", re.I)
_CONFIG_TOUCHING = (".env", ".envFrom", ".args", ".command", "spec.volumes", "annotations.checksum")


def _config_maps_used(pod: PodView) -> list[str]:
    names = [v.source for v in pod.volumes if v.kind == "configMap" and v.source]
    for container in pod.spec.get("containers") or []:
        for env in container.get("env") or []:
            ref = ((env.get("valueFrom") or {}).get("configMapKeyRef") or {}).get("name")
            if ref:
                names.append(ref)
        for source in container.get("envFrom") or []:
            ref = (source.get("configMapRef") or {}).get("name")
            if ref:
                names.append(ref)
    return list(dict.fromkeys(names))


def _lines_before(ctx: Context, error: ErrorLine, count: int = 3) -> list[str]:
    """The lines just before `error` in its stream (the frame that read the bad value)."""
    for view in ctx.logs:
        if view.pod == error.pod and view.container == error.container and error.line in view.lines:
            at = view.lines.index(error.line)
            return view.lines[max(0, at - count):at]
    return []


def _env_defined(pod: PodView, name: str) -> bool:
    return any(env.get("name") == name for c in pod.spec.get("containers") or [] for env in c.get("env") or [])


def _holder_by_path(ctx: Context, found: WorkloadFindings, paths: list[str]) -> tuple[ObjectRef, str] | None:
    """The ConfigMap mounted where the error's file lives (`/etc/app/application.yaml`)."""
    for pod in found.failing or found.pods:
        volumes = {v.name: v.source for v in pod.volumes if v.kind == "configMap" and v.source}
        for container in pod.containers:
            for mount, volume in sorted(container.mounts.items(), key=lambda item: -len(item[0])):
                for path in paths:
                    if volume in volumes and path.startswith(mount.rstrip("/") + "/"):
                        return ObjectRef("ConfigMap", pod.ref.namespace, volumes[volume]), path.rsplit("/", 1)[-1]
    return None


def _holder_by_word(ctx: Context, found: WorkloadFindings, words: list[str]) -> tuple[ObjectRef, str] | None:
    """An existing ConfigMap the pods use that holds one of the named keys (a dotted key's last
    part counts: `fare.surge.max-multiplier` is `max-multiplier:` inside a YAML file)."""
    for pod in found.failing or found.pods:
        for name in _config_maps_used(pod):
            data = ctx.config_maps.get(ObjectRef("ConfigMap", pod.ref.namespace, name))
            for word in words:
                needles = {word, word.rsplit(".", 1)[-1]} if "." in word else {word}
                for key, value in (data or {}).items():
                    if key.lower() == word.lower() or any(len(n) >= 4 and n in value for n in needles):
                        return ObjectRef("ConfigMap", pod.ref.namespace, name), key
    return None


def _secrets_read(pod: PodView) -> list[str]:
    names = []
    for container in pod.spec.get("containers") or []:
        names += [((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") for e in container.get("env") or []]
        names += [(e.get("secretRef") or {}).get("name") for e in container.get("envFrom") or []]
    return [n for n in dict.fromkeys(names) if n]


def _credentials(ctx: Context, found: WorkloadFindings) -> list[Hypothesis]:
    """A peer that was reached refuses the workload's credentials. When pods started later work
    while older ones are refused, the older ones hold values from before a rotation: a rolling
    restart remedies it (`restart_remedies`). Otherwise the credentials themselves are wrong."""
    lines = found.error_lines("credentials")
    if not lines:
        return []
    refused = {e.pod for e in lines}
    started = {p.ref: p.created_at for p in found.pods}
    oldest_refused = max((started[r] for r in refused if started.get(r)), default=None)
    newer_fine = [p for p in found.healthy if p.ref not in refused and p.created_at and oldest_refused
                  and p.created_at > oldest_refused]
    secrets = next((_secrets_read(p) for p in found.pods if _secrets_read(p)), [])
    supporting = [ev.log_line(e) for e in found.key_lines(("credentials",))]
    if newer_fine:
        supporting.append(Evidence(f"{len(newer_fine)} pod(s) started later ({newer_fine[0].ref.name}) are not "
                                   f"refused: the older pods hold credentials from before a change", "kubernetes",
                                   f"pods of {found.ref} by start time"))
    where = f" (it reads Secret {', '.join(secrets[:2])})" if secrets else ""
    target = fix_target(found)
    facts = {"restart_remedies": "true"} if newer_fine and target.kind == "Deployment" else {}
    action = (f"Restart {target.name} so every pod reads the current Secret{where}." if newer_fine else
              f"Check the credentials {target.name} uses{where} against what the peer expects.")
    summary = f"{target} is refused by a peer it reaches: its credentials are rejected{where}"
    hypotheses = [Hypothesis("config_error", target, 0.85 if newer_fine else 0.75, summary + ".", supporting,
                             explicit=True, action=action, facts=facts, signal_key="error_ratio")]
    if secrets and not newer_fine:
        hypotheses.append(Hypothesis("config_error", ObjectRef("Secret", target.namespace, secrets[0]), 0.65,
                                     summary + ".", supporting, explicit=True, action=action))
    return hypotheses


def _sidecar_keeps_job_running(ctx: Context, found: WorkloadFindings) -> list[Hypothesis]:
    """A Job's own containers finished (exit 0) but a container its template does not declare
    (injected by a mesh or a proxy webhook) keeps the pod running: the Job never completes."""
    if found.ref.kind not in ("Job", "CronJob") or found.view is None:
        return []
    declared = {c.get("name") for c in (found.view.template.get("spec") or {}).get("containers") or []}
    for pod in found.pods:
        done = [c for c in pod.containers if not c.init and c.name in declared and c.state == "terminated"
                and c.exit_code == 0]
        injected = [c for c in pod.containers if not c.init and c.name not in declared and c.state == "running"]
        if pod.phase == "Running" and done and injected and all(c.state == "terminated" for c in pod.containers
                                                                if c.name in declared and not c.init):
            target = fix_target(found)
            return [Hypothesis(
                "config_error", target, 0.85,
                f"{target}'s pods never complete: {done[0].name} finished (exit 0) but the injected "
                f"{injected[0].name} container keeps {pod.ref.name} running.",
                [Evidence(f"{pod.ref.name}: container {done[0].name} terminated Completed (exit 0) "
                          f"{ev.ago(done[0].finished_at, ctx.now)}; {injected[0].name} ({injected[0].image}) is "
                          f"still running and is not in the Job's template", "kubernetes",
                          f"Pod {pod.ref.namespace}/{pod.ref.name} status.containerStatuses")],
                explicit=True, signal_key="restarts",
                action=f"Keep {injected[0].name} out of {target.name}'s pods (an injection opt-out annotation or "
                       "label) or make it a native sidecar that exits with the job; then delete the stuck Job.")]
    return []


def analyze(ctx: Context, findings: list[WorkloadFindings]) -> list[Hypothesis]:
    hypotheses: list[Hypothesis] = []
    for found in findings:
        hypotheses += _credentials(ctx, found) + _sidecar_keeps_job_running(ctx, found)
        supporting: list[Evidence] = []
        contradicting: list[Evidence] = []
        explicit = False
        named: list[str] = []
        lacking: tuple[ObjectRef, str] | None = None  # an existing ConfigMap/Secret without the key
        missing_object: ObjectRef | None = None
        for reason in CONFIG_WAITING:
            for pod, container in found.waiting.get(reason, [])[:2]:
                supporting.append(ev.container_waiting(pod, container))
                explicit = True
                match = _REFERENCED.search(container.message or "")
                if match and match.group(1):
                    kind = "ConfigMap" if match.group(1).lower() == "configmap" else "Secret"
                    missing_object = ObjectRef(kind, pod.ref.namespace, match.group(2))
                elif match:
                    lacking = (ObjectRef(match.group(4), match.group(5), match.group(6)), match.group(3))
        for pod, container in found.crashes[:4]:
            message = container.message or container.last_message or ""
            reason = container.reason if container.state == "terminated" else container.last_reason
            if reason in ("StartError", "ContainerCannotRun", "RunContainerError") or _CANNOT_EXEC.search(message):
                supporting.append(ev.container_termination(pod, container, ctx.now))
                explicit = True
                break
        mounts = [e for e in found.warning_events("FailedMount") if re.search(r"(configmap|secret)", e.message, re.I)]
        if mounts:
            explicit = True
            supporting += [ev.event(e, ctx.now) for e in mounts[:2]]
            match = _REFERENCED.search(mounts[0].message)
            if match and match.group(1):
                kind = "ConfigMap" if match.group(1).lower() == "configmap" else "Secret"
                missing_object = missing_object or ObjectRef(kind, found.ref.namespace, match.group(2))
        lines = found.error_lines("config")
        crashing = bool(found.crashes) or "CrashLoopBackOff" in found.waiting
        supporting += [ev.log_line(e) for e in found.key_lines(("config",))]
        for line in lines[:5]:
            words = env_names_in(line.line) + quoted_in(line.line)
            for before in _lines_before(ctx, line):  # a traceback names the setting just above its error
                words += env_names_in(before)
            named += [w for w in words if w not in named]
        if not explicit and not lines:
            continue
        if found.crashes and not explicit:
            pod, container = found.crashes[0]
            supporting.append(ev.container_termination(pod, container, ctx.now))
        rollout = found.rollout
        touched = [c for c in (rollout.changes if rollout else []) if any(m in c.path for m in _CONFIG_TOUCHING)]
        if found.rollout_recent and rollout and rollout.previous and touched and not found.failing_old:
            contradicting.append(Evidence(
                f"revision {rollout.current.number} changed {', '.join(c.path for c in touched[:3])} "
                f"{ev.ago(rollout.current.created_at, ctx.now)}: the previous revision may have worked",
                "rollout", f"pod template diff {rollout.previous.name} → {rollout.current.name}"))
        confidence = 0.9 if explicit else (0.8 if crashing else 0.5)
        target = fix_target(found)
        paths = [p for line in lines[:8] for p in paths_in(line.line)]
        holder = lacking or (None if missing_object else (
            _holder_by_path(ctx, found, paths) or (_holder_by_word(ctx, found, named) if named else None)))
        missing_env = [n for n in named if re.fullmatch(r"[A-Z][A-Z0-9_]+", n)
                       and found.pods and not _env_defined(found.pods[0], n)]
        what = (f"{missing_object.kind} {missing_object.name} does not exist" if missing_object else
                f"key {lacking[1]} is missing from {lacking[0].kind} {lacking[0].name}" if lacking else
                f"{holder[0].kind} {holder[0].name} holds an invalid {holder[1]}" if holder else
                f"required setting {missing_env[0]} is not set" if missing_env else
                f"the configuration is refused ({short(lines[0].line, 120)})" if lines else
                "the container cannot be created from its configuration")
        summary = f"{target} cannot start because {what}"
        action = (f"Fix {holder[0]} (key {holder[1]})" if holder else
                  f"Create {missing_object} or fix the reference in {target}" if missing_object else
                  f"Set {missing_env[0]} in {target}" if missing_env else f"Fix the configuration of {target}")
        main = Hypothesis("config_error", holder[0] if holder else target, confidence, summary + ".",
                          supporting, contradicting, explicit, action=action + "; a restart will not help.",
                          signal_key="restarts")
        found_here = [main]
        if holder or missing_object:
            other = target if holder else missing_object
            found_here.append(Hypothesis("config_error", other, confidence - 0.1, summary + ".", supporting,
                                         contradicting, explicit, action=main.action, signal_key="restarts"))
        for hypothesis in found_here:
            rules.apply(hypothesis, "release_touched_this_setting", int(bool(contradicting)))
        hypotheses += found_here
    return hypotheses
