"""The name of an index opsbot suggests or creates: `<table>_<columns>_idx`.

One function for both ends: the database digest (`bot.digests.database.indexes`) names the index
in the statement it suggests, and the create-index runbook (`bot.remediation.sql_operations`)
builds, verifies and rolls back the index under the same name. It lives here, below the digests,
so the runbook never imports a digest. Pure: no database access.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's identifier limit (NAMEDATALEN - 1)
INDEX_SUFFIX = "_idx"


def index_name_for(table: str, columns: Sequence[str]) -> str:
    """`<table>_<columns>_idx`, cut to PostgreSQL's 63-byte identifier limit."""
    base = f"{table}_{'_'.join(columns)}"
    encoded = base.encode()[: MAX_IDENTIFIER_BYTES - len(INDEX_SUFFIX)]
    return encoded.decode(errors="ignore") + INDEX_SUFFIX
