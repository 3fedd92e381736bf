"""bench/attack_aftermath.py's scan on a real redis-server: a planted secret is found, in a key,
a value, an unkeyed hash and a log line, and only there; a key without its TTL, or past its
docs/privacy.md bound, is reported."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.attack_aftermath import Secrets, scan_left_behind
from tests.fixtures.processes import stop_process
from tests.fixtures.redis_server import RedisProcess, start_redis

pytestmark = pytest.mark.slow

TROLL = "198.18.7.9"
CLEAN = "198.19.200.4"
TICKET = "eyJh.eyJi.c2lnbmF0dXJlLW9mLWEtdGlja2V0"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RedisProcess]:
    process = start_redis(tmp_path / "redis")
    try:
        yield process
    finally:
        stop_process(process.proc)


def test_a_planted_secret_is_found_where_it_is_and_a_clean_one_is_not(
    store: RedisProcess, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(store.url, decode_responses=True)
    digest = hashlib.sha256(f"address\0{TROLL}".encode()).hexdigest()
    with client:
        client.set("meetgate:admission:a1", '{"name": "Ada Lovelace"}', ex=60)
        client.hset("meetgate:invite:i1", mapping={"note": f"from {TROLL}"})
        client.expire("meetgate:invite:i1", 60)
        client.set(f"meetgate:rate:addr:{digest}", "1", ex=30)
        client.set("meetgate:admission:a2", '{"name": "Bea"}')  # no TTL
        client.set("meetgate:rate:gate", "1", ex=99_999)  # past its bound
        client.set("meetgate:ban:board:x", "1")  # for ever, by design
        client.set("meetgate:rooms", "{}")
    log = tmp_path / "gate-a.log"
    log.write_text(f"started\njoin refused\nticket {TICKET}\n")
    found = scan_left_behind(
        store.url,
        [log],
        Secrets(
            addresses=[TROLL, CLEAN],
            names=["Ada Lovelace", "Cyd Clean"],
            tickets=[TICKET, "eyJh.eyJi.bm90LWhlcmUtYXQtYWxsLW5v"],
            cookies=["k" * 43],
        ),
    )
    secrets = {(f.where, f.what) for f in found.secrets}
    assert secrets == {
        ("meetgate:admission:a1", "name"),
        ("meetgate:invite:i1", "address"),
        (f"meetgate:rate:addr:{digest}", "address (unkeyed hash)"),
        ("log:gate-a.log:3", "ticket"),
    }
    # Never the secret itself in a finding.
    assert not any(TROLL in str(f) or "Ada" in str(f) for f in found.secrets)
    lifetimes = {f.where for f in found.lifetimes}
    assert lifetimes == {"meetgate:admission:a2", "meetgate:rate:gate"}
    assert found.keys == 7 and found.log_lines == 3 and not found.clean
