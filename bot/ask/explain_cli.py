"""`opsbot explain <target>`: the answer `/ops explain` gives, as text in a terminal. Read-only.

The target forms are `bot.ask.explain`'s (INC-12, P-17, a runbook id, an alert name, a
workload); Prometheus and Kubernetes are read as the configuration says, as `/ops explain` does. The terminal has no
channel, so nothing is refused for where it is asked: whoever runs it can read the database.
An unknown form or a reference to nothing is one line on stderr and exit code 2; nothing is
changed either way.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parser is built for every command: the database modules load only when this one runs
    from bot.ask.explain import Explanation

BULLET = "•"


def explanation_text(explanation: Explanation) -> str:
    """The same lines as the Slack answer (`bot.slack.render.explain`), unescaped, indented."""
    lines = [explanation.headline]
    for part in explanation.parts:
        lines += ["", part.heading] + [f"  {BULLET} {line}" for line in part.lines]
    return "\n".join(lines) + "\n"


def cmd_explain(args: argparse.Namespace) -> int:
    from bot.ask.explain import NotAnswered, explain, gather, parse_target
    from bot.cli import CliError, _settings, _with_database
    from bot.context.clusters import ClusterDirectory
    from bot.db.engine import reading
    from bot.policy.model import PolicyError, load_policies
    from bot.remediation.catalog import CatalogError, load_catalog
    from bot.remediation_cli import dirs

    runbooks_dir, policies_dir = dirs(_settings())
    try:
        catalog, policy = load_catalog(runbooks_dir), load_policies(policies_dir)
    except (CatalogError, PolicyError) as exc:
        raise CliError(f"the runbooks or policies are invalid: {str(exc).splitlines()[0]}", code=2) from None
    try:
        target = parse_target(args.target, catalog)

        def build(factory):
            outside = gather(factory, ClusterDirectory.from_settings(_settings()), target)  # before the snapshot
            with reading(factory) as session:
                return explain(session, target, catalog, policy, outside)
        explanation = _with_database(build)
    except NotAnswered as exc:
        raise CliError(str(exc), code=2) from None
    print(explanation_text(explanation), end="")
    return 0
