"""Button values: an opaque, signed, expiring reference to a stored proposal.

`<proposal id>.<expiry epoch>.<HMAC-SHA256 over purpose, id and expiry>` — never the command
itself. A value that was tampered with, that belongs to another purpose (an Approve value
replayed as a Reject) or that expired is refused before anything is looked up.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime


class TokenError(ValueError):
    pass


def key_from(secret: str) -> bytes:
    """The signing key, derived from the bot's secret (never the secret itself)."""
    return hashlib.sha256(b"opsbot-action-token:" + secret.encode()).digest()


def _mac(key: bytes, purpose: str, proposal_id: int, expires: int) -> str:
    return hmac.new(key, f"{purpose}:{proposal_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]


def sign(key: bytes, purpose: str, proposal_id: int, expires_at: datetime) -> str:
    expires = int(expires_at.timestamp())
    return f"{proposal_id}.{expires}.{_mac(key, purpose, proposal_id, expires)}"


def verify(key: bytes, purpose: str, value: str, now: datetime) -> int:
    """The proposal id, or TokenError saying why the value is refused."""
    parts = (value or "").split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or len(parts[2]) != 32:
        raise TokenError("this button is not one of opsbot's")
    proposal_id, expires = int(parts[0]), int(parts[1])
    if not hmac.compare_digest(_mac(key, purpose, proposal_id, expires), parts[2]):
        raise TokenError("this button's value was altered")
    if now.timestamp() > expires:
        raise TokenError(f"this request expired at {datetime.fromtimestamp(expires, UTC):%Y-%m-%d %H:%M} UTC")
    return proposal_id
