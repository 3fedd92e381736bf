"""docs/privacy.md names everything the gate keeps, and the gate keeps no client address.

A gateway on a Redis of its own is taken through every way in (invites, the lobby, e-mail
codes with a wrong try, an OpenID Connect sign-in, a signalling session whose guard refuses a
stanza) and every host action, from client addresses of its own (IPv4 and IPv6, through a
trusted proxy), while the Redis records every command it runs (MONITOR). Then every key in
Redis is read (streams too): each must belong to a key family privacy.md's table names, and no
key, no value, no command the gate sent (so not even a key written and deleted before the walk
ends) and no log line may hold a client's address in any of its textual forms, nor an unkeyed
hash of one. Statically: every key prefix gateway/store/redis.py declares, and every setting
that says how long something is kept, is named in privacy.md.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import re
import secrets
import socket
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from pydantic import BaseModel

from gateway.settings import Settings
from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.oidc import clients_for, oidc_table, sign_in, start_oidc_provider
from tests.fixtures.privacy_scan import hashed_forms, holding, stored, written_forms
from tests.fixtures.processes import free_port, stop_process, wait_until
from tests.fixtures.redis_server import start_redis
from tests.fixtures.smtp import SmtpServer
from tests.fixtures.xmpp_client import XmppClient
from tests.integration.journeys import Admitted, host_action, signalling_query, ws_url
from tests.integration.test_lobby import knock, lobby_room, request_of

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PRIVACY = ROOT / "docs" / "privacy.md"
REDIS_MODULE = ROOT / "gateway" / "store" / "redis.py"

# The clients, as the trusted proxy (127.0.0.1) reports them.
HOST_ADDRESS = "203.0.113.57"
ATTENDEE_ADDRESS = "2001:db8:57:7::42"
GUEST_ADDRESS = "198.51.100.201"
TROLL_ADDRESS = "2001:db8:66:9::66"
# The proxy's own address is a client's too (the admin API's, a socket's without a header).
ADDRESSES = (HOST_ADDRESS, ATTENDEE_ADDRESS, GUEST_ADDRESS, TROLL_ADDRESS, "127.0.0.1")


# A URL of a listener on 127.0.0.1, as written or percent-encoded in another URL.
LISTENER = re.compile(r"(https?:|%3A)(//|%2F%2F)127\.0\.0\.1(:|%3A)[0-9]+", re.IGNORECASE)


def documented_families() -> list[re.Pattern[str]]:
    """The key patterns of privacy.md's table of Redis keys: `meetgate:…` in code, each
    `<placeholder>` one or more characters but ':'."""
    patterns = []
    for found in re.findall(r"`(meetgate:[^`]*)`", PRIVACY.read_text(encoding="utf-8")):
        regex = re.escape(found)
        regex = re.sub(r"<[^>]+>", "[^:]+", regex.replace(r"\<", "<").replace(r"\>", ">"))
        patterns.append(re.compile(regex))
    return patterns


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, prosody: Any, smtp_server: SmtpServer
) -> Iterator[tuple[GatewayServer, str]]:
    """A gateway on a Redis of its own (so that every key in it is this test's), with an OpenID
    provider of its own (`idp`), started once the gateway's port is known."""
    workdir = tmp_path_factory.mktemp("privacy")
    store = start_redis(workdir / "redis")
    provider_port = free_port()
    server, proc = start_gateway(
        workdir / "gateway",
        upstream=jitsi_web.url,
        signalling_upstream=f"http://127.0.0.1:{prosody.http_port}",
        store_url=store.url,
        top='trusted_proxies = ["127.0.0.1/32"]',
        # The address's and network's limits recover slowly (with room to spare), so that their
        # keys are still there to read when the walk ends.
        extra=f"""
[rates]
address = {{ per_minute = 60, burst = 100000 }}
network = {{ per_minute = 60, burst = 100000 }}
room = {{ per_minute = 1000000, burst = 100000 }}
identity = {{ per_minute = 1000000, burst = 100000 }}
invite = {{ per_minute = 1000000, burst = 100000 }}
gate = {{ per_minute = 1000000, burst = 100000 }}
[challenge]
mode = "off"
[smtp]
host = "127.0.0.1"
port = {smtp_server.port}
security = "none"
sender = "Meetgate <gate@meet.test>"
[email_codes]
ttl_seconds = 600
"""
        + oidc_table("idp", "University Login", f"http://127.0.0.1:{provider_port}"),
    )
    provider = None
    try:
        _, provider = start_oidc_provider(
            workdir / "idp", provider_port, clients=clients_for(server.url, "idp")
        )
        yield server, store.url
    finally:
        if provider is not None:
            stop_process(provider)
        stop_process(proc)
        stop_process(store.proc)


def client_from(gateway: GatewayServer, address: str) -> httpx.Client:
    return gateway.client(timeout=30, headers={"x-forwarded-for": address, "origin": gateway.url})


def join_by_invite(
    gateway: GatewayServer, room: str, name: str, address: str, role: str = "attendee"
) -> Admitted:
    made = gateway.create_invite(room, name, role=role)
    with client_from(gateway, address) as client:
        page = client.get(f"/j/{gateway.invite_token(made)}")
        assert page.status_code == 200, page.text
        joined = client.post(f"/j/{gateway.invite_token(made)}", headers={"origin": gateway.url})
        assert joined.status_code == 303, joined.text
        ticket = joined.headers["location"].split("#jwt=", 1)[1]
        refreshed = client.get(f"/_meetgate/ticket?room={room}")
        assert refreshed.status_code in (200, 303), refreshed.text
        return Admitted(room=room, ticket=ticket, cookie=client.cookies["meetgate"])


def admission_of(admitted: Admitted) -> str:
    return hashlib.sha256(admitted.cookie.encode()).hexdigest()


async def signal(gateway: GatewayServer, prosody: Any, admitted: Admitted, nick: str) -> None:
    """A signalling session that joins the meeting and sends one stanza the wire guard refuses
    (a message out of the room): a strike, counted in the store."""
    # From the trusted proxy's own address (XmppClient sets no header): 127.0.0.1 is checked too.
    async with XmppClient.open(ws_url(gateway, signalling_query(admitted))) as client:
        await client.join(prosody.room_jid(admitted.room), nick)
        await client.send_raw(
            "<message xmlns='jabber:client' to='x@conference.evil.example' type='groupchat'"
            " id='stray'><body>out</body></message>"
        )
        await client.wait_for_stanza(lambda e: e.get("id") == "stray" and e.get("type") == "error")
        await client.close()


def walk_every_way_in(
    gateway: GatewayServer, prosody: Any, smtp_server: SmtpServer, store: redis.Redis
) -> None:
    # Invites: a host and an attendee, who opens a signalling session and earns a strike.
    room = f"agora-{secrets.token_hex(3)}"
    gateway.create_room(room, title="Agora")
    host = join_by_invite(gateway, room, "Hilde Host", HOST_ADDRESS, role="host")
    ada = join_by_invite(gateway, room, "Ada Attendee", ATTENDEE_ADDRESS)
    asyncio.run(signal(gateway, prosody, ada, "ada"))
    strikes = f"meetgate:counter:guard-strikes:{admission_of(ada)}"
    wait_until(lambda: store.exists(strikes), what="the wire guard's strike in the store")
    with client_from(gateway, GUEST_ADDRESS) as stranger:
        assert stranger.get("/j/" + "x" * 43).status_code == 404

    # The lobby: one guest let in, one turned away and banned (their address barred a while).
    hall = lobby_room(gateway)
    hall_host = join_by_invite(gateway, hall, "Hall Host", HOST_ADDRESS, role="host")
    with client_from(gateway, GUEST_ADDRESS) as guest:
        assert knock(guest, gateway, hall, "Gina Guest", "From the union").status_code == 303
        request = request_of(gateway, hall_host, "Gina Guest (guest)")
        assert host_action(gateway, hall_host, "approve", request=request)["done"] is True
        assert guest.get(f"/_meetgate/lobby/{hall}/wait").status_code == 303
    with client_from(gateway, TROLL_ADDRESS) as troll:
        assert knock(troll, gateway, hall, "Troll").status_code == 303
        request = request_of(gateway, hall_host, "Troll (guest)")
        assert host_action(gateway, hall_host, "deny-ban", request=request)["done"] is True
        assert knock(troll, gateway, hall, "Troll Again").status_code == 403

    # An e-mail code.
    mail = f"mail-{secrets.token_hex(3)}"
    gateway.create_room(mail, title="Planning")
    gateway.set_policy(mail, email_code=True, allowed_domains=["example.org"])
    email = f"user-{secrets.token_hex(4)}@example.org"
    with client_from(gateway, GUEST_ADDRESS) as client:
        sent = client.post(f"/_meetgate/email/{mail}/send", data={"email": email})
        assert sent.status_code == 200, sent.text
        code = smtp_server.mailbox.wait_for(email)[0].code()
        wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
        missed = client.post(
            f"/_meetgate/email/{mail}/verify", data={"email": email, "code": wrong, "name": "Eve"}
        )
        assert missed.status_code in (400, 403), missed.text
        joined = client.post(
            f"/_meetgate/email/{mail}/verify", data={"email": email, "code": code, "name": "Eve"}
        )
        assert joined.status_code == 303, joined.text

    # An OpenID Connect sign-in (only GETs: no Origin header, which is the gate's own).
    campus = f"campus-{secrets.token_hex(3)}"
    gateway.create_room(campus, title="Campus")
    gateway.set_policy(campus, oidc=True, oidc_providers=["idp"])
    headers = {"x-forwarded-for": TROLL_ADDRESS}
    with gateway.client(timeout=30, headers=headers) as client:
        back = sign_in(gateway, "idp", campus, "bob", client=client)
        assert back.status_code == 303 and "#jwt=" in back.headers["location"], back.text

    # Host actions: quiet, lock, a removal and a ban, a move.
    for action in ("quiet", "lock", "unlock"):
        assert host_action(gateway, host, action)["ok"] is True
    bob = join_by_invite(gateway, room, "Bob", GUEST_ADDRESS)
    assert host_action(gateway, host, "revoke", admission=admission_of(bob))["ok"] is True
    assert host_action(gateway, host, "ban", admission=admission_of(ada), duration="1d")["ok"]
    assert host_action(gateway, host, "move")["ok"] is True


# MONITOR's escapes of a byte that is not printable, a quote and a backslash (sdscatrepr).
_ESCAPE = re.compile(rb"\\(x[0-9a-f]{2}|.)")
_ESCAPED = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}


class CommandLog:
    """Every command a Redis runs while this is open (MONITOR, on a connection of its own),
    with its arguments as sent: what a key held even if it was deleted before the walk ended."""

    def __init__(self, url: str) -> None:
        where = urlsplit(url)
        self._socket = socket.create_connection((where.hostname, where.port), timeout=60)
        self._socket.sendall(b"MONITOR\r\n")
        self._lines = self._socket.makefile("rb")
        assert self._lines.readline() == b"+OK\r\n"
        self._seen: list[bytes] = []
        self._end = f"inventory-walk-ends-{secrets.token_hex(8)}".encode()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._lines:
            if self._end in line:
                return
            self._seen.append(line)

    def stop(self, client: redis.Redis) -> list[str]:
        """The commands run until now, each as `"NAME" "arg" …` (who sent it left out: the
        connection's own address is the test's)."""
        client.echo(self._end.decode())
        self._reader.join(timeout=60)
        assert not self._reader.is_alive(), "MONITOR never showed the walk's end"
        self._socket.close()
        commands = []
        for line in self._seen:
            # +<time> [<db> <client address>|lua] "COMMAND" "arg" …
            _, _, command = line.partition(b"] ")
            commands.append(_ESCAPE.sub(_unescape, command).decode("utf-8", "replace"))
        return commands


def _unescape(escape: re.Match[bytes]) -> bytes:
    what = escape[1]
    if len(what) == 3 and what.startswith(b"x"):
        return bytes.fromhex(what[1:].decode())
    return _ESCAPED.get(what, what)


def test_every_key_is_documented_and_none_holds_a_client_address(
    deployment: tuple[GatewayServer, str], prosody: Any, smtp_server: SmtpServer
) -> None:
    gateway, url = deployment
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        monitor = CommandLog(url)
        walk_every_way_in(gateway, prosody, smtp_server, client)
        commands = monitor.stop(client)
        keys = stored(client)
    finally:
        client.close()
    families = documented_families()
    undocumented = sorted(key for key in keys if not any(f.fullmatch(key) for f in families))
    assert not undocumented, f"keys of families docs/privacy.md does not name: {undocumented}"
    # The walk reached the families that hold people's data (else it proves little), and the
    # command log saw it happen.
    for needed in (
        "admission",
        "names",
        "invite",
        "value:lobby:request",
        "value:signin",
        "rate:addr",
        "rate:net",
        "audit",
        "counter:email:tries",
        "counter:guard-strikes",
        "evidence",
    ):
        written = f"meetgate:{needed}:"
        assert any(key.startswith(written) for key in keys) or any(
            written in command for command in commands
        ), needed
    assert len(commands) > 100 and any('"XADD"' in command for command in commands)
    texts = {f"key {key}": f"{key} {value}" for key, value in keys.items()}
    texts |= {f"command {n}: {command[:200]}": command for n, command in enumerate(commands)}
    # The gate's and the OpenID provider's own URLs (a sign-in's state names both) are on
    # 127.0.0.1 in these tests: a URL, with its port, is a listener's, not a client's address.
    texts = {name: LISTENER.sub("<a listener>", text) for name, text in texts.items()}
    log = {"the log": gateway.log_text()}
    for address in ADDRESSES:
        plain, hashed = written_forms(address), hashed_forms(address)
        found = holding(plain, hashed, texts)
        assert not found, f"{address} is written down: {found}"
        # The log names the gate's own listeners, on 127.0.0.1: only the others are clients'.
        if address != "127.0.0.1":
            assert not holding(plain, hashed, log), f"{address} is in the log"


def key_prefixes(module: Path) -> list[str]:
    """The `NAME: Final = "meetgate:…"` constants of a module: the Redis keys it names."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    return [
        node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        and node.value.value.startswith("meetgate:")
    ]


def test_every_key_prefix_of_the_redis_store_is_documented() -> None:
    text = PRIVACY.read_text(encoding="utf-8")
    assert len(key_prefixes(REDIS_MODULE)) >= 15
    # Every module that names keys, not only the store's.
    prefixes = [p for module in (ROOT / "gateway").rglob("*.py") for p in key_prefixes(module)]
    missing = [prefix for prefix in prefixes if f"`{prefix}" not in text]
    assert not missing, f"docs/privacy.md names no key of {missing}"


# The settings that decide what the gate keeps about people, or for how long: each is a row of
# privacy.md's "Settings that keep data", and each row is one of these. `[rates] address` stands
# for its per_minute and burst: together they set how long a limit's key lives.
KEEPS_DATA = frozenset(
    {
        "[admission] ttl_seconds",
        "[lobby] ttl_seconds",
        "[email_codes] ttl_seconds",
        "[tickets] ttl_seconds",
        "[challenge] max_age_seconds",
        "[privacy] audit_retention_days",
        "[logging] client_addresses",
        "[evidence] retention_days",
        "[evidence] max_entries",
        "[evidence] directory",
        "[rates] address",
        "[rates] network",
        "[rates] room",
        "[rates] identity",
        "[rates] invite",
        "[rates] gate",
        "[rates] registration",
        "[rates] rooms",
        "[outbox] batch_kept_seconds",
        "[registration] kept_after_meeting_seconds",
        "[registration] kept_seconds",
        "[registration] confirm_ttl_seconds",
        "[registration] burst_window_seconds",
        "[registration] seen_kept_days",
    }
)
# What a setting that keeps something, or says for how long, is called: each setting so called
# is in KEEPS_DATA, or here with why it keeps nothing.
KEEPING = re.compile(
    r"ttl|retention|keep|kept|max_age|lifetime|expir|client_addresses|directory|_seconds|_days"
    r"|burst|per_minute|max_entries"
)
KEEPS_NOTHING = {
    "[outbox] per_minute": "how fast invitations are sent (its limit's key holds no one's data)",
    "[outbox] burst": "how many invitations may go at once after a pause",
    "[outbox] retry_seconds": "the wait before an invitation is tried again",
    "[outbox] retry_max_seconds": "the longest such wait",
    "[registration] burst_threshold": "how many registrations from one network make a burst",
    "[listen] shutdown_seconds": "how long a stopping server waits for requests",
    "[store] deadline_seconds": "how long a request waits for the store",
    "[store] request_seconds": "how long one store call may take",
    "[store] pool_wait_seconds": "how long a request waits for a store connection",
    "[revocation] reconcile_seconds": "how often sockets are checked against the store",
    "[jitsi] connect_timeout_seconds": "how long a connection to Jitsi may take to open",
    "[tickets] clock_skew_seconds": "how far apart clocks may be",
    "[limits] header_read_seconds": "how long a request's headers may take to arrive",
    "[limits] body_read_seconds": "how long a request's body may take to arrive",
    "[smtp] timeout_seconds": "how long the SMTP server may take",
    "[evidence] sign_seconds": "how often the evidence's head is signed",
    "[guard] chat_burst": "a signalling session's budget, in its replica's memory",
    "[guard] presence_burst": "a signalling session's budget, in its replica's memory",
    "[guard] iq_burst": "a signalling session's budget, in its replica's memory",
    "[guard] signal_burst": "a signalling session's budget, in its replica's memory",
}


def setting_paths(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every setting's path in the TOML (`("rates", "address", "burst")`; a table of tables
    by name, such as `[rates.rooms.<room>]`, with `*` for the name)."""
    for name, field in model.model_fields.items():
        annotation = field.annotation
        arguments = getattr(annotation, "__args__", (annotation,))
        nested = [
            kind for kind in arguments if isinstance(kind, type) and issubclass(kind, BaseModel)
        ]
        here = (*path, name)
        if nested:
            named = getattr(annotation, "__origin__", None) is dict
            yield from setting_paths(nested[0], (*here, "*") if named else here)
        else:
            yield here


def setting_name(path: tuple[str, ...]) -> str:
    """A setting as privacy.md writes it: `[section] key`, or `key` at the top."""
    return f"[{'.'.join(path[:-1])}] {path[-1]}" if len(path) > 1 else path[0]


def path_of(name: str) -> tuple[str, ...]:
    section, _, key = name.partition("] ")
    return (*section.lstrip("[").split("."), key)


def listed_in(path: tuple[str, ...], names: Iterable[str]) -> str | None:
    """The name in `names` that stands for the setting at `path` (itself, or its table)."""
    for name in names:
        if path[: len(path_of(name))] == path_of(name):
            return name
    return None


def documented_settings() -> set[str]:
    """The settings privacy.md's table "Settings that keep data" names in its first column."""
    text = PRIVACY.read_text(encoding="utf-8")
    table = text.split("## Settings that keep data", 1)[1].split("\n## ", 1)[0]
    firsts = re.findall(r"^\|([^|]+)\|", table, flags=re.MULTILINE)
    return {name for cell in firsts for name in re.findall(r"`(\[[^`]+)`", cell)}


def test_every_setting_that_keeps_data_is_documented() -> None:
    paths = list(setting_paths(Settings))
    # Every name in the lists is a setting there is (a renamed one is not silently dropped).
    for name in KEEPS_DATA | set(KEEPS_NOTHING):
        wanted = path_of(name)
        assert any(path[: len(wanted)] == wanted for path in paths), f"no setting {name}"
    # Each setting called like one that keeps something is in one list or the other.
    unsorted = [
        setting_name(path)
        for path in paths
        if KEEPING.search(path[-1]) and not listed_in(path, KEEPS_DATA | set(KEEPS_NOTHING))
    ]
    assert not unsorted, (
        f"keeps data (KEEPS_DATA and docs/privacy.md) or not (KEEPS_NOTHING)? {unsorted}"
    )
    assert not KEEPS_DATA & set(KEEPS_NOTHING)
    # Both ways: every setting that keeps data has its row in privacy.md, and every row is one.
    documented = documented_settings()
    assert not KEEPS_DATA - documented, f"docs/privacy.md has no row for {KEEPS_DATA - documented}"
    assert not documented - KEEPS_DATA, f"not in KEEPS_DATA: {documented - KEEPS_DATA}"
