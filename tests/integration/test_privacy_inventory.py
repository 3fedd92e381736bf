"""docs/privacy.md names everything the gate keeps, and the gate keeps no client address.

A gateway on a Redis of its own is taken through every way in (invites, the lobby, e-mail
codes, a signalling session) and every host action, from client addresses of its own (IPv4 and
IPv6, through a trusted proxy). Then every key in Redis is read: each must belong to a key family
privacy.md's table names, and no key, no value and no log line may hold a client's address in
any of its textual forms. Statically: every key prefix gateway/store/redis.py declares, and every
setting that says how long something is kept, is named in privacy.md.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import ipaddress
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from pydantic import BaseModel

from gateway.settings import Settings
from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.processes import stop_process
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


def written_forms(address: str) -> set[str]:
    """Every way an address, or the network the gate groups it in, could be written down."""
    parsed = ipaddress.ip_address(address)
    forms = {str(parsed), parsed.exploded}
    if isinstance(parsed, ipaddress.IPv4Address):
        network = ipaddress.ip_network(f"{parsed}/24", strict=False)
        forms |= {f"::ffff:{parsed}", str(network.network_address), str(network)}
        forms.add(".".join(str(parsed).split(".")[:3]) + ".")
    else:
        for bits in (48, 64):
            network = ipaddress.ip_network(f"{parsed}/{bits}", strict=False)
            forms |= {str(network), str(network.network_address).rstrip(":")}
            forms.add(network.network_address.exploded[: 5 * bits // 16 - 1])
        forms.add(parsed.packed.hex())
    return forms


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
    """A gateway on a Redis of its own (so that every key in it is this test's)."""
    workdir = tmp_path_factory.mktemp("privacy")
    store = start_redis(workdir / "redis")
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
""",
    )
    try:
        yield server, store.url
    finally:
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
    # From the trusted proxy's own address (XmppClient sets no header): 127.0.0.1 is checked too.
    async with XmppClient.open(ws_url(gateway, signalling_query(admitted))) as client:
        await client.join(prosody.room_jid(admitted.room), nick)
        await client.close()


def walk_every_way_in(gateway: GatewayServer, prosody: Any, smtp_server: SmtpServer) -> None:
    # Invites: a host and an attendee, who opens a signalling session.
    room = f"agora-{secrets.token_hex(3)}"
    gateway.create_room(room, title="Agora")
    host = join_by_invite(gateway, room, "Hilde Host", HOST_ADDRESS, role="host")
    ada = join_by_invite(gateway, room, "Ada Attendee", ATTENDEE_ADDRESS)
    asyncio.run(signal(gateway, prosody, ada, "ada"))
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
        joined = client.post(
            f"/_meetgate/email/{mail}/verify", data={"email": email, "code": code, "name": "Eve"}
        )
        assert joined.status_code == 303, joined.text

    # Host actions: quiet, lock, a removal and a ban, a move.
    for action in ("quiet", "lock", "unlock"):
        assert host_action(gateway, host, action)["ok"] is True
    bob = join_by_invite(gateway, room, "Bob", GUEST_ADDRESS)
    assert host_action(gateway, host, "revoke", admission=admission_of(bob))["ok"] is True
    assert host_action(gateway, host, "ban", admission=admission_of(ada), duration="1d")["ok"]
    assert host_action(gateway, host, "move")["ok"] is True


def stored(client: redis.Redis) -> dict[str, str]:
    """Every key in the database, with its value as text (a hash, list, set or sorted set as
    its members, and scores)."""
    found: dict[str, str] = {}
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == "string":
            value: Any = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            value = f"<{kind}>"
        found[key] = repr(value)
    return found


def test_every_key_is_documented_and_none_holds_a_client_address(
    deployment: tuple[GatewayServer, str], prosody: Any, smtp_server: SmtpServer
) -> None:
    gateway, url = deployment
    walk_every_way_in(gateway, prosody, smtp_server)
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        keys = stored(client)
    finally:
        client.close()
    families = documented_families()
    undocumented = sorted(key for key in keys if not any(f.fullmatch(key) for f in families))
    assert not undocumented, f"keys of families docs/privacy.md does not name: {undocumented}"
    # The walk reached the families that hold people's data (else it proves little).
    for needed in ("admission", "names", "invite", "value:lobby:request", "rate:addr", "audit"):
        assert any(key.startswith(f"meetgate:{needed}:") for key in keys), needed
    log = gateway.log_text()
    for address in ADDRESSES:
        for form in written_forms(address):
            holding = [k for k, v in keys.items() if form in k or form in v]
            assert not holding, f"{form} ({address}) is stored in {holding}"
            # The log names the gate's own listeners, on 127.0.0.1: only the others are clients'.
            if address != "127.0.0.1":
                assert form not in log, f"{form} ({address}) is in the log"


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


# What a setting that keeps something, or says for how long, is called.
KEEPING = re.compile(r"ttl|retention|keep|kept|max_age|lifetime|expir|client_addresses|directory")


def keeping_settings(model: type[BaseModel], section: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        nested = [
            kind
            for kind in getattr(annotation, "__args__", (annotation,))
            if isinstance(kind, type) and issubclass(kind, BaseModel)
        ]
        if nested:
            yield from keeping_settings(nested[0], name)
        elif KEEPING.search(name):
            yield f"[{section}] {name}" if section else name


def test_every_setting_that_keeps_data_is_documented() -> None:
    text = PRIVACY.read_text(encoding="utf-8")
    found = sorted(set(keeping_settings(Settings)))
    assert "[privacy] audit_retention_days" in found and "[admission] ttl_seconds" in found
    missing = [name for name in found if f"`{name}`" not in text]
    assert not missing, f"docs/privacy.md names no {missing}"
