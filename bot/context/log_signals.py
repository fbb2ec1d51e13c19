"""What an error line says about its cause: a catalogue of failure families. Pure.

Each family is a set of phrasings real software prints (Go, Java, Python, Node, nginx/Envoy,
database clients, the kubelet). `classify` returns the families a line belongs to; the
extractors pull out the named thing (a host, an environment variable, a path, a key) so the
RCA can name it. Lines are untrusted: matching only reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FAMILIES: dict[str, re.Pattern[str]] = {
    "certificate": re.compile(
        r"certificate (?:has )?expired|x509: certificate has expired|certificate is not yet valid|"
        r"CERT_HAS_EXPIRED|certificate_expired|expired certificate|cert(?:ificate)? (?:is )?expired|"
        r"not_after=.*\bexpired|SSL routines.*certificate (?:verify failed|expired)", re.I),
    "dependency": re.compile(
        r"connection refused|\bECONNREFUSED\b|no such host|\bENOTFOUND\b|Name or service not known|"
        r"Temporary failure in name resolution|could not translate host name|i/o timeout|"
        r"connection timed out|connect(?:ion)? timeout|connect timed out|\bETIMEDOUT\b|timed out connecting|"
        r"upstream (?:is )?slow|slow upstream|upstream request timeout|upstream timed out|"
        r"Read timed out|\bReadTimeout(?:Error)?\b|read tcp .*: i/o timeout|timeout while reading|"
        r"The connection attempt failed|java\.net\.(?:Socket(?:Timeout)?|Connect|NoRouteToHost)Exception|"
        r"upstream connect error|connection reset by peer|ECONNRESET|no route to host|EHOSTUNREACH|"
        r"could not connect to|couldn't connect to|can't connect to|unable to connect to|failed to connect to|"
        r"Connection to .* (?:failed|refused)|is the server running|server closed the connection unexpectedly|"
        r"dial tcp|503 Service Unavailable|no healthy upstream|service unavailable|circuit breaker (?:is )?open|"
        r"UNAVAILABLE: |Communications link failure|connection (?:was )?lost|broker.*(?:not available|down)", re.I),
    "config": re.compile(
        r"missing (?:required )?(?:env(?:ironment)?(?: variable)?|config(?:uration)?|setting|option|key|value)|"
        r"(?:env(?:ironment)? variable|setting|option|config(?:uration)? key) \S+ (?:is )?(?:not set|required|missing|"
        r"empty|undefined)|\b[A-Z][A-Z0-9_]{2,} (?:is )?(?:not set|required|must be set|missing|empty|undefined)|"
        r"required (?:env(?:ironment)? variable|setting|key|field)|must be set|is required but|"
        r"(?:failed|could not|couldn't|unable) to (?:bind|convert|load|parse|read|decode) (?:properties|property|"
        r"config|configuration|settings|value)|Failed to bind properties|Update your application's configuration|"
        r"invalid (?:config(?:uration)?|value|setting|option|format)|unknown (?:config(?:uration)? )?(?:key|option|"
        r"setting|field)|failed to (?:load|parse|read|decode) (?:config|configuration|settings)|"
        r"(?:config|configuration) (?:error|invalid|validation failed)|KeyError: |could not parse|"
        r"cannot unmarshal|yaml: line \d+|json: cannot|ParseError|ValidationError|"
        r"unrecognized (?:arguments|option)|flag provided but not defined|unknown (?:flag|shorthand flag|option)|"
        # a command or script that cannot run as written (a shell's own words)
        r"syntax error near unexpected token|Syntax error: |unexpected EOF while looking for matching|"
        r"command not found|: not found$|unbound variable|bad substitution|can't open '?/|"
        # a configuration file or value the program refuses (nginx, PostgreSQL, Redis, MySQL, runtimes)
        r"\[emerg\]|unknown directive|invalid parameter|configuration file .* contains errors|"
        r"invalid value for parameter|unrecognized configuration parameter|FATAL CONFIG FILE ERROR|"
        r"Bad directive or wrong number of arguments|unknown variable '|"
        r"invalid literal for int\(\)|could not convert string to|invalid duration|time: (?:invalid|unknown unit)|"
        r"strconv\.Parse\w+: parsing|NumberFormatException|invalid input syntax for|"
        # a file the program was told to read is not where it looks
        r"No such file or directory|FileNotFoundError|ENOENT|"
        # a binary built for another CPU
        r"exec format error",
        re.I),
    "code": re.compile(
        r"^panic: |\bpanic\(|goroutine \d+ \[running\]|Traceback \(most recent call last\)|"
        r"Exception in thread|NullPointerException|\b[A-Z][A-Za-z]+(?:Error|Exception): |TypeError|ReferenceError|"
        r"segmentation fault|SIGSEGV|nil pointer dereference|index out of range|assertion failed|"
        r"Unhandled(?: promise)? rejection|unhandled exception|fatal error: ", re.I),
    "memory": re.compile(
        r"OutOfMemoryError|out of memory|Cannot allocate memory|JavaScript heap out of memory|\bMemoryError\b|"
        r"\bOOM\b|memory limit exceeded|runtime: out of memory|std::bad_alloc", re.I),
    "storage": re.compile(
        r"No space left on device|ENOSPC|disk (?:is )?full|could not extend file|Read-only file system|"
        r"not enough space|insufficient disk|disk quota exceeded|out of disk", re.I),
    # the program says it has no capacity left for more work (its own workers, queue or pool)
    "saturation": re.compile(
        r"listen queue .*full|no (?:free|idle|available) workers|all workers (?:are )?busy|"
        r"(?:worker|thread|process) pool (?:is )?(?:exhausted|full|saturated)|RejectedExecutionException|"
        r"(?:request|work|task) queue (?:is )?full|server (?:is )?(?:too )?(?:busy|overloaded)|"
        r"backlog (?:is )?full|max(?:imum)? (?:number of )?(?:workers|clients|concurrent requests) reached|"
        r"server reached (?:max_children|MaxRequestWorkers)|too many concurrent requests", re.I),
    # the peer was reached and refused the credentials: not an unreachable dependency
    "credentials": re.compile(
        r"password authentication failed|Access denied for user|invalid (?:username or password|credentials|"
        r"password|api key|token)|WRONGPASS|NOAUTH Authentication required|SASL authentication failed|"
        r"\b28P01\b|Login failed for user|InvalidClientTokenId|SignatureDoesNotMatch|ExpiredToken|bad credentials|"
        r"authentication failed for user|\b401 Unauthorized\b|status(?:_code)?[=: ]+401\b", re.I),
    "permission": re.compile(r"permission denied|EACCES|access denied|forbidden|unauthori[sz]ed|"
                             r"authentication failed|password authentication failed", re.I),
    "startup_timeout": re.compile(r"context deadline exceeded|Client\.Timeout exceeded|"
                                  r"timeout while awaiting headers|request timed out", re.I),
}

# (pattern, whether a bare name without dot, dash or port is believable from it)
_HOST_PATTERNS: tuple[tuple[re.Pattern[str], bool], ...] = (
    (re.compile(r"lookup ([A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])(?: on |: )"), True),
    (re.compile(r"getaddrinfo (?:ENOTFOUND|EAI_AGAIN) ([A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])"), True),
    (re.compile(r"\b([a-z0-9][a-z0-9-]*(?:\.[a-z0-9][a-z0-9-]*)*\.svc(?:\.cluster\.local)?)\b(?::(\d+))?"), True),
    (re.compile(r"(?:connect(?:ion)? to|connecting to|reach|upstream|server at|host)\s+(?:server\s+)?(?:at\s+)?"
                r"[\"'(]?([A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])[\"')]?(?::(\d+))?", re.I), False),
    (re.compile(r"(?://|@)([A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9])(?::(\d+))"), False),
    # structured logs: {"upstream":"pricing-engine"}, host=orders-db
    (re.compile(r"[\"']?\b(?:upstream|host|peer|remote|target|dependency|backend)[\"']?\s*[:=]\s*[\"']?"
                r"([a-z0-9][a-z0-9.-]*[a-z0-9])(?::(\d+))?\b"), True),
    (re.compile(r"https?://([A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)+)(?![:\w.-])"), False),
    (re.compile(r"(?<![\w./-])([a-z][a-z0-9-]*[a-z0-9](?:\.[a-z0-9-]+)*):(\d{2,5})\b"), True),
)
_IP_HOST = re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3}):(\d{2,5})\b")
_ENV_NAME = re.compile(r"\b([A-Z][A-Z0-9]*_[A-Z0-9_]+|[A-Z]{3,}[0-9]*)\b")
_QUOTED = re.compile(r"[\"'`]([A-Za-z0-9_./-]{2,80})[\"'`]")
_PATH = re.compile(r"(/[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)+)")
_NOT_HOSTS = {"localhost", "tcp", "udp", "http", "https", "the", "server", "host", "database", "to", "at"}
_COMMON_WORDS = {"ERROR", "WARN", "WARNING", "INFO", "DEBUG", "FATAL", "CRITICAL", "PANIC", "TRACE", "HTTP",
                 "HTTPS", "TCP", "UDP", "GET", "POST", "PUT", "DELETE", "JSON", "YAML", "TLS", "SSL", "URL",
                 "UTC", "API", "EOF", "OK", "NULL", "SQL", "DNS", "ID", "IO", "AMQP", "GRPC", "CPU", "RAM", "OOM"}


def classify(line: str) -> set[str]:
    return {family for family, pattern in FAMILIES.items() if pattern.search(line)}


@dataclass(frozen=True)
class HostMention:
    host: str
    port: int | None


def hosts_in(line: str) -> list[HostMention]:
    """Host names (and ports) a connection error names, most specific first."""
    found: list[HostMention] = []

    def add(host: str, port: str | None) -> None:
        if all(m.host != host for m in found):
            found.append(HostMention(host, int(port) if port and port.isdigit() else None))

    for pattern, bare_ok in _HOST_PATTERNS:
        for match in pattern.finditer(line):
            host = (match.group(1) or "").strip(".").lower()
            port = match.group(2) if (match.lastindex or 0) >= 2 else None
            plausible = "." in host or "-" in host or port or bare_ok
            if len(host) >= 3 and host not in _NOT_HOSTS and not host.isdigit() and plausible \
                    and not _IP_HOST.fullmatch(f"{host}:1"):
                add(host, port)
    for match in _IP_HOST.finditer(line):
        add(match.group(1), match.group(2))
    return found


def env_names_in(line: str) -> list[str]:
    """Upper-case identifiers that look like environment variables (`SETTLEMENT_REGION`)."""
    names = []
    for match in _ENV_NAME.finditer(line):
        name = match.group(1)
        if name not in _COMMON_WORDS and name not in names and not name.isdigit():
            names.append(name)
    return names


def quoted_in(line: str) -> list[str]:
    return [m.group(1) for m in _QUOTED.finditer(line)]


def paths_in(line: str) -> list[str]:
    return [m.group(1) for m in _PATH.finditer(line)]
