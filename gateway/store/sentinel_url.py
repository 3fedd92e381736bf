"""The `redis+sentinel://` store URL: which Sentinels to ask, for which master, with which
credentials. Parsing only (settings check it at load, `store/redis.py` connects with it).

    redis+sentinel://[[username]:password@]host[:port][,host[:port]…]/master-name[/db]
                     [?sentinel_password=…]

The credentials are Redis's own; the Sentinels are sent the same ones unless
`sentinel_password` (and `sentinel_username`) say otherwise — an empty `sentinel_password` means
the Sentinels need none. Ports default to 26379, the database to 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379
_QUERY_KEYS = frozenset({"sentinel_username", "sentinel_password"})
_HOST = re.compile(r"\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+)")
_MASTER_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


@dataclass(frozen=True, slots=True)
class SentinelLocation:
    """Where a Sentinel-managed Redis is: its Sentinels' addresses and the master's name."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def __repr__(self) -> str:
        # Never a password in a log line or a traceback.
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"SentinelLocation({hosts}/{self.master_name}/{self.db})"


def is_sentinel_url(url: str) -> bool:
    return url.lower().startswith(SCHEME + "://")


def parse_sentinel_url(url: str) -> SentinelLocation:
    """Raise ValueError, saying what is wrong (never repeating a password), for a bad URL."""
    if not is_sentinel_url(url):
        raise ValueError(f"must start with {SCHEME}://")
    rest = url[len(SCHEME) + 3 :]
    if "#" in rest:
        raise ValueError("must not have a #fragment")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_address(part) for part in hosts.split(","))
    parts = path.split("/") if path else []
    if not parts or len(parts) > 2 or not _MASTER_NAME.fullmatch(parts[0]):
        raise ValueError(
            "must name the master after the Sentinels' addresses:"
            f" {SCHEME}://host:26379,host:26379/<master-name>[/<db>]"
        )
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit() or int(parts[1]) > 1_000_000:
            raise ValueError("the database after the master's name must be a number")
        db = int(parts[1])
    options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    unknown = set(options) - _QUERY_KEYS
    if unknown:
        raise ValueError(
            f"unknown option {sorted(unknown)[0]!r}: only sentinel_username and"
            " sentinel_password are understood"
        )
    sentinel_username = options.get("sentinel_username", username) or None
    sentinel_password = options.get("sentinel_password", password) or None
    return SentinelLocation(
        sentinels=sentinels,
        master_name=parts[0],
        db=db,
        username=username,
        password=password,
        sentinel_username=sentinel_username,
        sentinel_password=sentinel_password,
    )


def _address(text: str) -> tuple[str, int]:
    host, port = text, ""
    if text.startswith("["):
        # [v6]:port; without the closing bracket `host` stays empty and is refused below.
        end = text.find("]")
        host, port = text[: end + 1], text[end + 1 :].removeprefix(":")
    elif ":" in text:
        host, _, port = text.partition(":")
    match = _HOST.fullmatch(host)
    if not host or match is None or (port and not port.isdigit()):
        raise ValueError(
            "must list each Sentinel as host:port, separated by commas"
            f" ({SCHEME}://10.0.0.1:26379,10.0.0.2:26379/mymaster)"
        )
    number = int(port) if port else DEFAULT_SENTINEL_PORT
    if not 1 <= number <= 65535:
        raise ValueError("has a Sentinel port outside 1-65535")
    return match.group("v6") or match.group("name"), number
