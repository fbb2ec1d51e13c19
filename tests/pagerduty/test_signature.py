"""`verify_signature`: PagerDuty's V3 `X-PagerDuty-Signature` scheme."""

from __future__ import annotations

import pytest

from bot.alerts.pagerduty import verify_signature
from bot.sandbox.pagerduty_webhooks import SIGNATURE_HEADER, incident_resource, signed, webhook_event

BODY = b'{"event":{"id":"x"}}'
# HMAC-SHA256(b"test-secret", BODY) as computed by `openssl dgst -sha256 -hmac test-secret`.
KNOWN = "ff99fcd3be041d9cf67577a21f649fbec5b29ca5a159d01677604f427021191c"


def _delivery(*secrets: str) -> tuple[bytes, str]:
    body = webhook_event("incident.triggered", incident_resource("Q1ABC", 7, "checkout 5xx"))
    raw, headers = signed(body, list(secrets))
    return raw, headers[SIGNATURE_HEADER]


def test_known_vector_matches_an_independent_hmac() -> None:
    assert verify_signature(["test-secret"], BODY, f"v1={KNOWN}")
    assert verify_signature(["test-secret"], BODY, f"v1={KNOWN.upper()}")  # hex is case-insensitive
    assert not verify_signature(["test-secret"], BODY, f"v1={KNOWN[:-1]}0")


def test_good_signature_verifies() -> None:
    raw, header = _delivery("s3cret")
    assert header.startswith("v1=") and "," not in header
    assert verify_signature(["s3cret"], raw, header)


def test_wrong_secret_is_refused() -> None:
    raw, header = _delivery("s3cret")
    assert not verify_signature(["other"], raw, header)


def test_rotation_two_signatures_either_configured_secret_verifies() -> None:
    raw, header = _delivery("old-secret", "new-secret")
    assert header.count("v1=") == 2
    assert verify_signature(["new-secret"], raw, header)
    assert verify_signature(["old-secret"], raw, header)
    assert verify_signature(["unrelated", "new-secret"], raw, header)
    assert not verify_signature(["unrelated"], raw, header)


def test_tampered_body_is_refused() -> None:
    raw, header = _delivery("s3cret")
    tampered = raw.replace(b"checkout 5xx", b"checkout 4xx")
    assert tampered != raw
    assert not verify_signature(["s3cret"], tampered, header)
    assert not verify_signature(["s3cret"], raw + b" ", header)  # even whitespace: the raw bytes are signed


@pytest.mark.parametrize("header", [
    None, "", "garbage", "v1=", "v1=zz", f"v1={KNOWN[:40]}", f"sha256={KNOWN}", f"v0={KNOWN}", KNOWN,
    f"v1={KNOWN}00", ",,,", "v1 = " + KNOWN,
])
def test_missing_or_malformed_header_is_refused(header: str | None) -> None:
    assert not verify_signature(["test-secret"], BODY, header)


def test_signatures_with_spaces_and_other_versions_alongside_still_verify() -> None:
    assert verify_signature(["test-secret"], BODY, f"v2=abc, v1={'0' * 64}, v1={KNOWN}")


def test_no_secret_configured_never_verifies() -> None:
    raw, header = _delivery("")
    assert not verify_signature([], raw, header)
    assert not verify_signature([""], raw, header)  # an empty key would let anyone sign


def test_absurd_number_of_signatures_is_refused() -> None:
    header = ",".join([f"v1={'0' * 64}"] * 40 + [f"v1={KNOWN}"])
    assert not verify_signature(["test-secret"], BODY, header)
