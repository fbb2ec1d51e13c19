"""Secret redaction, applied before anything reaches Slack, PagerDuty, the model, the timeline
or a stored row.

Two kinds of rules, both declared as data below:

- Text patterns (`redact`): credentials that show up in alert annotations, log lines and
  exception messages: Slack, GitHub, AWS, Anthropic, Stripe and Google API keys, Slack and
  Discord webhook URLs, bearer tokens, JWTs, URL credentials (up to the last `@` before the
  host: a password may hold `@`), any `-----BEGIN … PRIVATE KEY…-----` block (PEM, PGP; also a
  block cut off by a log tail), `Authorization:` and `Cookie:` headers whatever the scheme,
  `key=value` / `"key": value` pairs whose key ends in a secret word (`DB_PASSWORD`,
  `AccountKey`, `secret_key_base`; `pass` and `sig` only as a whole word, so not `bypass`),
  quoted values with escaped quotes inside (`"a\\"b"`) and inside escaped JSON
  (`\\"db_password\\": \\"…\\"`), and prose such as `with password "…"`. Ordinary words are
  left alone: a logger called `token_service`, "password reset email sent", `secret "db-creds"
  not found`.
- Settings (`is_secret_name`, `looks_secret`, `shown_setting`): whether the value of a named
  setting (an environment variable, a command-line flag) may be shown at all. A value is shown
  only when it is *plainly* not secret: its name holds no secret word, its value does not look
  like a secret, and it has one of the harmless shapes in `PLAIN_SETTINGS` (a boolean, a small
  number, a duration, a log level, a version, a word under a name such as `*_REGION` or
  `FEATURE_*`, an address without credentials). Anything else is masked: when unsure, mask.

Invariant: redaction is idempotent (redacting twice changes nothing), so every exit (the
renderers, the Slack gateway, the PagerDuty client, the timeline, the stored investigation)
can apply it again without damage.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MASK = "[REDACTED]"

# -- text patterns ---------------------------------------------------------------------------------
#
# Linear time by construction: no pattern nests one unbounded quantifier inside another, and
# every unbounded run either starts at a literal that cannot occur inside the run or is bounded
# (a key's prefix is never matched: the pattern starts at the secret word itself). A 1 MB
# hostile line costs a few passes over it, never a scan per position (`tests/security`).

# A key that ENDS with one of these is a secret's key (`DB_PASSWORD=`, `"api_key":`), unlike a
# logger such as `token_service.tls:` followed by an ordinary message.
SECRET_KEY_ENDINGS = (
    "password", "passwd", "passphrase", "pwd", "secret", "token", "credentials?", "sharedaccesssignature",
    r"(?:api|access|secret|private|signing|encryption|master|auth|account)[_-]?key",
    r"(?<=[?&;])sig(?==)",  # an Azure SAS URL's or connection string's signature, not `sig: 9`
)
# These only as a whole word of the key (after a separator, at the start, or after a camelCase
# boundary: `DB_PASS=`, `pass=`, `dbPass:`, `PGPASS=`), so `bypass=true` and `compass=` are
# left alone. `pass=12` (a test summary) is masked too: when unsure, mask.
SECRET_KEY_WORDS = ("pass", "pgpass", "dbpass")
# A secret word may be followed by one of these and still name the secret itself
# (`secret_key_base`, `password_b64`, `token_value`). Not `_file`, `_path`, `_name`, `_id`,
# `_ttl`...: `password_file: /run/secrets/db` or `secret_name: db-creds` is a reference to a
# secret, which is shown (the file's content never is in the text).
SECRET_KEY_SUFFIXES = ("base", "value", "b64", "base64", "hex", "raw", "enc", "encoded", "plain", "plaintext",
                       "hash", "digest", "data", "str", "string", "bytes")
# Words that commonly follow "with password" in ordinary prose, where no password follows.
PASSWORD_PROSE_WORDS = (
    "authentication", "auth", "reset", "change", "changed", "expired", "expiry", "policy", "hash", "hashing",
    "prompt", "required", "login", "rotation", "manager", "field", "flow", "protection", "protected", "grant",
    "mismatch", "complexity", "length", "history", "from", "and", "or", "for", "of", "set", "not", "missing",
    "empty", "null", "none", "omitted",
)
_PASSWORD_WORD = r"(?:pass(?:word|wd|phrase)|pwd)"
_NOT_MASKED = r"(?!\[REDACTED\])"
_PRIVATE_KEY_LABEL = r"[A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*"
_WORD_START = r"(?:(?<![A-Za-z0-9])|(?-i:(?<=[a-z])(?=[A-Z])))"  # a key word's first letter
_SECRET_KEY = (rf"(?:(?:{'|'.join(SECRET_KEY_ENDINGS)})|{_WORD_START}(?:{'|'.join(SECRET_KEY_WORDS)}))"
               rf"(?:[_.-]?(?:{'|'.join(SECRET_KEY_SUFFIXES)}))?")
_QUOTE = re.compile(r"\\*[\"']")


def _quoted(tag: str) -> str:
    """A quoted value, its quotes included, in group `tag`: `"…"` or `'…'` with backslash
    escapes inside (`"a\"b"` is one value), or a quote escaped by N backslashes (JSON inside
    JSON) closed by the same N backslashes and a quote that no further backslash precedes."""
    return (rf"(?P<{tag}>(?P<{tag}_bs>\\{{1,7}})\"[^\r\n]*?(?<!\\)(?P={tag}_bs)\""
            r"|\"(?:\\.|[^\"\\\r\n])*\"|'(?:\\.|[^'\\\r\n])*')")


def _unquote(token: str) -> tuple[str, str]:
    """(quote, content) of a token matched by `_quoted`."""
    quote = _QUOTE.match(token).group(0)  # type: ignore[union-attr] - a quoted token opens with one
    return quote, token[len(quote):-len(quote)]


def _authorization(match: re.Match[str]) -> str:
    """Keep the header's scheme word (`Token`, `Bearer`, `Digest`, ...), mask the rest. An
    unquoted value runs to the end of the line after `Authorization:` (a header), but is one
    word after `authorization=` (logfmt) or after a quoted key (`"authorization": null`)."""
    head = match.group("head")
    quote, value = _unquote(match.group("quoted")) if match.group("quoted") else ("", match.group("value"))
    tail = quote
    if not quote and re.search(r"[=\"']", head):
        word = re.match(r"\[REDACTED\]|[^\s,;}\]]*", value).group(0)  # type: ignore[union-attr] - always matches
        value, tail = word, value[len(word):]
    scheme, space, credential = value.partition(" ")
    if space and credential.strip() and re.fullmatch(r"[A-Za-z][\w.+-]*", scheme):
        return f"{head}{quote}{scheme} {MASK}{tail}"
    return f"{head}{quote}{MASK}{tail}" if value.strip() else match.group(0)


_KEY_END = re.compile(rf"-----END {_PRIVATE_KEY_LABEL}-----")
# Read backwards from an END marker, one line at a time: a line break (real or escaped) and the
# base64 line before it (the key body), reversed; the first line may also open a quoted string.
# Matching the reversed text keeps this linear.
_KEY_LINE_REVERSED = re.compile(r"(?:\n\r?|n\\(?:r\\)?)[A-Za-z0-9+/=]*(?=\n|n\\|\Z|\\*[\"'])")


def _key_body_length(reversed_head: str) -> int:
    """How many characters of `reversed_head` (the text before an END marker, reversed) are
    the key body's lines."""
    position = 0
    while line := _KEY_LINE_REVERSED.match(reversed_head, position):
        if line.end() == position:
            break
        position = line.end()
    return position


def _mask_cut_key_bodies(text: str) -> str:
    """A private key block whose BEGIN line was cut off (a log tail): the base64 lines before
    an END marker and the marker become the mask. Runs after whole blocks are masked."""
    parts, position = [], 0
    for end in _KEY_END.finditer(text):
        head = text[position:end.start()]
        parts += [head[:len(head) - _key_body_length(head[::-1])], MASK]
        position = end.end()
    return "".join(parts) + text[position:] if parts else text


# A whole block, or one whose END was cut off (a crash mid-print): masked to the end of the text.
_KEY_BLOCK = re.compile(rf"-----BEGIN {_PRIVATE_KEY_LABEL}-----.*?(?:-----END {_PRIVATE_KEY_LABEL}-----|\Z)", re.S)

Replacement = str | Callable[[re.Match[str]], str]
# (what it catches, pattern, replacement), applied in this order after the key blocks.
TEXT_PATTERNS: tuple[tuple[str, re.Pattern[str], Replacement], ...] = (
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}"), MASK),
    ("Slack app token", re.compile(r"\bxapp-[A-Za-z0-9-]{8,}"), MASK),
    ("Slack or Discord webhook URL", re.compile(
        r"(?i)(\bhooks\.slack\.com/(?:services|workflows)/|\bdiscord(?:app)?\.com/api/webhooks/\d+/)[\w/-]+"),
     r"\1" + MASK),
    ("Anthropic key", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{8,}"), MASK),
    ("Stripe key", re.compile(r"(?<![A-Za-z0-9_])[sr]k_(?:live|test)_[A-Za-z0-9]{10,}"), MASK),
    ("Google API key", re.compile(r"(?<![A-Za-z0-9_-])AIza[A-Za-z0-9_-]{35}"), MASK),
    ("GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), MASK),
    ("AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),
    ("JWT", re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), MASK),
    ("bearer or basic credentials", re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MASK),
    ("Authorization header", re.compile(
        r"(?i)(?P<head>\b(?:proxy-)?authorization(?:\\*[\"'])?\s*[:=]\s*)"
        rf"(?:{_quoted('quoted')}|(?P<value>[^\r\n]*))"), _authorization),
    ("Cookie header", re.compile(r"(?i)(\b(?:set-)?cookie\s*:\s*)[^\s=;,:]+=[^\r\n]*"), r"\1" + MASK),
    # user:password@ up to the last '@' before the host: a password may hold '@' and ':'.
    ("URL credentials", re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,31}://)[^/\s:@\"'<>]+:[^/\s\"'<>]*@"),
     r"\1" + MASK + "@"),
    ("quoted password in prose", re.compile(rf"(?i)\b({_PASSWORD_WORD}\s+){_NOT_MASKED}{_quoted('quoted')}"),
     r"\1" + MASK),
    ("password after 'with password'", re.compile(
        rf"(?i)\b((?:with|using)\s+{_PASSWORD_WORD}\s+){_NOT_MASKED}"
        rf"(?!(?:{'|'.join(PASSWORD_PROSE_WORDS)})\b)[^\s,;]+"), r"\1" + MASK),
    ("secret key and value", re.compile(
        rf"(?i)({_SECRET_KEY})((?:\\*[\"'])?\s*[=:]\s*){_NOT_MASKED}(?:{_quoted('quoted')}|[^\s,;&]+)"),
     r"\1\2" + MASK),
)


def redact(text: str) -> str:
    """The text with every recognised secret replaced by `[REDACTED]` (idempotent)."""
    text = _mask_cut_key_bodies(_KEY_BLOCK.sub(MASK, text))  # whole blocks first, then cut-off ones
    for _, pattern, replacement in TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_data(value: Any, keep: frozenset[str] = frozenset()) -> Any:
    """Redact every string inside nested dicts/lists/tuples (keys included); the values of
    the keys in `keep` (machine identifiers such as a button's `action_id`) are left as
    they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact_data(key): item if key in keep else redact_data(item, keep) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(item, keep) for item in value]
    return value


# -- settings: may this named value be shown? ------------------------------------------------------

# A name holding one of these anywhere, separators ignored (`DBPASSWORD`, `STRIPE_APIKEY`,
# `TLS_CERT_FILE`, `MONGO_CONNECTION_STRING`), names a secret. Over-matching only masks more.
SECRET_NAME_PARTS = (
    "password", "passwd", "passphrase", "pass", "pwd", "secret", "token", "key", "credential", "cred", "auth",
    "private", "cert", "signing", "salt", "dsn", "jwt", "bearer", "hmac", "licen", "seed", "nonce", "webhook",
    "connstr", "connectionstring", "cookie", "session",
)
# These only as a whole word of the name (`APP_PIN`, `BIND_PW`, but not `SHIPPING_ZONE`).
SECRET_NAME_WORDS = ("pin", "otp", "sig", "pw", "pat", "sas", "code")
_NAME_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def is_secret_name(name: str) -> bool:
    """True when the name of a setting (env var, flag, key) says it may hold a secret."""
    joined = re.sub(r"[^a-z0-9]", "", name.lower())
    words = {w.lower() for w in _NAME_WORD.findall(name)}
    return any(part in joined for part in SECRET_NAME_PARTS) or any(w in words for w in SECRET_NAME_WORDS)


MIN_RANDOM_CHUNK_CHARS = 12
MIN_MIXED_CASE_BITS_PER_CHAR = 3.5  # random base62 of 12+ characters; camelCase words are excluded first


def _bits_per_char(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _random_chunk(chunk: str) -> bool:
    """A run of 12+ letters and digits that reads as random: letters and digits interleaved
    (`a8f3k2j9d8s7`, a hex digest), or mixed case with high entropy that is not camelCase words."""
    if len(chunk) < MIN_RANDOM_CHUNK_CHARS:
        return False
    digits = sum(c.isdigit() for c in chunk)
    switches = sum(a.isdigit() != b.isdigit() for a, b in zip(chunk, chunk[1:], strict=False))
    if digits >= 2 and len(chunk) - digits >= 2 and switches >= 3:
        return True
    if re.fullmatch(r"(?:[A-Z]?[a-z]+|[A-Z]+|\d+)+?", chunk) and not re.search(r"[a-z][A-Z][a-z]?[A-Z]", chunk):
        return False  # words (lower, UPPER, camelCase)
    return bool(re.search("[a-z]", chunk) and re.search("[A-Z]", chunk)) and \
        _bits_per_char(chunk) >= MIN_MIXED_CASE_BITS_PER_CHAR


def looks_secret(value: str) -> bool:
    """True when a value has a known secret shape (what `redact` masks) or holds a
    random-looking run of letters and digits (see `_random_chunk`)."""
    return redact(value) != value or any(_random_chunk(c) for c in re.split(r"[^A-Za-z0-9]+", value))


def _plain_address(value: str) -> bool:
    """A URL, `host:port` or list of them without credentials, query, fragment or a
    random-looking path segment (a webhook URL's path is its secret)."""
    for item in value.split(","):
        if item.startswith("/"):
            if looks_secret(item):
                return False
            continue
        parts = urlsplit(item if "://" in item else f"//{item}")
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            return False
        if parts.username or parts.password or parts.query or parts.fragment or not (parts.hostname or parts.port):
            return False
        if any(looks_secret(segment) for segment in parts.path.split("/")):
            return False
    return True


@dataclass(frozen=True)
class PlainSetting:
    """A value shape that is plainly not secret; `names` restricts it to settings whose name
    matches (None: any name that is not a secret's name)."""

    what: str
    value: re.Pattern[str] | Callable[[str], bool]
    names: re.Pattern[str] | None = None

    def admits(self, name: str, value: str) -> bool:
        shaped = self.value.fullmatch(value) is not None if isinstance(self.value, re.Pattern) else self.value(value)
        return shaped and (self.names is None or self.names.search(name) is not None)


_UNIT = r"(?:ns|us|µs|ms|s|m|h|d)"
PLAIN_SETTINGS: tuple[PlainSetting, ...] = (
    PlainSetting("boolean", re.compile(r"(?i)true|false|yes|no|on|off|enabled?|disabled?")),
    PlainSetting("small number (a count, a port, a ratio)", re.compile(r"[+-]?\d{1,6}(?:\.\d{1,6})?")),
    PlainSetting("duration", re.compile(rf"\d+(?:\.\d+)?{_UNIT}(?:\d+(?:\.\d+)?{_UNIT})*")),
    PlainSetting("quantity", re.compile(r"\d+(?:\.\d+)?(?:[KMGTPE]i?B?|[kmu])")),
    PlainSetting("log level", re.compile(r"(?i)trace|debug|info|notice|warn(?:ing)?|error|fatal|critical|panic")),
    PlainSetting("version", re.compile(r"v?\d{1,4}(?:\.\d{1,4}){1,3}(?:[-+][A-Za-z0-9.]{1,20})?")),
    PlainSetting("setting word(s)", re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_.,: /][A-Za-z0-9]+){0,5}"), re.compile(
        r"(?i)(?:^|_)(?:REGION|ZONE|ENV|ENVIRONMENT|MODE|LEVEL|FORMAT|PROFILE|STAGE|TIER|STRATEGY|LOCALE|LANG|TZ"
        r"|DRIVER|FLAG|FLAGS|FEATURE|FEATURES|VARIANT|SINKS?|BACKEND|PROVIDER|CHANNEL|TOPIC|QUEUE|BUCKET)$"
        r"|^(?:FEATURE|FF|ENABLE|DISABLE)_|_(?:ENABLED|DISABLED)$")),
    PlainSetting("address without credentials", _plain_address, re.compile(
        r"(?i)(?:^|_)(?:ADDR|ADDRESS|HOST|HOSTS|HOSTNAME|PORT|ENDPOINT|URL|URI|BROKERS|SERVERS|PEERS|PATH|DIR)$")),
)


def shown_setting(name: str, value: str) -> bool:
    """True only when the value of the setting `name` is plainly not secret (see
    `PLAIN_SETTINGS`); the caller masks it otherwise."""
    if is_secret_name(name) or looks_secret(value):
        return False
    return any(rule.admits(name, value) for rule in PLAIN_SETTINGS)
