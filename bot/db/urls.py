"""Database URLs as SQLAlchemy needs them. Pure string work, no SQLAlchemy import.

Here, below the settings (`bot.config`), so that the database layer never imports the settings
module: the settings validate with the alert modules, which sit above the database.
"""

from __future__ import annotations

POSTGRES_PREFIXES = ("postgres://", "postgresql://")
PSYCOPG_PREFIX = "postgresql+psycopg://"


def normalise_database_url(url: str) -> str:
    """Spell out the psycopg 3 driver, which is the one installed, for PostgreSQL URLs."""
    for prefix in POSTGRES_PREFIXES:
        if url.startswith(prefix):
            return PSYCOPG_PREFIX + url[len(prefix) :]
    return url
