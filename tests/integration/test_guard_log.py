"""The host dashboard's log of the wire guard's removals, against the real `meetgate serve` on
Redis: each entry says why Meetgate removed someone, in the language of whoever reads the log
(issue 16). The entries are written as the gate writes them (gateway/proxy/gate.py,
`_guard_removes`), straight into the store, since making a real client break each rule is the
wire guard's own tests' work."""

from __future__ import annotations

import time

import httpx
import pytest
import redis

from gateway.proxy.guarded import GUARD_ACTION, GUARD_ACTOR, GUARD_ACTOR_NAME, GUARD_REMOVAL
from gateway.store.records import AuditEntry, AuditFacts, AuditKind, encode_audit
from tests.fixtures.gateway_server import GatewayServer
from tests.fixtures.http_clients import TLS
from tests.integration.journeys import admit, new_room

pytestmark = pytest.mark.slow


def removal(room: str, action: str, rule: str, name: str) -> str:
    return encode_audit(
        AuditEntry(
            at=time.time(),
            room=room,
            actor=GUARD_ACTOR,
            actor_name=GUARD_ACTOR_NAME,
            action=action,
            target=f"invite:{name}",
            detail=rule,
            facts=AuditFacts(AuditKind.NAME, name=name),
        )
    )


def test_the_log_says_why_the_guard_removed_someone(
    redis_gateway: GatewayServer, redis_server: str
) -> None:
    gateway = redis_gateway
    room = new_room(gateway)
    host = admit(gateway, room, "Hilde Host", role="host")
    store = redis.Redis.from_url(redis_server, decode_responses=True)
    try:
        # In the Redis key layout (gateway/store/redis.py): the room's trail, newest first. The
        # oldest was written before the log named the rule.
        for stored in (
            removal(room, GUARD_REMOVAL, "rate", "Old Troll"),
            removal(room, GUARD_ACTION.format(rule="quiet"), "quiet", "Quiet Troll"),
            removal(room, GUARD_ACTION.format(rule="rate"), "rate", "Troll"),
        ):
            store.lpush(f"meetgate:audit:{room}", stored)
    finally:
        store.close()
    path = f"/_meetgate/host/{room}"
    with httpx.Client(
        base_url=gateway.url, trust_env=False, timeout=30, cookies=host.cookies, verify=TLS
    ) as client:
        entries = client.get(f"{path}/roster").json()["audit"]
        english = client.get(path).text
        hans = client.get(path, headers={"accept-language": "zh-CN"}).text
        hant = client.get(path, headers={"accept-language": "zh-TW"}).text
    # The JSON keeps the values: the action names the rule; the page's script puts it in words.
    assert [(e["actor_name"], e["action"], e["detail"]) for e in entries] == [
        ("Meetgate", "guard: rate", "Troll"),
        ("Meetgate", "guard: quiet", "Quiet Troll"),
        ("Meetgate", "guard removal", "Old Troll"),
    ]
    assert (
        "<strong>Meetgate</strong> removed automatically for flooding the meeting: Troll</li>"
        in english
    )
    assert (
        "<strong>Meetgate</strong> removed automatically for writing in quiet mode:"
        " Quiet Troll</li>" in english
    )
    assert "<strong>Meetgate</strong> removed automatically: Old Troll</li>" in english
    assert '"guard: rate": "removed automatically for flooding the meeting"' in english
    assert "<strong>Meetgate</strong> 因发送过于频繁而自动移出：Troll</li>" in hans  # noqa: RUF001
    assert "<strong>Meetgate</strong> 因在安靜模式下傳送訊息而自動移出：Quiet Troll</li>" in hant  # noqa: RUF001
    assert "<strong>Meetgate</strong> 自動移出：Old Troll</li>" in hant  # noqa: RUF001
