"""Deployment artefacts outside Kubernetes: the Slack app manifest and the Dockerfile.

Offline and fast: the manifest is parsed and the Dockerfile read as text; no Slack, no Docker.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import yaml

from tests.deploy.test_manifests import DEPLOY_DIR, IMAGE_UID, REPO_ROOT

SLACK_MANIFEST = DEPLOY_DIR / "slack-app-manifest.yaml"
DOCKERFILE = REPO_ROOT / "Dockerfile"

SLACK_ROUTES = {
    "commands": "/slack/commands",
    "events": "/slack/events",
    "interactions": "/slack/interactions",
}

EXPECTED_BOT_SCOPES = frozenset(
    {
        "chat:write",
        "files:write",
        "commands",
        "app_mentions:read",
        "users:read",
        "usergroups:read",
        "channels:read",
        "channels:history",
        "groups:history",
        "groups:read",
    }
)



# --------------------------------------------------------------------------- Slack app manifest


def _slack_manifest() -> dict[str, Any]:
    return yaml.safe_load(SLACK_MANIFEST.read_text(encoding="utf-8"))


def test_slack_manifest_has_the_ops_command() -> None:
    manifest = _slack_manifest()
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/ops"
    assert command["url"].endswith(SLACK_ROUTES["commands"])
    for word in ("status", "explain", "risk", "declare", "resolve", "update", "followup", "freeze", "help"):
        assert word in command["usage_hint"]
    assert len(command["usage_hint"]) <= 1000, "Slack's limit"
    assert command["should_escape"] is True, "mentions must arrive as <@U…|name> for /ops commander and followup"
    assert manifest["features"]["bot_user"]["display_name"]


def test_slack_manifest_request_urls_hit_the_bolt_routes() -> None:
    manifest = _slack_manifest()
    settings = manifest["settings"]
    urls = {
        "commands": manifest["features"]["slash_commands"][0]["url"],
        "events": settings["event_subscriptions"]["request_url"],
        "interactions": settings["interactivity"]["request_url"],
    }
    for kind, url in urls.items():
        assert url.startswith("https://"), url
        assert url.endswith(SLACK_ROUTES[kind]), url
    bases = {url.removesuffix(SLACK_ROUTES[kind]) for kind, url in urls.items()}
    assert len(bases) == 1, f"the three URLs point at different hosts: {bases}"
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["event_subscriptions"]["bot_events"] == ["app_mention"]
    assert settings["socket_mode_enabled"] is False
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False


def test_slack_manifest_requests_exactly_the_needed_scopes() -> None:
    manifest = _slack_manifest()
    scopes = manifest["oauth_config"]["scopes"]
    assert set(scopes) == {"bot"}, "no user-token scopes"
    bot = scopes["bot"]
    assert len(bot) == len(set(bot))
    assert set(bot) == EXPECTED_BOT_SCOPES


def test_slack_manifest_display_information_fits_slack_limits() -> None:
    info = _slack_manifest()["display_information"]
    assert 1 <= len(info["name"]) <= 35
    assert len(info.get("description", "")) <= 140
    if "long_description" in info:
        assert 175 <= len(info["long_description"]) <= 4000
    if "background_color" in info:
        assert re.fullmatch(r"#[0-9a-fA-F]{6}", info["background_color"])


# --------------------------------------------------------------------------- Dockerfile


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, rest = full.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"use the exec (JSON) form, not a shell string: {arguments}"
    return value


def test_dockerfile_is_multi_stage_on_python_slim() -> None:
    froms = [args for keyword, args in _dockerfile_instructions() if keyword == "FROM"]
    assert len(froms) >= 2
    assert froms[-1].split()[0].startswith("python:3.11-slim")
    assert any(" AS builder" in f or " as builder" in f for f in froms[:-1])


def test_dockerfile_final_stage_runs_opsbot_serve_as_non_root() -> None:
    stage = _final_stage()
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users, "the final stage must set USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) == IMAGE_UID, "numeric, so runAsNonRoot can verify it"
    assert not group or (group.isdigit() and int(group) != 0)

    entrypoint = [args for keyword, args in stage if keyword == "ENTRYPOINT"]
    cmd = [args for keyword, args in stage if keyword == "CMD"]
    assert entrypoint and cmd
    assert _exec_form(entrypoint[-1]) + _exec_form(cmd[-1]) == ["opsbot", "serve"]


def test_dockerfile_final_stage_environment_and_data() -> None:
    stage = _final_stage()
    env_text = " ".join(args for keyword, args in stage if keyword == "ENV")
    env = dict(token.split("=", 1) for token in shlex.split(env_text) if "=" in token)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["OPSBOT_DATA_DIR"] == "/var/lib/opsbot"

    copies = [args.split() for keyword, args in stage if keyword == "COPY"]
    copied_to = {parts[-1]: parts[-2] for parts in copies}
    assert copied_to[env["OPSBOT_RUNBOOKS_DIR"]] == "runbooks"
    assert copied_to[env["OPSBOT_POLICIES_DIR"]] == "policies"

    assert ("EXPOSE", "8080") in stage
    runs = " ".join(args for keyword, args in stage if keyword == "RUN")
    assert "/var/lib/opsbot" in runs and str(IMAGE_UID) in runs, "the data dir must belong to the user"
    for tool in ("build-essential", "gcc", "pip install"):
        assert tool not in runs, f"{tool} belongs in the builder stage"


def test_dockerfile_builder_installs_with_the_constraints_file() -> None:
    instructions = _dockerfile_instructions()
    builder = instructions[: len(instructions) - len(_final_stage())]
    runs = " ".join(args for keyword, args in builder if keyword == "RUN")
    assert re.search(r"pip install (.* )?-c constraints\.txt", runs)


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".git", ".venv", "data", ".env", ".pytest_cache"):
        assert required in patterns, required
    for needed in ("runbooks", "policies", "bot", "handlers", "migrations", "constraints.txt", "README.md"):
        assert needed not in patterns, f"{needed} is needed by the Dockerfile"
