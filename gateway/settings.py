"""One validated settings tree: a TOML file, overridden by `MEETGATE_*` environment variables.

Loaded once at start-up by `load_settings` and passed in; nothing else reads the environment.
"""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from gateway.errors import ConfigError
from gateway.evidence.signing import read_key_file as read_evidence_key
from gateway.pem_keys import read_pem_file
from gateway.store.deadline import StoreOptions
from gateway.store.sentinel_url import is_sentinel_url, parse_sentinel_url
from gateway.ticket_keys import hmac_key_id, load_rsa_private_key, rsa_key_id

ENV_PREFIX = "MEETGATE_"
DEFAULT_CONFIG_PATHS = (Path("meetgate.toml"), Path("/etc/meetgate/meetgate.toml"))
MIN_SECRET_BYTES = 32
# Options of a redis:// URL's query that the Redis client reads as numbers (a value that is not
# one would stop `meetgate serve` only when it opens the store).
NUMERIC_STORE_OPTIONS = frozenset(
    {
        "db",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_read_size",
        "max_connections",
        "health_check_interval",
        "timeout",
        "protocol",
        "ssl_min_version",
    }
)
# A gate listening on every address is reached from its own machine on loopback.
WILDCARD_LOOPBACK = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 (not bound)
# A relayed Jitsi endpoint: one or more lowercase path segments, a trailing "/" for a prefix.
RELAYED_ENDPOINT = re.compile(r"(?:/[a-z0-9._~-]+)+/?")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ListenSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # On SIGTERM the process hands its relayed sessions back to their browsers, lets what is in
    # flight finish, and exits within this many seconds (docs/operations.md).
    shutdown_seconds: float = Field(default=10.0, gt=0, le=600)
    # Serving processes (gateway/workers.py); more than one needs the Redis store.
    workers: int = Field(default=1, ge=1, le=64)


class AdminSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8001, ge=1, le=65535)
    token: SecretStr
    # /docs: the operations as a plain page, behind the token like every other path (off: 404).
    docs: bool = False

    @field_validator("token")
    @classmethod
    def _strong_token(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_SECRET_BYTES} characters (use `meetgate init`)"
            )
        return value


class StoreSettings(_Section):
    url: str = "memory://"
    # A stalled store costs a request a bounded wait, then a 503 (docs/operations.md): a call
    # fails once the store has answered nothing for `deadline_seconds`, and the calls of one
    # join or refresh wait on such a silent store `request_seconds` at most in all. The pool
    # holds `pool_size` connections per replica; a call that finds them all busy waits for one
    # up to `pool_wait_seconds` (a stall ends that wait at the deadline all the same).
    deadline_seconds: float = Field(default=0.5, gt=0, le=30)
    request_seconds: float = Field(default=1.0, gt=0, le=60)
    pool_size: int = Field(default=64, ge=1, le=10_000)
    pool_wait_seconds: float = Field(default=10.0, gt=0, le=60)
    # Refuse to start while the store does not answer (else the gate starts and answers 503
    # until it does).
    require_at_start: bool = False

    @model_validator(mode="after")
    def _waits_within_deadlines(self) -> StoreSettings:
        if self.deadline_seconds > self.request_seconds:
            raise ValueError("deadline_seconds must not exceed request_seconds")
        return self

    def options(self) -> StoreOptions:
        return StoreOptions(
            deadline_seconds=self.deadline_seconds,
            request_seconds=self.request_seconds,
            pool_size=self.pool_size,
            pool_wait_seconds=self.pool_wait_seconds,
        )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if is_sentinel_url(value):
            parse_sentinel_url(value)
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("memory", "redis", "rediss", "unix"):
            raise ValueError(
                "must start with memory://, redis://, rediss://, unix:// or redis+sentinel://"
            )
        if parts.scheme in ("redis", "rediss"):
            try:
                parts.port  # noqa: B018 (urlsplit checks the port only when it is read)
            except ValueError as exc:
                raise ValueError("the port must be a number from 1 to 65535") from exc
            if parts.path.strip("/") and not parts.path.strip("/").isdigit():
                raise ValueError("the database after the host must be a number, as in /0")
        if parts.scheme == "unix" and not parts.path:
            raise ValueError("must name the socket's path: unix:///run/redis/redis.sock")
        for name, given in parse_qsl(parts.query, keep_blank_values=True):
            if name in NUMERIC_STORE_OPTIONS and not _is_number(given):
                raise ValueError(f"?{name}= must be a number")
        return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class RevocationSettings(_Section):
    # How often each replica checks its open connections against the store, besides each
    # (re)subscription to the cut channel: a revocation whose message was lost, an admission
    # that expired or a ban are applied within this many seconds (docs/operations.md).
    reconcile_seconds: float = Field(default=5.0, ge=0.5, le=60)


# prosody's HTTP APIs for Jitsi's own services (kick a participant, end a meeting, list a room):
# never reachable from a browser, whatever the config says.
PROSODY_INTERNAL_APIS = frozenset({"room-info", "kick-participant", "end-meeting", "invite-jigasi"})


class JitsiSettings(_Section):
    upstream: str = "http://127.0.0.1:8080"
    # Where /xmpp-websocket and /http-bind go; defaults to `upstream` (Jitsi's web server
    # forwards them to prosody). Point it at prosody's HTTP port to skip that hop.
    signalling_upstream: str | None = None
    xmpp_domain: str = "meet.jitsi"
    app_id: str = "meetgate"
    audience: str = "jitsi"
    connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # Jitsi endpoints beyond signalling the gate relays to `upstream` (none by default), such
    # as "/colibri-ws/" (ending in "/": every path below it) or "/conference-request/v1" (that
    # path alone). Each passes like signalling: a live admission, its connections cut on
    # revocation.
    relayed_endpoints: tuple[str, ...] = ()

    @field_validator("relayed_endpoints")
    @classmethod
    def _endpoint_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for endpoint in value:
            segments = endpoint.strip("/").split("/")
            if RELAYED_ENDPOINT.fullmatch(endpoint) is None or any(
                set(segment) == {"."} for segment in segments
            ):
                raise ValueError(
                    f"{endpoint!r} must be a lowercase path such as '/colibri-ws/' or"
                    " '/conference-request/v1'"
                )
            if any(name in endpoint for name in ("http-bind", "xmpp-websocket")):
                raise ValueError(f"{endpoint!r}: signalling is always relayed, by its own rules")
            if segments[0] in ("_meetgate", "j"):
                raise ValueError(f"{endpoint!r} is one of Meetgate's own paths")
            if segments[0] in PROSODY_INTERNAL_APIS:
                raise ValueError(f"{endpoint!r} is prosody's internal API: never relayed")
        if len(set(value)) != len(value):
            raise ValueError("names an endpoint twice")
        return value

    @field_validator("upstream", "signalling_upstream")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL of Jitsi's web server")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        return value.rstrip("/")

    @field_validator("app_id")
    @classmethod
    def _not_jaas(cls, value: str) -> str:
        if value.startswith("vpaas-magic-cookie"):
            raise ValueError("must not be a JaaS (8x8) app id: it switches Jitsi to 8x8's services")
        return value

    @property
    def signalling(self) -> str:
        return self.signalling_upstream or self.upstream


@dataclass(frozen=True, slots=True)
class PrivateKeyFile:
    """A `private_key_file` setting: the file's path and the PEM read from it at load time, so
    the key is checked with the rest of the settings and signing never touches the disk.

    A relative path is taken from the config file's directory.
    """

    path: Path
    pem: bytes = field(repr=False)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            cls._read,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda value: str(value.path)
            ),
        )

    @classmethod
    def _read(cls, value: object, info: ValidationInfo) -> PrivateKeyFile:
        if isinstance(value, PrivateKeyFile):
            return value
        if not isinstance(value, str | Path) or not str(value):
            raise ValueError("must be the path of a PEM file")
        path = Path(value)
        config_dir = (info.context or {}).get("config_dir")
        if not path.is_absolute() and isinstance(config_dir, Path):
            path = config_dir / path
        pem = read_pem_file(path, load_rsa_private_key)
        return cls(path=path, pem=pem)


class TicketKey(_Section):
    """One signing key: an HS256 `secret` shared with prosody, or an RS256 private key
    (`private_key_file`, or `private_key` inline) whose public half prosody fetches from
    Meetgate's key endpoint.

    Its id (`kid`, in every ticket's header) is derived from the key (`key_id`): prosody caches
    public keys by kid until it restarts, so an id reused for a new key would have it check every
    new ticket with the old key. A `kid` written in the config must be that derived id.
    """

    kid: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    secret: SecretStr | None = None
    private_key_file: PrivateKeyFile | None = None
    private_key: SecretStr | None = None
    _key_id: str = PrivateAttr(default="")

    @field_validator("secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} characters")
        return value

    @field_validator("private_key")
    @classmethod
    def _rsa_private_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            load_rsa_private_key(value.get_secret_value().encode("utf-8"))
        return value

    @model_validator(mode="after")
    def _one_key(self) -> TicketKey:
        given = [
            name
            for name in ("secret", "private_key_file", "private_key")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            named = f"key {self.kid!r}" if self.kid else "a key"
            raise ValueError(
                f"{named} needs exactly one of secret (HS256), private_key_file or"
                f" private_key (RS256); it has {', '.join(given) or 'none'}"
            )
        pem = self.private_pem
        if pem is None:
            secret = self.secret.get_secret_value() if self.secret else ""
            key_id = hmac_key_id(secret.encode("utf-8"))
        else:
            key_id = rsa_key_id(load_rsa_private_key(pem).public_key())
        if self.kid is not None and self.kid != key_id:
            where = f" ({self.private_key_file.path})" if self.private_key_file else ""
            raise ValueError(
                f"kid {self.kid!r} is not the id of its key{where}, which is {key_id!r}: Meetgate"
                " derives each key's id from the key, so that prosody's key cache never serves"
                " another key under it; delete the kid line (and an active_kid naming it: the"
                " first key listed signs)"
            )
        self._key_id = key_id
        return self

    @property
    def key_id(self) -> str:
        """The kid of this key, derived from it: an RFC 7638 thumbprint of an RSA public key,
        `hs-` and a hash of an HS256 secret."""
        return self._key_id

    @property
    def private_pem(self) -> bytes | None:
        """The RS256 private key's PEM, or None for an HS256 key."""
        if self.private_key_file is not None:
            return self.private_key_file.pem
        if self.private_key is not None:
            return self.private_key.get_secret_value().encode("utf-8")
        return None


class TicketSettings(_Section):
    # One algorithm at a time, as prosody accepts one: HS256 with `secret`s, or RS256 with
    # private keys whose public halves Meetgate serves at /_meetgate/keys/.
    algorithm: Literal["HS256", "RS256"] = "HS256"
    ttl_seconds: int = Field(default=120, ge=10, le=3600)
    # Prosody checks `nbf` with no leeway: a ticket's nbf lies this far before its iat, so a
    # prosody (or another replica) whose clock is behind by up to this much still accepts it.
    clock_skew_seconds: int = Field(default=30, ge=0, le=300)
    keys: list[TicketKey] = Field(min_length=1)
    active_kid: str | None = None

    @model_validator(mode="after")
    def _active_key_known(self) -> TicketSettings:
        kids = [key.key_id for key in self.keys]
        for index, kid in enumerate(kids):
            if kid in kids[:index]:
                raise ValueError(
                    f"keys[{index}] is the same key as keys[{kids.index(kid)}] ({kid!r})"
                )
        if self.active_kid is not None and self.active_kid not in kids:
            raise ValueError(
                f"active_kid {self.active_kid!r} is not the id of any key (they are"
                f" {', '.join(map(repr, kids))}; Meetgate derives them from the keys): set it to"
                " one of them, or delete it and list the signing key first"
            )
        for index, key in enumerate(self.keys):
            if self.algorithm == "HS256" and key.secret is None:
                raise ValueError(
                    f"keys[{index}] ({key.key_id!r}) has a private key, but algorithm is HS256:"
                    ' give it a secret, or set algorithm = "RS256"'
                )
            if self.algorithm == "RS256" and key.secret is not None:
                raise ValueError(
                    f"keys[{index}] ({key.key_id!r}) has a secret, but algorithm is RS256:"
                    " give it a private_key_file (prosody accepts one algorithm at a time)"
                )
        return self

    @property
    def signing_kid(self) -> str:
        return self.active_kid or self.keys[0].key_id


class AdmissionSettings(_Section):
    ttl_seconds: int = Field(default=12 * 3600, ge=60, le=7 * 24 * 3600)
    pseudonym_key: SecretStr

    @field_validator("pseudonym_key")
    @classmethod
    def _strong_key(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_SECRET_BYTES:
            raise ValueError(f"must be at least {MIN_SECRET_BYTES} characters")
        return value


class LimitSettings(_Section):
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_websocket_message_bytes: int = Field(default=1024 * 1024, ge=1024)
    # A room policy at its largest lists 10,000 addresses: about 3 MiB of JSON.
    max_admin_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Slow and greedy clients (gateway/edge/guard.py, docs/operations.md): a request's head must
    # arrive within header_read_seconds (of the connection's opening, or of its first byte
    # after the last request), its body within body_read_seconds of the head; a replica holds
    # at most max_connections client connections (WebSockets included), at most
    # max_connections_per_address from one address (an IPv6 /64; trusted_proxies exempt).
    header_read_seconds: float = Field(default=10.0, gt=0, le=300)
    body_read_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_connections: int = Field(default=4096, ge=16, le=1_000_000)
    max_connections_per_address: int = Field(default=256, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _address_within_replica(self) -> LimitSettings:
        if self.max_connections_per_address > self.max_connections:
            raise ValueError("max_connections_per_address must not exceed max_connections")
        return self


class Rate(_Section):
    """A GCRA limit: a steady `per_minute` rate, with `burst` requests allowed at once."""

    per_minute: float = Field(gt=0, le=10_000_000)
    burst: int = Field(ge=1, le=1_000_000)

    @property
    def per_second(self) -> float:
        return self.per_minute / 60


class RoomRates(_Section):
    """Per-room overrides; unset keys keep the gate-wide value."""

    address: Rate | None = None
    network: Rate | None = None
    room: Rate | None = None
    identity: Rate | None = None
    invite: Rate | None = None
    registration: Rate | None = None


class RateSettings(_Section):
    """Limits charged on every admission route before any other work (see docs/limits.md)."""

    address: Rate = Rate(per_minute=30, burst=10)
    network: Rate = Rate(per_minute=120, burst=40)
    room: Rate = Rate(per_minute=600, burst=120)
    identity: Rate = Rate(per_minute=20, burst=6)
    invite: Rate = Rate(per_minute=20, burst=6)
    gate: Rate = Rate(per_minute=6000, burst=600)
    # A room's registration page (sending the form, then its code: two charges a registration),
    # apart from the room's joins: a registration flood never spends what the invited need to
    # get in. About 300 registrations an hour, 30 at once.
    registration: Rate = Rate(per_minute=10, burst=60)
    rooms: dict[str, RoomRates] = Field(default_factory=dict)


class ChallengeSettings(_Section):
    """The self-hosted proof-of-work a flooded room (or the whole gate) demands."""

    mode: Literal["off", "auto", "on"] = "auto"
    # Rejections per 10 s in one room (ten times this for the whole gate) that switch it on.
    pressure_threshold: int = Field(default=50, ge=1)
    base_difficulty: int = Field(default=16, ge=4, le=28)
    max_difficulty: int = Field(default=22, ge=4, le=30)
    difficulty_step: int = Field(default=100, ge=1)
    max_age_seconds: int = Field(default=120, ge=10, le=3600)


class OidcProvider(_Section):
    """An OpenID Connect provider attendees may sign in with (Keycloak, Authentik, …)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$", description="used in URLs and policies")
    label: str = Field(min_length=1, max_length=60, description="shown on the sign-in button")
    issuer: str
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    name_claim: str = "name"
    groups_claim: str = "groups"

    @field_validator("issuer")
    @classmethod
    def _issuer_url(cls, value: str) -> str:
        parts = urlsplit(value)
        local = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            raise ValueError("must be an https:// URL (http:// only on loopback, for tests)")
        return value.rstrip("/")


class SmtpSettings(_Section):
    """Where e-mail one-time codes are sent from."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "meetgate@localhost"
    timeout_seconds: float = Field(default=10, gt=0, le=120)


class EmailCodeSettings(_Section):
    digits: int = Field(default=6, ge=6, le=8)
    ttl_seconds: int = Field(default=600, ge=60, le=3600)
    max_attempts: int = Field(default=5, ge=1, le=20)
    # Codes sent to one address per hour, whatever the room.
    max_sends_per_address: int = Field(default=5, ge=1, le=100)


class LobbySettings(_Section):
    # A waiting request nobody answered expires after this long.
    ttl_seconds: int = Field(default=900, ge=20, le=86400)
    max_waiting_per_room: int = Field(default=200, ge=1, le=100_000)
    max_waiting_per_address: int = Field(default=3, ge=1, le=1000)
    max_message_chars: int = Field(default=200, ge=0, le=1000)


class GuardSettings(_Section):
    """The signalling wire guard (gateway/proxy/wire_guard.py, docs/hosts.md "Chat limits"):
    what it allows each admitted session by default; rooms may set their own chat limits.

    Budgets are token buckets: `*_per_10s` stanzas every ten seconds on average, `*_burst` at
    once. `strikes`: stanzas refused to one admission (all its sessions) before the sender is
    removed (0: never).
    """

    enabled: bool = True
    chat_per_10s: int = Field(default=5, ge=1, le=10_000)
    chat_burst: int = Field(default=10, ge=1, le=10_000)
    chat_max_bytes: int = Field(default=2048, ge=64, le=1024 * 1024)
    # Presence (mute state, raised hand, stats), IQs (pings, Jingle, disco, moderation) and
    # messages without a body (polls, reactions, component requests): generous for normal use.
    presence_per_10s: int = Field(default=60, ge=1, le=100_000)
    presence_burst: int = Field(default=60, ge=1, le=100_000)
    iq_per_10s: int = Field(default=200, ge=1, le=100_000)
    iq_burst: int = Field(default=200, ge=1, le=100_000)
    signal_per_10s: int = Field(default=100, ge=1, le=100_000)
    signal_burst: int = Field(default=100, ge=1, le=100_000)
    strikes: int = Field(default=30, ge=0, le=100_000)
    # The names, below the XMPP domain, of the Jitsi components a client may address (`focus`
    # is `focus.<xmpp_domain>`; tests/fixtures/jitsi_stanzas.py says where each is read from).
    # The MUC is `conference` in Jitsi's Debian packages and `muc` in docker-jitsi-meet (its
    # XMPP_MUC_DOMAIN): either may be the room's. Lobby rooms are on `lobby`, breakout rooms on
    # `breakout`.
    components: tuple[str, ...] = (
        "focus",
        "speakerstats",
        "avmoderation",
        "endconference",
        "metadata",
        "polls",
        "filesharing",
        "audiotranslation",
    )
    muc: tuple[str, ...] = ("conference", "muc")
    lobby: str = "lobby"
    breakout: str = "breakout"


class RegistrationSettings(_Section):
    """Registration with host review (gateway/admission/registrations.py, docs/hosts.md): how
    long what a registrant gave is kept, and the limits that keep the hosts' list readable.

    A registration (name, address, note) is gone `kept_after_meeting_seconds` after its room's
    meeting ends, or, for a room with no end time set, `kept_seconds` after it last changed.
    """

    kept_after_meeting_seconds: int = Field(default=24 * 3600, ge=0, le=30 * 24 * 3600)
    kept_seconds: int = Field(default=7 * 24 * 3600, ge=3600, le=90 * 24 * 3600)
    # A registration not confirmed by its code within this long is gone.
    confirm_ttl_seconds: int = Field(default=1800, ge=300, le=86400)
    max_note_chars: int = Field(default=500, ge=0, le=2000)
    # Registrations waiting for an answer one room holds at once (answered ones do not count);
    # past it, new ones are refused with a page that says so, never silently dropped.
    max_per_room: int = Field(default=2000, ge=1, le=100_000)
    # Registrations from one network (an IPv4 /24, an IPv6 /48) within the window at or past
    # which each of them is flagged to the hosts as part of a burst.
    burst_window_seconds: int = Field(default=600, ge=60, le=86400)
    burst_threshold: int = Field(default=5, ge=2, le=10_000)
    # Keyed hashes of the addresses (and domains) admitted to a room or its series, kept this
    # long to tell hosts "seen before"; never the addresses themselves.
    seen_kept_days: int = Field(default=400, ge=1, le=3650)


class OutboxSettings(_Section):
    """The queue that sends invitations by e-mail (gateway/admission/outbox.py): as fast as the
    mail server accepts, retried when it fails, each message sent once."""

    # Messages every minute, across all replicas, and how many may go at once after a pause.
    per_minute: float = Field(default=60, gt=0, le=100_000)
    burst: int = Field(default=10, ge=1, le=10_000)
    # Tries of one message before it is reported failed; the wait after the first failure,
    # doubled after each, up to the most.
    max_attempts: int = Field(default=8, ge=1, le=100)
    retry_seconds: float = Field(default=30, ge=0.1, le=3600)
    retry_max_seconds: float = Field(default=1800, ge=1, le=86400)
    # A batch's progress (counts only, no address) is kept this long after its last change.
    batch_kept_seconds: int = Field(default=7 * 24 * 3600, ge=3600, le=90 * 24 * 3600)


class EvidenceSettings(_Section):
    """The evidence log of attacks (gateway/evidence/, docs/evidence.md): the Ed25519 key that
    signs it, how often a chain's head is signed, and, for the memory store, the directory its
    chains are kept in (unset: in memory, gone at a restart). Relative paths are taken from the
    config file's directory."""

    key_file: Path | None = None
    sign_every: int = Field(default=100, ge=1, le=100_000)
    sign_seconds: float = Field(default=60.0, ge=1, le=86_400)
    directory: Path | None = None
    # With the Redis store: entries older than this go as new ones come, and a chain's keys a
    # retention after its last entry. A chain is never trimmed by count: once it holds
    # `max_entries`, floods and refused names are turned away (an `evidence lost` entry says how
    # many) and host, admin and guard entries are still kept.
    retention_days: int = Field(default=90, ge=1, le=3650)
    max_entries: int = Field(default=100_000, ge=100, le=10_000_000)
    _private_pem: bytes | None = PrivateAttr(default=None)

    @field_validator("key_file", "directory")
    @classmethod
    def _from_config_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        config_dir = (info.context or {}).get("config_dir")
        if value is not None and not value.is_absolute() and isinstance(config_dir, Path):
            return config_dir / value
        return value

    @model_validator(mode="after")
    def _key_readable(self) -> EvidenceSettings:
        if self.key_file is not None:
            self._private_pem = read_evidence_key(self.key_file)
        return self

    @property
    def private_pem(self) -> bytes | None:
        """The signing key's PEM, read and checked with the settings."""
        return self._private_pem


class LoggingSettings(_Section):
    # Off: no log line carries a client's address. Truncated: the access log names the /24
    # (IPv4) or /48 (IPv6) network a request came from, never the address itself.
    client_addresses: Literal["off", "truncated"] = "off"


class PrivacySettings(_Section):
    """How long the gate keeps what it must keep for a while (docs/privacy.md)."""

    # The hosts' audit log of their actions: entries older than this go (and a room's whole
    # log once it has had no new entry for this long). `meetgate audit purge` deletes sooner.
    audit_retention_days: int = Field(default=30, ge=1, le=3650)


class Settings(_Section):
    public_url: str = "http://127.0.0.1:8000"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    logging: LoggingSettings = LoggingSettings()
    ephemeral: bool = False
    listen: ListenSettings = ListenSettings()
    admin: AdminSettings
    store: StoreSettings = StoreSettings()
    revocation: RevocationSettings = RevocationSettings()
    jitsi: JitsiSettings = JitsiSettings()
    tickets: TicketSettings
    admission: AdmissionSettings
    limits: LimitSettings = LimitSettings()
    rates: RateSettings = RateSettings()
    oidc: list[OidcProvider] = Field(default_factory=list)
    smtp: SmtpSettings = SmtpSettings()
    email_codes: EmailCodeSettings = EmailCodeSettings()
    lobby: LobbySettings = LobbySettings()
    registration: RegistrationSettings = RegistrationSettings()
    outbox: OutboxSettings = OutboxSettings()
    challenge: ChallengeSettings = ChallengeSettings()
    guard: GuardSettings = GuardSettings()
    evidence: EvidenceSettings = EvidenceSettings()
    privacy: PrivacySettings = PrivacySettings()
    # Peers whose X-Forwarded-For / Forwarded headers are believed (the TLS front, a load
    # balancer). Everyone else is limited by their socket address.
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        import ipaddress

        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not an address or CIDR network") from exc
        return value

    @field_validator("public_url")
    @classmethod
    def _origin_only(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be the http:// or https:// address attendees use")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be an origin (scheme, host, port) without a path")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _codes_have_a_mail_server(self) -> Settings:
        # Without a server named, every code would go to 127.0.0.1:25 and, where nothing
        # listens there, be lost with only a log line: the attendee waits for a mail that never
        # comes. Naming 127.0.0.1 in [smtp] host is how a local mail server is chosen.
        if "email_codes" in self.model_fields_set and not self.mail_configured:
            raise ValueError(
                f"{_describe(('smtp', 'host'))}: required, because [email_codes] is set: codes"
                " are sent by e-mail and no SMTP server is configured (add an [smtp] table with"
                " host and sender, docs/configuration.md), or remove [email_codes]"
            )
        return self

    @model_validator(mode="after")
    def _workers_share_a_store(self) -> Settings:
        if self.listen.workers > 1 and not self.store.url.startswith(
            ("redis://", "rediss://", "redis+sentinel://")
        ):
            raise ValueError(
                f"{_describe(('listen', 'workers'))}: more than one worker needs the Redis store"
                ' ([store] url = "redis://…"): with the memory store each worker would keep its'
                " own bans, limits and admissions"
            )
        return self

    def store_options(self) -> StoreOptions:
        """How the store is driven: `[store]`'s options and how long it keeps audit entries."""
        days = self.privacy.audit_retention_days
        return replace(self.store.options(), audit_retention_seconds=days * 86_400.0)

    @property
    def mail_configured(self) -> bool:
        """Whether an SMTP server is named ([smtp] host), so e-mail codes can be sent."""
        return "host" in self.smtp.model_fields_set and bool(self.smtp.host.strip())

    @property
    def secure(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def public_host(self) -> str:
        return urlsplit(self.public_url).netloc


def _env_tree(environ: Mapping[str, str], problems: list[str]) -> dict[str, Any]:
    """Turn `MEETGATE_TICKETS__TTL_SECONDS=60` into {"tickets": {"ttl_seconds": "60"}}; a value
    that cannot be read is added to `problems`, named."""
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == "MEETGATE_CONFIG":
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        try:
            parsed = _parse_env_value(value)
        except ValueError as exc:
            problems.append(f"{_describe(tuple(path))}: {exc}")
            continue
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[path[-1]] = parsed
    return tree


def _parse_env_value(value: str) -> Any:
    # Lists of tables (tickets.keys) are given as JSON; everything else stays a string for pydantic.
    if value.startswith(("[", "{")):
        import json

        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            # The parser's words and the position only: the value may hold a secret.
            raise ValueError(
                f"starts with '{value[0]}', so it is read as JSON, but it is not valid JSON:"
                f" {exc.msg} at line {exc.lineno}, column {exc.colno}"
            ) from exc
        except ValueError as exc:
            raise ValueError(
                f"starts with '{value[0]}', so it is read as JSON, but it is not valid JSON"
            ) from exc
    return value


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(loc: tuple[int | str, ...]) -> str:
    """A setting as the user writes it: `[listen] port (MEETGATE_LISTEN__PORT)`, or for an item
    of a list `[tickets] keys[0].private_key_file (MEETGATE_TICKETS__KEYS)`."""
    if any(isinstance(part, int) for part in loc):
        # A list is one TOML array and one JSON-valued environment variable.
        first_index = next(i for i, part in enumerate(loc) if isinstance(part, int))
        env = ENV_PREFIX + "__".join(str(part).upper() for part in loc[:first_index])
        path = ""
        for part in loc:
            if isinstance(part, int):
                path += f"[{part}]"
            else:
                path += f".{part}" if path else part
        if len(loc) > 1 and isinstance(loc[1], str):
            table, _, rest = path.partition(".")
            path = f"[{table}] {rest}"
        return f"{path} ({env})"
    names = [str(part) for part in loc]
    env = ENV_PREFIX + "__".join(name.upper() for name in names)
    if len(names) == 1 and _is_table(names[0]):
        # A check across a table's keys, or a table left out: its keys are set one by one.
        return f"[{names[0]}] ({env}__…)"
    if len(names) > 1:
        toml = f"[{'.'.join(names[:-1])}] {names[-1]}"
    else:
        toml = names[0] if names else "(settings)"
    return f"{toml} ({env})"


def _is_table(name: str) -> bool:
    """Is `name` a table of the TOML file ([store], [tickets]), rather than a key?"""
    field_info = Settings.model_fields.get(name)
    kind = field_info.annotation if field_info is not None else None
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def ephemeral_secrets() -> dict[str, Any]:
    """Fresh secrets for a run without a config file; gone when the process stops."""
    return {
        "ephemeral": True,
        "admin": {"token": secrets.token_urlsafe(32)},
        "tickets": {"keys": [{"secret": secrets.token_urlsafe(48)}]},
        "admission": {"pseudonym_key": secrets.token_urlsafe(32)},
    }


def find_config(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        return explicit
    if environ.get("MEETGATE_CONFIG"):
        return Path(environ["MEETGATE_CONFIG"])
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.is_file():
            return candidate
    return None


def load_settings(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    allow_ephemeral: bool = True,
) -> Settings:
    """Read the TOML file (if any), apply `MEETGATE_*` overrides and validate everything at once.

    Without a config file, and with `allow_ephemeral`, secrets are generated for this run only.
    Raises ConfigError listing every bad key.
    """
    env = os.environ if environ is None else environ
    config_path = find_config(path, env)
    data: dict[str, Any] = {}
    if config_path is not None:
        data = _read_config(config_path)
    elif allow_ephemeral:
        data = ephemeral_secrets()
    problems: list[str] = []
    data = _merge(data, _env_tree(env, problems))
    # Key files named by a relative path are found next to the config file.
    config_dir = config_path.parent if config_path is not None else Path.cwd()
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data, context={"config_dir": config_dir})
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown setting"
            elif error["type"] == "missing":
                message = "required, but not set"
            loc = tuple(error["loc"])
            # A check across tables (on Settings itself) names its keys in its message.
            problems.append(f"{_describe(loc)}: {message}" if loc else message)
    if problems or settings is None:
        where = f" in {config_path}" if config_path else ""
        raise ConfigError([f"invalid settings{where}:", *problems])
    if settings.ephemeral and "public_url" not in settings.model_fields_set:
        # A run without a config file is reached where it listens: join links and the pages'
        # same-origin checks follow MEETGATE_LISTEN__PORT (and __HOST) unless
        # MEETGATE_PUBLIC_URL says otherwise.
        settings = settings.model_copy(update={"public_url": listen_url(settings.listen)})
    return settings


def listen_url(listen: ListenSettings) -> str:
    """The gate's own address as a browser on this machine reaches it: a wildcard host is
    reached on loopback."""
    host = WILDCARD_LOOPBACK.get(listen.host, listen.host)
    return f"http://[{host}]:{listen.port}" if ":" in host else f"http://{host}:{listen.port}"


def _read_config(path: Path) -> dict[str, Any]:
    """The TOML file's tables; ConfigError, naming the file, for anything that stops it."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError([f"config file {path} does not exist"]) from exc
    except PermissionError as exc:
        raise ConfigError([f"config file {path} cannot be read by this user"]) from exc
    except IsADirectoryError as exc:
        raise ConfigError([f"config file {path} is a directory, not a file"]) from exc
    except OSError as exc:
        raise ConfigError([f"config file {path} cannot be read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"config file {path} is not UTF-8 text (byte {exc.start} cannot be read)"]
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config file {path} is not valid TOML: {exc}"]) from exc
