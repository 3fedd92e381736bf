"""`meetgate doctor`: checks a live deployment against the settings Meetgate runs with and reports
one verdict per line (PASS, WARN or FAIL, with the reason), so an admin sees at once what is wrong.

Every network check is bounded by a timeout. The checks only read; the steps that come closest
to writing are short XMPP login attempts against Jitsi's signalling, closed again at once, the
refused bypass probes at the public address (counted by its rate limits), a made-up code offered
to each OpenID provider's token endpoint and a sign-in started there and never finished, and an
SMTP login and MAIL FROM undone by RSET (no mail is sent). Redis is read (PING,
CONFIG GET, or INFO persistence where CONFIG is not allowed) through `redis_persistence` here
rather than through the `Store` protocol, which has no reason to expose server configuration; the
client comes from `store/redis.py` (Sentinel included). The store's memory marker is read through
the `Store` (gateway/store/continuity.py).

With `--url` and no config file, only the look from outside runs (gateway/doctor_outside.py:
TLS, headers, bypass probes); with a config, that and everything else, the identity paths
(OpenID providers, SMTP: gateway/doctor_identity.py) included.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import hashlib
import hmac
import ipaddress
import math
import os
import re
import secrets
import stat
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from redis.exceptions import RedisError, ResponseError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from gateway.doctor_findings import Finding as Finding
from gateway.doctor_findings import Verdict as Verdict
from gateway.doctor_findings import reason
from gateway.doctor_identity import check_providers, check_smtp
from gateway.doctor_options import DoctorOptions
from gateway.doctor_outside import check_from_outside
from gateway.errors import ConfigError, StoreUnavailable
from gateway.evidence.backend import is_redis_url
from gateway.evidence.files import check_directory as check_evidence_directory
from gateway.proxy import stanzas
from gateway.settings import Settings, find_config, load_settings
from gateway.store import StoreOptions, open_store
from gateway.store.continuity import parse_marker
from gateway.store.records import Admission, Role
from gateway.store.redis import client_for, close_client
from gateway.ticket_keys import (
    generate_private_pem,
    key_file_name,
    load_rsa_private_key,
    prosody_key_url,
)
from gateway.tickets import TicketAuthority

# ---------------------------------------------------------------- secrets

MIN_SECRET_BITS = 128
# Words that only a hand-written or copied example value contains (long enough that a random
# value contains one by chance about once in a billion).
EXAMPLE_MARKERS = ("change", "example", "placeholder", "secret", "password")


def estimated_bits(value: str) -> float:
    """A rough strength estimate: the string's Shannon entropy per character times its length.

    It under-rates nothing random (a `secrets.token_urlsafe(32)` scores about 220 bits) and
    catches what people type: repeated characters, words, short values.
    """
    if not value:
        return 0.0
    counts = Counter(value)
    per_char = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return per_char * len(value)


def _named_secrets(settings: Settings) -> list[tuple[str, str]]:
    named = [("[admin] token", settings.admin.token.get_secret_value())]
    named += [
        (f"[[tickets.keys]] {key.key_id} secret", key.secret.get_secret_value())
        for key in settings.tickets.keys
        if key.secret is not None
    ]
    named.append(("[admission] pseudonym_key", settings.admission.pseudonym_key.get_secret_value()))
    return named


def check_secrets(settings: Settings) -> Finding:
    """Every secret long, random-looking, not an example value, and used for one thing only."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for name, value in _named_secrets(settings):
        lowered = value.lower()
        marker = next((m for m in EXAMPLE_MARKERS if m in lowered), None)
        if marker is not None:
            problems.append(f"{name} looks like an example value (contains {marker!r})")
        elif (bits := estimated_bits(value)) < MIN_SECRET_BITS:
            problems.append(f"{name} is weak (about {bits:.0f} bits, want {MIN_SECRET_BITS})")
        if value in seen:
            problems.append(f"{name} is the same as {seen[value]}")
        seen.setdefault(value, name)
    if problems:
        return Finding(
            "secrets",
            Verdict.FAIL,
            "; ".join(problems) + ": generate new ones (`meetgate init`, deploy/compose/setup)",
        )
    return Finding(
        "secrets", Verdict.PASS, f"{len(seen)} secrets, each long, random-looking and distinct"
    )


def check_settings(settings: Settings, config_path: Path) -> list[Finding]:
    """Pure checks of the loaded settings (beyond what validation already refuses)."""
    findings = [Finding("config", Verdict.PASS, f"{config_path} is valid"), check_secrets(settings)]
    try:
        mode = stat.S_IMODE(config_path.stat().st_mode)
    except OSError:
        mode = 0
    # Group-readable is how Kubernetes hands a Secret to a non-root pod (fsGroup); others not.
    if mode & 0o007:
        findings.append(
            Finding(
                "config mode",
                Verdict.WARN,
                f"{config_path} has mode {mode:04o}: anyone on the host can read its secrets;"
                " chmod 600 it",
            )
        )
    for key in settings.tickets.keys:
        if key.private_key_file is None:
            continue
        try:
            key_mode = stat.S_IMODE(key.private_key_file.path.stat().st_mode)
        except OSError:
            key_mode = 0
        if key_mode & 0o007:
            findings.append(
                Finding(
                    "key file mode",
                    Verdict.WARN,
                    f"{key.private_key_file.path} has mode {key_mode:04o}: anyone on the host can"
                    " read the private key that signs tickets; chmod 600 it",
                )
            )
    findings += check_evidence(settings)
    findings.append(check_trusted_proxies(settings.trusted_proxies))
    findings.append(check_stanza_reader(settings.guard.enabled, stanzas.READER))
    if not settings.secure:
        host = urlsplit(settings.public_url).hostname or ""
        local = host in ("127.0.0.1", "localhost", "::1")
        findings.append(
            Finding(
                "public_url",
                Verdict.WARN if local else Verdict.FAIL,
                f"{settings.public_url} is not https://: cookies are not Secure and pages send no"
                " HSTS" + (" (fine on loopback for a first look)" if local else ""),
            )
        )
    if settings.tickets.ttl_seconds > 600:
        findings.append(
            Finding(
                "ticket lifetime",
                Verdict.WARN,
                f"[tickets] ttl_seconds = {settings.tickets.ttl_seconds}: a copied ticket opens new"
                " connections that long; 120 s is the default",
            )
        )
    return findings


def check_evidence(settings: Settings) -> list[Finding]:
    """The evidence key file readable by the gate's user alone, and the evidence directory the
    gate's user's, written by nobody else (the gate refuses to start with it otherwise)."""
    findings = []
    key_file = settings.evidence.key_file
    if key_file is not None:
        try:
            mode = stat.S_IMODE(key_file.stat().st_mode)
        except OSError:
            mode = 0
        if mode & 0o077:
            findings.append(
                Finding(
                    "evidence key mode",
                    Verdict.WARN,
                    f"{key_file} has mode {mode:04o}: others on the host can read the key that"
                    " signs the evidence; chmod 600 it",
                )
            )
    directory = settings.evidence.directory
    if directory is not None and not is_redis_url(settings.store.url):
        problem = check_evidence_directory(directory)
        if problem is not None:
            findings.append(Finding("evidence directory", Verdict.FAIL, problem))
    return findings


# ---------------------------------------------------------------- Jitsi's config.js

# Hosts (and their subdomains) a Jitsi client must never be told about: each is a request to a
# third party, or a trust in one (JaaS).
THIRD_PARTY_HOSTS = (
    "meet-jit-si-turnrelay.jitsi.net",  # the default public STUN server for p2p and the bridge
    "jitsi.net",  # Jitsi's hosted APIs: dial-in, JaaS keys, whiteboard, rtcstats
    "jit.si",  # Jitsi's public meeting service
    "8x8.vc",
    "8x8.com",
    "gravatar.com",
    "google-analytics.com",
    "googletagmanager.com",
    "amplitude.com",
    "giphy.com",
    "dropbox.com",
    "dropboxapi.com",
    "callstats.io",
    "googleapis.com",
    "google.com",
    "microsoftonline.com",
    "graph.microsoft.com",
    "youtube.com",
    "youtube-nocookie.com",
    "youtu.be",
    "matomo.cloud",
    "sentry.io",
)
# Settings that switch on a third-party service when given a value.
THIRD_PARTY_KEYS = (
    "amplitudeAPPKey",
    "googleAnalyticsTrackingId",
    "matomoEndpoint",
    "rtcstatsEndpoint",
    "callStatsID",
    "googleApiApplicationClientID",
    "microsoftApiApplicationClientID",
    "dialInNumbersUrl",
    "dialInConfCodeUrl",
    "inviteServiceUrl",
    "peopleSearchUrl",
)
_HOSTNAME = re.compile(r"(?<![A-Za-z0-9.-])((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,63})(?![A-Za-z0-9-])")
_KEY_WITH_VALUE = re.compile(
    r"\b(" + "|".join(THIRD_PARTY_KEYS) + r")['\"]?\s*[:=]\s*(['\"`])[^'\"`]+\2"
)
_ANONYMOUS_DOMAIN = re.compile(r"\banonymousdomain['\"]?\s*[:=]\s*(['\"`])([^'\"`]+)\1")
_NO_THIRD_PARTY = re.compile(r"\bdisableThirdPartyRequests['\"]?\s*[:=]\s*true\b")


def strip_js_comments(source: str) -> str:
    """`source` without `//` and `/* */` comments; string literals are kept as they are.

    Jitsi's stock config.js documents third-party hosts in comments; only code counts.
    """
    out: list[str] = []
    i, n = 0, len(source)
    quote: str | None = None
    while i < n:
        char = source[i]
        if quote is not None:
            out.append(char)
            if char == "\\" and i + 1 < n:
                out.append(source[i + 1])
                i += 2
                continue
            if char == quote or (char == "\n" and quote != "`"):
                quote = None
            i += 1
        elif char in "'\"`":
            quote = char
            out.append(char)
            i += 1
        elif source.startswith("//", i):
            end = source.find("\n", i)
            i = n if end < 0 else end
        elif source.startswith("/*", i):
            end = source.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        else:
            out.append(char)
            i += 1
    return "".join(out)


def third_party_hosts(text: str) -> list[str]:
    """The third-party hostnames named in `text` (no comment stripping), sorted, each once."""
    found = set()
    for match in _HOSTNAME.finditer(text):
        host = match.group(1).lower()
        if any(host == bad or host.endswith("." + bad) for bad in THIRD_PARTY_HOSTS):
            found.add(host)
    return sorted(found)


def scan_jitsi_config(source: str, public_url: str) -> list[Finding]:
    """Verdicts on Jitsi's config.js: third parties, a guest domain, where expired tickets go."""
    code = strip_js_comments(source)
    findings: list[Finding] = []
    hosts = third_party_hosts(code)
    keys = sorted({match.group(1) for match in _KEY_WITH_VALUE.finditer(code)})
    if hosts or keys:
        named = [*hosts, *(f"{key} (set)" for key in keys)]
        findings.append(
            Finding(
                "third parties",
                Verdict.FAIL,
                "config.js sends browsers to third parties: " + ", ".join(named),
            )
        )
    else:
        findings.append(Finding("third parties", Verdict.PASS, "config.js names no third party"))
    if not _NO_THIRD_PARTY.search(code):
        findings.append(
            Finding(
                "third-party switch",
                Verdict.WARN,
                "config.js does not set disableThirdPartyRequests: true (gravatar, callstats and"
                " others stay possible)",
            )
        )
    if "stunServers" not in code:
        findings.append(
            Finding(
                "p2p STUN",
                Verdict.WARN,
                "config.js sets no p2p.stunServers: the client then falls back to Jitsi's public"
                " STUN server for two-person calls; point it at your own TURN/STUN",
            )
        )
    guest = _ANONYMOUS_DOMAIN.search(code)
    if guest is not None:
        findings.append(
            Finding(
                "guest domain",
                Verdict.FAIL,
                f"config.js names a guest domain ({guest.group(2)}): anyone can join without a"
                " ticket; set ENABLE_GUESTS=0 and remove hosts.anonymousdomain",
            )
        )
    else:
        findings.append(Finding("guest domain", Verdict.PASS, "config.js has no anonymousdomain"))
    ticket_url = f"{public_url}/_meetgate/ticket"
    if ticket_url in code:
        findings.append(Finding("tokenAuthUrl", Verdict.PASS, f"points at {ticket_url}"))
    else:
        findings.append(
            Finding(
                "tokenAuthUrl",
                Verdict.WARN,
                f"config.js does not point tokenAuthUrl at {ticket_url}?room={{room}}: an expired"
                " ticket cannot be renewed",
            )
        )
    return findings


# ---------------------------------------------------------------- Redis


@dataclass(frozen=True, slots=True)
class RedisPersistence:
    appendonly: str | None  # "yes" / "no", or None when neither CONFIG nor INFO tells
    save: str | None
    appendfsync: str | None = None
    # Where it was read: "CONFIG", or "INFO" when CONFIG is not allowed (managed services).
    source: str = "CONFIG"


async def redis_persistence(url: str, seconds: float) -> RedisPersistence:
    """PING the store's Redis and read its persistence settings; writes nothing.

    The one place doctor talks to Redis (the `Store` protocol has no reason to expose server
    configuration). Raises RedisError or OSError when Redis cannot be reached.
    """
    client, sentinel = client_for(url, socket_timeout=seconds, socket_connect_timeout=seconds)
    try:
        await client.ping()
        try:
            appendonly = await client.config_get("appendonly")
            save = await client.config_get("save")
            fsync = await client.config_get("appendfsync")
        except ResponseError:
            # Managed Redis services often rename or forbid CONFIG; INFO still says whether
            # the append-only file is on.
            try:
                info = await client.info("persistence")
            except ResponseError:
                return RedisPersistence(appendonly=None, save=None, source="")
            enabled = info.get("aof_enabled")
            if enabled is None:
                return RedisPersistence(appendonly=None, save=None, source="")
            return RedisPersistence(
                appendonly="yes" if str(enabled) == "1" else "no", save=None, source="INFO"
            )
        return RedisPersistence(
            appendonly=appendonly.get("appendonly"),
            save=save.get("save"),
            appendfsync=fsync.get("appendfsync"),
        )
    finally:
        await close_client(client, sentinel)


def persistence_finding(persistence: RedisPersistence) -> Finding:
    """The verdict on Redis's persistence: bans and revocations must survive a restart."""
    if persistence.appendonly is None:
        return Finding(
            "persistence",
            Verdict.WARN,
            "cannot read Redis's CONFIG or INFO (not allowed here): make sure AOF is on, or"
            " bans and revocations are lost when Redis restarts",
        )
    if persistence.appendonly != "yes":
        snapshots = f" (RDB snapshots only: save {persistence.save!r})" if persistence.save else ""
        return Finding(
            "persistence",
            Verdict.FAIL,
            f"Redis has appendonly {persistence.appendonly}{snapshots}: revocations and bans"
            " since the last snapshot are lost on restart; set appendonly yes",
        )
    if persistence.source == "INFO":
        return Finding(
            "persistence",
            Verdict.PASS,
            "Redis writes an append-only file (read from INFO: CONFIG is not allowed here, so"
            " appendfsync is unknown; everysec or always is what deploy/ sets)",
        )
    if persistence.appendfsync == "no":
        return Finding(
            "persistence",
            Verdict.WARN,
            "Redis writes an append-only file but with appendfsync no: the system flushes it"
            " when it likes, so a power cut can lose half a minute of bans and revocations;"
            " set appendfsync everysec",
        )
    fsync = f" (appendfsync {persistence.appendfsync})" if persistence.appendfsync else ""
    return Finding("persistence", Verdict.PASS, f"Redis writes an append-only file{fsync}")


async def memory_finding(url: str, seconds: float) -> Finding:
    """The store's memory marker (gateway/store/continuity.py), as `meetgate serve` judges it."""
    options = StoreOptions(
        deadline_seconds=seconds, request_seconds=seconds, pool_size=1, pool_wait_seconds=seconds
    )
    store = await open_store(url, options)
    try:
        raw = await store.read_marker()
    except StoreUnavailable:
        return Finding("store memory", Verdict.FAIL, "could not read the store's memory marker")
    finally:
        await store.close()
    if raw is None:
        return Finding(
            "store memory",
            Verdict.PASS,
            "no memory marker yet: the first `meetgate serve` on this store writes one",
        )
    marker = parse_marker(raw)
    if marker is None:
        return Finding(
            "store memory",
            Verdict.FAIL,
            "the store's memory marker does not parse: replicas take it for a lost memory and"
            " refuse joins; see docs/operations.md, then `meetgate store acknowledge-loss`",
        )
    if marker.lost:
        return Finding(
            "store memory",
            Verdict.FAIL,
            "the store LOST ITS MEMORY (it restarted without its data, was emptied or restored"
            " from an older copy) and no admin has acknowledged it: bans and revocations may be"
            " forgotten, so joins and ticket refreshes are refused. Check rooms, locks and bans"
            " (docs/operations.md), then run `meetgate store acknowledge-loss`",
        )
    return Finding(
        "store memory",
        Verdict.PASS,
        f"intact: marker {marker.epoch[:8]}…, {marker.generation} replica"
        f" check{'' if marker.generation == 1 else 's'} since it was written",
    )


async def check_store(settings: Settings, seconds: float) -> list[Finding]:
    url = settings.store.url
    if urlsplit(url).scheme == "memory":
        return [
            Finding(
                "store",
                Verdict.WARN,
                "memory:// store: one process only, and every room, invite, admission, ban and"
                " revocation is lost on restart; use redis:// in production",
            )
        ]
    where = url.split("@")[-1]
    try:
        persistence = await redis_persistence(url, seconds)
    except (RedisError, OSError) as exc:
        return [Finding("store", Verdict.FAIL, f"Redis at {where} does not answer: {exc}")]
    return [
        Finding("store", Verdict.PASS, f"Redis at {where} answers"),
        persistence_finding(persistence),
        await memory_finding(url, seconds),
    ]


# ---------------------------------------------------------------- Jitsi upstream


async def check_upstream(
    client: httpx.AsyncClient, settings: Settings, config_url: str
) -> list[Finding]:
    upstream = settings.jitsi.upstream
    try:
        response = await client.get(upstream + "/")
    except httpx.HTTPError as exc:
        return [Finding("jitsi web", Verdict.FAIL, f"{upstream} does not answer: {reason(exc)}")]
    findings = [Finding("jitsi web", Verdict.PASS, f"{upstream} answers ({response.status_code})")]
    return findings + await config_js_findings(client, config_url, settings.public_url)


async def config_js_findings(
    client: httpx.AsyncClient, config_url: str, public_url: str
) -> list[Finding]:
    """Fetch Jitsi's config.js and name the third-party hosts it makes browsers reach."""
    try:
        response = await client.get(config_url)
    except httpx.HTTPError as exc:
        return [Finding("config.js", Verdict.FAIL, f"cannot fetch {config_url}: {reason(exc)}")]
    if response.status_code != 200:
        return [Finding("config.js", Verdict.FAIL, f"{config_url} answered {response.status_code}")]
    return scan_jitsi_config(response.text, public_url)


# ---------------------------------------------------------------- signalling bypass

DOCTOR_ROOM = "meetgate-doctor"
_SUCCESS = re.compile(r"<(?:\w+:)?success\b")
_FAILURE = re.compile(r"<(?:\w+:)?failure\b[^>]*>(.*?)</(?:\w+:)?failure>|<(?:\w+:)?failure\b")
_FEATURES = re.compile(r"<(?:\w+:)?features\b")
_TERMINATE = re.compile(r"\btype=['\"]terminate['\"]")
_CONDITION = re.compile(r"<([a-z-]+)\b")
_SID = re.compile(r"\bsid=['\"]([^'\"]+)['\"]")


class LoginResult(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True, slots=True)
class Login:
    result: LoginResult
    how: str


def _failure_reason(text: str) -> str:
    match = _FAILURE.search(text)
    inner = match.group(1) if match and match.group(1) else ""
    condition = _CONDITION.search(inner)
    return f"SASL failure <{condition.group(1)}/>" if condition else "SASL failure"


def _websocket_url(base: str) -> str:
    parts = urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path}"


def _signalling_query(token: str | None) -> str:
    query = {"room": DOCTOR_ROOM}
    if token is not None:
        query["token"] = token
    return urlencode(query)


async def websocket_login(base: str, domain: str, token: str | None, seconds: float) -> Login:
    """Try an XMPP-over-WebSocket (RFC 7395) SASL ANONYMOUS login, the way Jitsi's client does,
    with `token` in the query string; close the stream again at once."""
    url = f"{_websocket_url(base)}/xmpp-websocket?{_signalling_query(token)}"
    try:
        async with asyncio.timeout(seconds):
            async with connect(
                url,
                subprotocols=[Subprotocol("xmpp")],
                open_timeout=seconds,
                compression=None,
                user_agent_header="meetgate-doctor",
                proxy=None,
                max_size=1 << 20,
            ) as socket:
                await socket.send(
                    '<open xmlns="urn:ietf:params:xml:ns:xmpp-framing"'
                    f' to="{domain}" version="1.0"/>'
                )
                while not _FEATURES.search(str(await socket.recv())):
                    pass
                await socket.send(
                    '<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="ANONYMOUS"/>'
                )
                while True:
                    reply = str(await socket.recv())
                    if _SUCCESS.search(reply):
                        await socket.send('<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>')
                        return Login(LoginResult.ACCEPTED, "SASL success")
                    if _FAILURE.search(reply):
                        return Login(LoginResult.REFUSED, _failure_reason(reply))
    except InvalidStatus as exc:
        status = exc.response.status_code
        return Login(LoginResult.REFUSED, f"HTTP {status} at the WebSocket handshake")
    except ConnectionClosed:
        return Login(LoginResult.REFUSED, "closed the connection before authentication")
    except TimeoutError:
        return Login(LoginResult.UNREACHABLE, f"no answer within {seconds:g} s")
    except (OSError, InvalidHandshake) as exc:
        return Login(LoginResult.UNREACHABLE, f"cannot connect: {exc}")


def _bosh_body(rid: int, sid: str, inner: str = "", extra: str = "") -> str:
    return (
        f"<body xmlns='http://jabber.org/protocol/httpbind' rid='{rid}' sid='{sid}'{extra}>"
        f"{inner}</body>"
    )


async def bosh_login(
    client: httpx.AsyncClient, base: str, domain: str, token: str | None, seconds: float
) -> Login:
    """Try a BOSH (XEP-0124/0206) SASL ANONYMOUS login with `token` in the query string, then
    terminate the session."""
    url = f"{base}/http-bind?{_signalling_query(token)}"
    headers = {"content-type": "text/xml; charset=utf-8"}
    rid = secrets.randbelow(1 << 40) + 1
    try:
        async with asyncio.timeout(seconds):
            opened = await client.post(
                url,
                headers=headers,
                content=(
                    "<body xmlns='http://jabber.org/protocol/httpbind'"
                    " xmlns:xmpp='urn:xmpp:xbosh' content='text/xml; charset=utf-8'"
                    f" rid='{rid}' to='{domain}' xml:lang='en' wait='2' hold='1' ver='1.6'"
                    " xmpp:version='1.0'/>"
                ),
            )
            if opened.status_code != 200:
                return Login(LoginResult.REFUSED, f"HTTP {opened.status_code} on session creation")
            if _TERMINATE.search(opened.text):
                return Login(LoginResult.REFUSED, "terminated the session at once")
            sid_match = _SID.search(opened.text)
            if sid_match is None:
                return Login(LoginResult.REFUSED, "created no session")
            sid = sid_match.group(1)
            text = opened.text
            while not _FEATURES.search(text):
                rid += 1
                text = (await client.post(url, headers=headers, content=_bosh_body(rid, sid))).text
                if _TERMINATE.search(text):
                    return Login(LoginResult.REFUSED, "terminated the session")
            rid += 1
            auth = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>"
            reply = await client.post(url, headers=headers, content=_bosh_body(rid, sid, auth))
            text = reply.text
            while True:
                if reply.status_code != 200:
                    return Login(LoginResult.REFUSED, f"HTTP {reply.status_code} on login")
                if _SUCCESS.search(text):
                    rid += 1
                    await client.post(
                        url,
                        headers=headers,
                        content=_bosh_body(rid, sid, extra=" type='terminate'"),
                    )
                    return Login(LoginResult.ACCEPTED, "SASL success")
                if _FAILURE.search(text):
                    return Login(LoginResult.REFUSED, _failure_reason(text))
                if _TERMINATE.search(text):
                    return Login(LoginResult.REFUSED, "terminated the session")
                rid += 1
                reply = await client.post(url, headers=headers, content=_bosh_body(rid, sid))
                text = reply.text
    except TimeoutError:
        return Login(LoginResult.UNREACHABLE, f"no answer within {seconds:g} s")
    except httpx.HTTPError as exc:
        return Login(LoginResult.UNREACHABLE, f"cannot connect: {reason(exc)}")


def doctor_tickets(settings: Settings, now: float) -> tuple[str, str]:
    """A genuine ticket (the active key) and a forged one: the same header (kid included) and
    claims, signed with a random key (a secret, or an RSA key), as an attacker who guessed
    everything but the key would."""
    admission = Admission(
        id="meetgate-doctor",
        room=DOCTOR_ROOM,
        identity="meetgate-doctor",
        name="meetgate doctor",
        role=Role.ATTENDEE,
        via="doctor",
        created_at=now,
        expires_at=now + 60,
    )
    genuine = TicketAuthority.from_settings(settings).issue(admission, now)
    signing_input = genuine.rsplit(".", 1)[0].encode("ascii")
    if settings.tickets.algorithm == "RS256":
        stranger = load_rsa_private_key(generate_private_pem())
        signature = stranger.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = hmac.new(secrets.token_bytes(48), signing_input, hashlib.sha256).digest()
    forged = signing_input.decode("ascii") + "." + _base64url(signature)
    return genuine, forged


def _base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _refusal_finding(check: str, base: str, login: Login) -> Finding:
    if login.result is LoginResult.REFUSED:
        return Finding(check, Verdict.PASS, f"{base} refused it ({login.how})")
    if login.result is LoginResult.ACCEPTED:
        return Finding(
            check,
            Verdict.FAIL,
            f"{base} ACCEPTED it ({login.how}): anyone who reaches it joins without Meetgate;"
            " use JWT auth with allow_empty_token off and no guest domain (docs/jitsi.md)",
        )
    return Finding(check, Verdict.FAIL, f"could not check {base}: {login.how}")


async def check_signalling(
    client: httpx.AsyncClient, settings: Settings, seconds: float
) -> list[Finding]:
    """Connect straight to the signalling upstream, as someone who got past the gate would."""
    base = settings.jitsi.signalling
    domain = settings.jitsi.xmpp_domain
    genuine, forged = doctor_tickets(settings, time.time())
    logins = await asyncio.gather(
        websocket_login(base, domain, None, seconds),
        websocket_login(base, domain, forged, seconds),
        bosh_login(client, base, domain, None, seconds),
        bosh_login(client, base, domain, forged, seconds),
        websocket_login(base, domain, genuine, seconds),
    )
    findings = [
        _refusal_finding("websocket, no ticket", base, logins[0]),
        _refusal_finding("websocket, forged", base, logins[1]),
        _refusal_finding("bosh, no ticket", base, logins[2]),
        _refusal_finding("bosh, forged", base, logins[3]),
    ]
    genuine_login = logins[4]
    if genuine_login.result is LoginResult.ACCEPTED:
        findings.append(
            Finding("genuine ticket", Verdict.PASS, f"{base} accepts a ticket Meetgate signs")
        )
    elif genuine_login.result is LoginResult.UNREACHABLE:
        findings.append(
            Finding("genuine ticket", Verdict.FAIL, f"could not check {base}: {genuine_login.how}")
        )
    else:
        key = (
            "that prosody's JWT_ASAP_KEYSERVER reaches the key endpoint"
            if settings.tickets.algorithm == "RS256"
            else "JWT_APP_SECRET"
        )
        findings.append(
            Finding(
                "genuine ticket",
                Verdict.FAIL,
                f"{base} refused a ticket signed with the active key ({genuine_login.how}):"
                f" nobody can join; check {key}, app_id, audience and xmpp_domain"
                " against docs/jitsi.md",
            )
        )
    return findings


# ---------------------------------------------------------------- ticket keys


KEY_ENDPOINT_PATH = "/_meetgate/keys"


def default_key_server(settings: Settings) -> str:
    """Meetgate's own key endpoint on its listen address, as seen from this host."""
    host = settings.listen.host
    if host in ("0.0.0.0", ""):  # noqa: S104 (a comparison, not a bind)
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.listen.port}{KEY_ENDPOINT_PATH}"


async def check_key_server(
    client: httpx.AsyncClient, settings: Settings, key_server: str
) -> list[Finding]:
    """RS256: the key endpoint serves the active key's public half at the URL prosody builds
    from `key_server` (its `asap_key_server`, as written: `prosody_key_url`)."""
    tickets = settings.tickets
    if tickets.algorithm != "RS256":
        return [
            Finding(
                "ticket keys",
                Verdict.PASS,
                "HS256: prosody holds the active key's secret too (JWT_APP_SECRET); keep it as"
                " private as meetgate.toml, or switch to RS256 (docs/jitsi.md)",
            )
        ]
    kid = tickets.signing_kid
    # What Meetgate itself serves for the active key, as the key endpoint would.
    expected = TicketAuthority.from_settings(settings).public_key(key_file_name(kid))
    if expected is None:
        return [Finding("key endpoint", Verdict.FAIL, f"key {kid!r} has no private key")]
    url = prosody_key_url(key_server, kid)
    hint = _key_server_hint(key_server)
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        return [
            Finding(
                "key endpoint",
                Verdict.FAIL,
                f"{url} does not answer ({reason(exc)}): prosody cannot fetch the public key and"
                " refuses every ticket (pass --key-server to check another address)" + hint,
            )
        ]
    if response.status_code != 200:
        return [
            Finding(
                "key endpoint",
                Verdict.FAIL,
                f"{url} answered {response.status_code}: is Meetgate running with this config?"
                + hint,
            )
        ]
    if response.content.strip() != expected.strip():
        return [
            Finding(
                "key endpoint",
                Verdict.FAIL,
                f"{url} serves another public key than the active key {kid!r}: restart Meetgate"
                " with this config",
            )
        ]
    return [
        Finding("key endpoint", Verdict.PASS, f"serves the public key of the active key {kid!r}")
    ]


def _key_server_hint(key_server: str) -> str:
    """Why prosody's key URL may miss the key endpoint: what `asap_key_server` must look like."""
    if key_server.endswith("/"):
        return (
            f"; {key_server!r} ends with '/': prosody appends '/<name>' as written, giving '//',"
            " which the key endpoint does not serve: remove the trailing slash from"
            " asap_key_server (JWT_ASAP_KEYSERVER) and from --key-server"
        )
    if not urlsplit(key_server).path.endswith(KEY_ENDPOINT_PATH):
        return (
            f"; Meetgate's key endpoint is <its address>{KEY_ENDPOINT_PATH}: is"
            " asap_key_server (JWT_ASAP_KEYSERVER) exactly that, without a trailing slash?"
        )
    return ""


# ---------------------------------------------------------------- clocks

CLOCK_WARN_SECONDS = 5.0
CLOCK_FAIL_SECONDS = 30.0


def clock_finding(offset: float, where: str, allowance: float = CLOCK_FAIL_SECONDS) -> Finding:
    """The verdict on `where`'s clock being `offset` seconds ahead of ours (negative: behind).

    `allowance` is how far tickets' nbf lies in the past (`[tickets] clock_skew_seconds`): a
    prosody further behind than that refuses fresh tickets.
    """
    # The Date header has one-second resolution.
    skew = max(0.0, abs(offset) - 1.0)
    if offset < 0 and skew > allowance:
        return Finding(
            "clock",
            Verdict.FAIL,
            f"{where} is {offset:+.0f} s off this machine, more than tickets allow"
            f" ([tickets] clock_skew_seconds = {allowance:g}): fresh tickets are refused;"
            " run NTP on both hosts",
        )
    if skew > CLOCK_FAIL_SECONDS:
        return Finding(
            "clock",
            Verdict.FAIL,
            f"{where} is {offset:+.0f} s off this machine: fresh tickets are refused or expire"
            " early; run NTP on both hosts",
        )
    if skew > CLOCK_WARN_SECONDS:
        return Finding("clock", Verdict.WARN, f"{where} is {offset:+.0f} s off: run NTP on both")
    return Finding("clock", Verdict.PASS, f"{where} agrees with this machine within 5 s")


async def check_clock(client: httpx.AsyncClient, settings: Settings) -> Finding:
    """Compare the upstreams' HTTP Date with ours: prosody checks nbf and exp with no leeway
    (tickets' nbf lies `clock_skew_seconds` back)."""
    urls = dict.fromkeys([settings.jitsi.signalling + "/", settings.jitsi.upstream + "/"])
    for url in urls:
        started = time.time()
        try:
            response = await client.get(url)
        except httpx.HTTPError:
            continue
        local = (started + time.time()) / 2
        header = response.headers.get("date")
        if header is None:
            continue
        try:
            remote = email.utils.parsedate_to_datetime(header).timestamp()
        except (TypeError, ValueError):
            continue
        allowance = settings.tickets.clock_skew_seconds
        return clock_finding(remote - local, url.rstrip("/"), allowance)
    return Finding("clock", Verdict.WARN, "no upstream sent a Date header to compare clocks with")


# ---------------------------------------------------------------- trusted proxies

# Public addresses a deployment's own fronts and load balancers may hold: one IPv4 /24, one IPv6
# /48 in all. More, however split into small ranges, holds other people's machines.
MOST_PUBLIC_ADDRESSES = {4: 2**8, 6: 2**80}
# Where an IPv4 client appears on a dual-stack socket; a range there trusts IPv4 addresses.
IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
# Carrier-grade NAT and overlay networks (Tailscale): not the Internet, not only one's own.
SHARED_ADDRESS_SPACE = ipaddress.IPv4Network("100.64.0.0/10")
SHOWN_RANGES = 5

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _as_trusted(cidr: str) -> Network:
    """The range a trusted_proxies entry covers, an IPv4-mapped IPv6 range as the IPv4 range it
    maps."""
    network = ipaddress.ip_network(cidr, strict=False)
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(IPV4_MAPPED):
        return ipaddress.IPv4Network(
            (int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96)
        )
    return network


def _shown(networks: list[Network]) -> str:
    """Ranges for a report line: the first few, then how many more."""
    shown = ", ".join(str(network) for network in networks[:SHOWN_RANGES])
    more = len(networks) - SHOWN_RANGES
    return shown + (f" and {more} more" if more > 0 else "")


def check_stanza_reader(guard_enabled: bool, reader: str) -> Finding:
    """Which reader the wire guard reads stanzas with (`stanzas.READER`): the compiled one
    (gateway/proxy/_reader.c) is built at install time only where a C compiler and libexpat's
    headers are; without them Meetgate installs and runs, and the guard reads in Python, slower."""
    if reader == "compiled":
        return Finding(
            "stanza reader", Verdict.PASS, "the wire guard reads stanzas with the compiled reader"
        )
    if not guard_enabled:
        return Finding(
            "stanza reader",
            Verdict.PASS,
            "the compiled reader was not built, but the wire guard is off ([guard] enabled ="
            " false): no stanza is read",
        )
    return Finding(
        "stanza reader",
        Verdict.WARN,
        "the wire guard reads each signalling stanza in Python, adding about five times the CPU"
        " to a stanza that the compiled reader adds (docs/performance.md): that reader"
        " (gateway/proxy/_reader.c) was not built when Meetgate was installed; install gcc and"
        " libexpat1-dev (Debian's names), then Meetgate again with the same pip install",
    )


def check_trusted_proxies(trusted: list[str]) -> Finding:
    """Who may tell the gate a client's address (X-Forwarded-For): a range so wide that any
    client is in it lets any client choose the address its limits and bans are keyed on. Public
    ranges are judged together (merged), so many small ones are as wide as one large one."""
    if not trusted:
        return Finding(
            "trusted proxies",
            Verdict.PASS,
            "none: every client is limited by its socket address (behind a TLS front on another"
            " host, list the front's address)",
        )
    public4: list[ipaddress.IPv4Network] = []
    public6: list[ipaddress.IPv6Network] = []
    shared: list[Network] = []
    everything: list[str] = []
    for cidr in trusted:
        network = _as_trusted(cidr)
        if network.prefixlen == 0:
            everything.append(cidr)
        elif network.is_private or network.is_loopback or network.is_link_local:
            continue
        elif isinstance(network, ipaddress.IPv6Network):
            public6.append(network)
        elif network.subnet_of(SHARED_ADDRESS_SPACE):
            shared.append(network)
        else:
            public4.append(network)
    merged: dict[int, list[Network]] = {
        4: list(ipaddress.collapse_addresses(public4)),
        6: list(ipaddress.collapse_addresses(public6)),
    }
    problems = [
        f"{cidr} trusts every address, so every hop of X-Forwarded-For" for cidr in everything
    ]
    for version, networks in merged.items():
        count = sum(network.num_addresses for network in networks)
        if count > MOST_PUBLIC_ADDRESSES[version]:
            problems.append(f"{_shown(networks)}: {count:,} public addresses, a wide public range")
    if problems:
        return Finding(
            "trusted proxies",
            Verdict.FAIL,
            "; ".join(problems) + ": a client there chooses the address it is limited, banned"
            " and logged by; list only your TLS front's and load balancer's addresses",
        )
    warnings = []
    if merged[4] or merged[6]:
        warnings.append(f"{_shown(merged[4] + merged[6])} is public")
    if shared:
        warnings.append(
            f"{_shown(shared)} is shared address space (carrier-grade NAT, overlay networks):"
            " other people's machines may be in it"
        )
    if warnings:
        return Finding(
            "trusted proxies",
            Verdict.WARN,
            "; ".join(warnings) + ": make sure only your own front or load balancer is in it",
        )
    return Finding(
        "trusted proxies",
        Verdict.PASS,
        f"{_shown([_as_trusted(cidr) for cidr in trusted])}: private or loopback only",
    )


# ---------------------------------------------------------------- running it all


async def _bounded(
    check: str, seconds: float, make: Callable[[], Awaitable[list[Finding]]]
) -> list[Finding]:
    """Run one group of checks with a hard deadline, so doctor always finishes."""
    try:
        async with asyncio.timeout(seconds):
            return await make()
    except TimeoutError:
        return [Finding(check, Verdict.FAIL, f"did not finish within {seconds:g} s")]


# Each group makes a few round trips at most; give it room beyond the per-request timeout.
GROUP_ROUND_TRIPS = 4


def _group_seconds(options: DoctorOptions) -> float:
    return options.timeout * GROUP_ROUND_TRIPS


async def diagnose(settings: Settings, config_path: Path, options: DoctorOptions) -> list[Finding]:
    """Every check, in report order; the network ones run concurrently."""
    public_url = (options.public_url or settings.public_url).rstrip("/")
    config_url = options.jitsi_config_url or settings.jitsi.upstream + "/config.js"
    key_server = options.key_server or default_key_server(settings)
    group = _group_seconds(options)
    seconds = options.timeout
    async with httpx.AsyncClient(
        timeout=seconds, trust_env=False, follow_redirects=False
    ) as client:

        async def clock() -> list[Finding]:
            return [await check_clock(client, settings)]

        async def identity() -> list[Finding]:
            return await check_providers(settings.oidc, settings.public_url, seconds, group)

        async def mail() -> list[Finding]:
            if not settings.mail_configured:
                return []
            # As long as the gate's mailer waits, so doctor judges the server as it will.
            return await check_smtp(settings.smtp, settings.smtp.timeout_seconds)

        groups = await asyncio.gather(
            _bounded("store", group, lambda: check_store(settings, seconds)),
            _bounded("jitsi web", group, lambda: check_upstream(client, settings, config_url)),
            _bounded("signalling", group, lambda: check_signalling(client, settings, seconds)),
            _bounded("clock", group, clock),
            _bounded("key endpoint", group, lambda: check_key_server(client, settings, key_server)),
            # Each provider is bounded by `group` itself; this only backs that up.
            _bounded("oidc", group + seconds, identity),
            _bounded("smtp", settings.smtp.timeout_seconds * GROUP_ROUND_TRIPS, mail),
            _bounded(
                "https", group * 2, lambda: check_from_outside(public_url, options.cafile, seconds)
            ),
        )
    findings = check_settings(settings, config_path)
    for found in groups:
        findings += found
    return findings


async def diagnose_outside(url: str, options: DoctorOptions) -> list[Finding]:
    """Without a config: what the public address shows anyone, and config.js when given."""
    group = _group_seconds(options)
    findings = await _bounded(
        "https", group * 2, lambda: check_from_outside(url, options.cafile, options.timeout)
    )
    if options.jitsi_config_url is None:
        if any(f.verdict is Verdict.FAIL for f in findings):
            return findings
        findings.append(
            Finding(
                "config.js",
                Verdict.WARN,
                "not checked for third parties: the gate serves it to admitted browsers only;"
                " pass --jitsi-config-url http://<jitsi web>/config.js from a host that reaches"
                " Jitsi's web server, or run doctor with the config",
            )
        )
        return findings
    config_url = options.jitsi_config_url

    async def config_js() -> list[Finding]:
        async with httpx.AsyncClient(
            timeout=options.timeout, trust_env=False, follow_redirects=False
        ) as client:
            return await config_js_findings(client, config_url, url.rstrip("/"))

    return findings + await _bounded("config.js", group, config_js)


def _no_config(config: Path | None) -> bool:
    """Whether doctor runs without a config: none named and none found where `serve` looks."""
    return config is None and find_config(None, os.environ) is None


def run(config: Path | None, options: DoctorOptions) -> list[Finding]:
    """Load the settings as `meetgate serve` would, then check the deployment they describe.
    With `--url` and no config file, only what can be checked from outside."""
    if options.public_url is not None and _no_config(config):
        return asyncio.run(diagnose_outside(options.public_url, options))
    path = find_config(config, os.environ)
    if path is None:
        return [
            Finding(
                "config",
                Verdict.FAIL,
                "no config file (--config, $MEETGATE_CONFIG, ./meetgate.toml,"
                " /etc/meetgate/meetgate.toml): write one with `meetgate init`, or check only"
                " from outside with --url https://<your gate>",
            )
        ]
    try:
        settings = load_settings(path, allow_ephemeral=False)
    except ConfigError as exc:
        return [Finding("config", Verdict.FAIL, "; ".join(exc.problems))]
    return asyncio.run(diagnose(settings, path, options))


def render(findings: list[Finding]) -> str:
    """The report: one line per finding, then a summary line."""
    width = max((len(f.check) for f in findings), default=0)
    lines = [f"{f.verdict.value}  {f.check.ljust(width)}  {f.detail}" for f in findings]
    counts = Counter(f.verdict for f in findings)
    summary = ", ".join(f"{counts[v]} {v.value}" for v in Verdict)
    if counts[Verdict.FAIL]:
        lines.append(f"{summary}: fix every FAIL before people meet here.")
    elif counts[Verdict.WARN]:
        lines.append(f"{summary}: no failure; read the warnings.")
    else:
        lines.append(f"{summary}: all good.")
    return "\n".join(lines)


def exit_status(findings: list[Finding]) -> int:
    """0 when nothing failed (warnings allowed), 1 otherwise."""
    return 1 if any(f.verdict is Verdict.FAIL for f in findings) else 0
