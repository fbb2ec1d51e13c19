import pytest

from bot.redaction import MASK, redact, redact_data


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("token xoxb-123456789012-abcdefghijkl leaked", "xoxb-123456789012"),
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIiOiIx.c2lnbmF0dXJl", "eyJzdWIiOiIx"),
        ("connecting to postgres://app:hunter2@db:5432/shop", "hunter2"),
        ("DB_PASSWORD=hunter2 started", "hunter2"),
        ('{"api_key": "sk-ant-api03-abcdefghijkl"}', "abcdefghijkl"),
        ("aws AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "MIIE"),
        ("github ghp_abcdefghijklmnopqrstuvwxyz0123", "ghp_abc"),
    ],
)
def test_secrets_are_masked(text, secret):
    redacted = redact(text)
    assert secret not in redacted and MASK in redacted
    assert redact(redacted) == redacted, "idempotent"


def test_ordinary_text_is_left_alone():
    text = "OOMKilled: container app exceeded 256Mi; 12 restarts in 20m (token bucket at 50%)"
    assert redact(text) == text


def test_a_key_that_merely_contains_a_secret_word_is_not_a_secret():
    text = "2026-05-02 06:57:56,114 ERROR token_service.tls: certificate check failed: certificate has expired"
    assert redact(text) == text
    assert MASK in redact("client_secret: s3cr3t-value") and "s3cr3t" not in redact("client_secret: s3cr3t-value")


def test_nested_data():
    assert redact_data({"a": ["password=x1"], "b": 3}) == {"a": [f"password={MASK}"], "b": 3}
