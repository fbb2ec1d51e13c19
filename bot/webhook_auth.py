"""Authentication of inbound alert webhooks: a bearer token or HTTP basic auth.

Comparisons are constant-time. With no credentials configured, requests are accepted only
when the settings explicitly allow it (validated at start-up, see `bot.config`).
"""

from __future__ import annotations

import base64
import binascii
import hmac

from bot.config import Settings


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def authorised(settings: Settings, authorization: str | None) -> bool:
    if not settings.webhook_auth_configured:
        return True
    scheme, _, credentials = (authorization or "").partition(" ")
    scheme = scheme.lower()
    if settings.webhook_token and scheme == "bearer" and _equal(credentials.strip(), settings.webhook_token):
        return True
    if settings.webhook_basic_user and scheme == "basic":
        try:
            user, _, password = base64.b64decode(credentials.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return _equal(user, settings.webhook_basic_user) & _equal(password, settings.webhook_basic_password or "")
    return False
