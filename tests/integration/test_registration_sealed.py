"""What a dump of the store shows of registrants (issue 19, security review): `meetgate serve` on a
real redis-server, people registering through its pages with codes from a real SMTP server
(aiosmtpd), one confirmed and waiting for the hosts, one still awaiting its code. Every key and
value Redis holds is read: no name, address, local part or note in clear (the domain only,
which hosts are shown), while the hosts' page, their list and `meetgate registration list`
still show each name and note.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.fixtures.cli import meetgate
from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.processes import stop_process
from tests.fixtures.smtp import SmtpServer
from tests.integration.journeys import admit
from tests.integration.test_registration_flood import hosts_list
from tests.integration.test_registration_review import SETTINGS, register, registration_room

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, redis_server: str, smtp_server: SmtpServer
) -> Iterator[GatewayServer]:
    server, proc = start_gateway(
        tmp_path_factory.mktemp("registration-sealed"),
        upstream="http://127.0.0.1:9",
        store_url=redis_server,
        extra=GENEROUS_LIMITS + SETTINGS.format(smtp_port=smtp_server.port),
    )
    yield server
    stop_process(proc)


def dump(url: str) -> str:
    """Every key of the Redis server and what it holds, as a dump of it would show."""
    client = redis.Redis.from_url(url, decode_responses=True)
    parts: list[str] = []
    try:
        for key in client.scan_iter(count=1000):
            parts.append(key)
            kind = client.type(key)
            value: Any
            if kind == "string":
                value = client.get(key)
            elif kind == "hash":
                value = client.hgetall(key)
            elif kind == "zset":
                value = client.zrange(key, 0, -1)
            elif kind == "set":
                value = client.smembers(key)
            elif kind == "list":
                value = client.lrange(key, 0, -1)
            elif kind == "stream":
                value = client.xrange(key)
            else:
                raise AssertionError(f"a key of a kind not read: {kind}")
            parts.append(str(value))
    finally:
        client.close()
    return "\n".join(parts)


def in_clear(text: str, details: list[str]) -> list[str]:
    """Those of `details` that `text` holds as they are, or escaped as JSON writes them."""
    forms = {detail: (detail, json.dumps(detail)[1:-1]) for detail in details}
    return [detail for detail, ways in forms.items() if any(way in text for way in ways)]


def test_a_dump_of_the_store_shows_no_registrant(
    gateway: GatewayServer, smtp_server: SmtpServer, redis_server: str
) -> None:
    room = registration_room(gateway)
    tag = secrets.token_hex(4)
    local, domain = f"zoe.sealed{tag}", f"sealed{tag}.example"
    name, note = f"Zoë Sealed{tag}", f"Nöte about 李 {tag}"
    assert register(gateway, smtp_server, room, name, f"{local}@{domain}", note) == "waiting"
    # One awaiting its code: sent the form, never confirmed.
    other_local, other_name, other_note = f"amy{tag}", f"Amy Pending{tag}", f"Pending note {tag}"
    other = f"{other_local}@{domain}"
    with gateway.client(headers={"origin": gateway.url}, timeout=30) as browser:
        sent = browser.post(
            f"/_meetgate/register/{room}/send",
            data={"name": other_name, "email": other, "note": other_note},
        )
        assert sent.status_code == 303, sent.text
    smtp_server.mailbox.wait_for(other, 1)

    held = dump(redis_server)
    details = [name, note, local, f"{local}@{domain}", other_name, other_note, other_local, other]
    assert in_clear(held, details) == []
    # The domain is what hosts are shown: it stays readable (docs/privacy.md).
    assert domain in held

    host = admit(gateway, room, "Hilde Host", role="host")
    (listed,) = hosts_list(gateway, host)
    assert (listed["name"], listed["note"], listed["domain"]) == (name, note, domain)
    with gateway.client(cookies=host.cookies) as client:
        page = client.get(f"/_meetgate/host/{room}/invitations")
    assert page.status_code == 200, page.text
    assert name in page.text and note in page.text
    shown = meetgate(gateway, "registration", "list", room, "--json")
    assert shown.returncode == 0, shown.stderr
    (item,) = json.loads(shown.stdout)["items"]
    assert (item["name"], item["note"], item["domain"]) == (name, note, domain)
