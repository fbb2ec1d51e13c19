"""Where the shared material lives: scenario examples and third-party fixtures.

The repository is cloned with a `shared/` folder beside it (`../shared` from the repository
root). `OPSBOT_SHARED_DIR` overrides that, for installs that keep it elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """The shared folder; it may not exist (a container image has none)."""
    override = os.environ.get("OPSBOT_SHARED_DIR")
    if override:
        return Path(override)
    return REPO_ROOT.parent / "shared"


def slack_openapi_path() -> Path:
    """Slack's published OpenAPI description of the Web API."""
    return shared_dir() / "fixtures" / "slack" / "slack_web_openapi_v2.json"


def shared_scenarios_dir() -> Path:
    """The example scenarios that come with the shared material."""
    return shared_dir() / "scenarios"
