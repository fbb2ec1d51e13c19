"""The architecture contracts of pyproject.toml (`[tool.importlinter]`, issue 17) hold.

Invariants checked:
- `lint-imports` keeps every contract: the layers (composition root > handlers > runtime >
  ask, digests > incidents > stages > policy, db), diagnosis never importing remediation, policy
  never importing Slack, renderers never importing the database, production code never importing
  the sandbox except the runtime's emulator switch. Imports inside functions count, and an
  `ignore_imports` line that matches no import fails the run, so exceptions cannot go stale.
- Every top-level module and package of `bot` is placed in a layer (only `bot.slack`, split
  into its gateway modules and its renderers, is placed part by part): a new package cannot
  escape the layering by being left out of the list.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import bot

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
LINT_TIMEOUT_SECONDS = 120
# Placed module by module in the layers rather than as a whole (see pyproject.toml).
PLACED_BY_PART = {"bot.slack"}


def _layer_modules() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(contract for contract in config["contracts"] if contract["type"] == "layers")["layers"]
    return {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}


def test_import_contracts_are_kept():
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} is missing: install the dev extras (scripts/setup)"
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                            timeout=LINT_TIMEOUT_SECONDS)
    assert result.returncode == 0, f"lint-imports failed:\n{result.stdout}\n{result.stderr}"
    assert "0 broken" in result.stdout, result.stdout


def test_every_bot_module_is_in_a_layer():
    placed = _layer_modules()
    top_level = {f"bot.{info.name}" for info in pkgutil.iter_modules(bot.__path__)}
    missing = sorted(top_level - placed - PLACED_BY_PART)
    assert not missing, f"place these in a layer of [tool.importlinter] in pyproject.toml: {missing}"
    unknown = sorted(name for name in placed if name.startswith("bot.") and name.split(".")[1]
                     not in {module.split(".")[1] for module in top_level})
    assert not unknown, f"layers name modules that do not exist: {unknown}"
