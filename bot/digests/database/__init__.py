"""The database-health digest (PostgreSQL): see `bot.digests.database.build` for what it checks.

`DatabaseConfig` is the `database` section of the digests file; `build(config, context)`
returns one `DigestReport` and never raises.
"""

from bot.digests.database.build import SECTIONS, DatabaseConfig, DatabaseTarget, build

__all__ = ["SECTIONS", "DatabaseConfig", "DatabaseTarget", "build"]
