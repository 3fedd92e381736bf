"""What may be written to the log: a filter `meetgate serve` puts on its log handlers, and how a
client's address is shown when the admin asks for addresses at all.

The sources are closed first: below WARNING only Meetgate's own loggers pass (its HTTP server,
gateway/edge/server.py, is one of them and writes nothing about a request). Everything else a
library says at INFO or DEBUG is per request or per frame (the WebSocket library's request lines
and headers, the HTTP clients' upstream URLs) and is dropped.
What does pass, warnings and tracebacks included, is scrubbed of anything shaped like a ticket,
an invite link, a cookie, a credential or an e-mail address as a last resort.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
from typing import Literal

ClientAddresses = Literal["off", "truncated"]

OWN_LOGGER = "meetgate"
# Libraries that write request URLs, headers or frames at INFO and DEBUG: not asked to at all.
QUIET_LIBRARIES = (
    "httpx",
    "httpcore",
    "hpack",
    "websockets",
    "authlib",
    "redis",
    "multipart",
    "python_multipart",
)

# Networks an address is shown as with `client_addresses = "truncated"`.
IPV4_PREFIX = 24
IPV6_PREFIX = 48

# Query parameters (and cookies) whose values are secrets in some request Meetgate sees or
# makes; so is any cookie whose name starts with "meetgate".
SCRUBBED_NAMES = frozenset(
    {
        "token",
        "jwt",
        "previd",
        "code",
        "state",
        "session_state",
        "id_token",
        "access_token",
        "refresh_token",
        "nonce",
        "code_verifier",
        "code_challenge",
        "password",
        "sentinel_password",
        "email",
        "login_hint",
    }
)
_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_VALUE = re.compile(r"[^&;,\s\"'#<>]+")
# Each rule: a literal (lower case) a text must hold for the pattern to match at all, so that
# a line without it costs a substring check, not a regex pass; the pattern; its replacement.
_RULES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("eyj", re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*"), "[jwt]"),
    ("/j/", re.compile(r"(/j/)[^/\s?#\"'<>\[]+"), r"\1[invite]"),
    ("cookie:", re.compile(r"(?i)((?:set-)?cookie:)[^\r\n]*"), r"\1 [redacted]"),
    ("authorization:", re.compile(r"(?i)(authorization:)[^\r\n]*"), r"\1 [redacted]"),
    ("bearer", re.compile(r"(?i)(bearer\s+)[\w.~+/=-]+"), r"\1[redacted]"),
    ("@", re.compile(r"[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), "[e-mail]"),
)


def _ascii_lower(text: str) -> str:
    # Same length as `text` (each other character becomes one "?"), so positions carry over.
    return text.encode("ascii", "replace").lower().decode("ascii")


def _secret_name(name: str) -> bool:
    """A secret's parameter name, or one of Meetgate's cookies (`__Host-` or `__Secure-` too)."""
    cookie = name.lstrip("_").removeprefix("host-").removeprefix("secure-")
    return name in SCRUBBED_NAMES or cookie.startswith("meetgate")


def _scrub_values(text: str) -> str:
    """Every `name=value` whose name is a secret's, with the value replaced (found by each "="
    and the name before it: one regex alternation tried at every position costs far more)."""
    lowered = _ascii_lower(text)
    pieces: list[str] = []
    done = 0
    at = lowered.find("=")
    while at != -1:
        start = at
        while start and lowered[start - 1] in _NAME_CHARACTERS:
            start -= 1
        value = _VALUE.match(text, at + 1)
        if value is not None and _secret_name(lowered[start:at]):
            pieces += (text[done : at + 1], "[redacted]")
            done = value.end()
        at = lowered.find("=", at + 1)
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def scrub(text: str) -> str:
    """`text` with every ticket, invite path, secret query value, cookie, credential and e-mail
    address replaced by a placeholder."""
    lowered = text.lower()
    for literal, pattern, replacement in _RULES:
        if literal in lowered:
            text = pattern.sub(replacement, text)
    if "=" in text:
        text = _scrub_values(text)
    return text


def client_network(address: str) -> str | None:
    """The network an address is shown as: its /24 (IPv4) or /48 (IPv6), e.g. `127.0.0.0/24`;
    None for what is not an address (`unknown`)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    prefix = IPV4_PREFIX if parsed.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{parsed}/{prefix}", strict=False))


def _may_inform(record: logging.LogRecord) -> bool:
    """Whether a line below WARNING may be written: Meetgate's own only."""
    name = record.name
    return name == OWN_LOGGER or name.startswith(OWN_LOGGER + ".")


class PrivateLog(logging.Filter):
    """Drops what no line may carry (see the module's doc) and scrubs what is left, the
    traceback included. Put on handlers, so it sees every logger's records."""

    def __init__(self) -> None:
        super().__init__()
        self._tracebacks = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and not _may_inform(record):
            return False
        record.msg, record.args = scrub(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            # Formatters use `exc_text` when it is set: the traceback is written scrubbed.
            record.exc_text = self._tracebacks.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def install(handlers: Iterable[logging.Handler], level: int) -> None:
    """Guard `handlers` (the root logger's) with PrivateLog and quiet the libraries whose INFO
    and DEBUG lines would be dropped anyway, so they are not made at all."""
    for handler in handlers:
        if not any(isinstance(f, PrivateLog) for f in handler.filters):
            handler.addFilter(PrivateLog())
    quiet = max(level, logging.WARNING)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(quiet)
