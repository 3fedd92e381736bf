"""bench/attack_aftermath.py's scan on a real redis-server: a planted secret is found, in a key,
a value, an unkeyed hash and a log line, and only there; a key without its TTL, or past its
docs/privacy.md bound, is reported. Its evidence export, through a real gate, verifies and its
counts are set beside the scenario's."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.attack_aftermath import Secrets, compare, export_evidence, scan_left_behind
from bench.attack_events import FAULT, HOST_REMOVE, Events, Replica
from tests.fixtures.gateway_server import GENEROUS_LIMITS, start_gateway
from tests.fixtures.processes import stop_process
from tests.fixtures.redis_server import RedisProcess, start_redis
from tests.integration.journeys import admission_id, admit, host_action, new_room

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
        client.set("meetgate:ban:board:x", "Ada Lovelace")  # for ever, by design: outlives
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
    # What outlives the TTLs: a key kept for ever and a log line.
    secrets = {(f.where, f.what) for f in found.secrets}
    assert secrets == {
        ("meetgate:ban:board:x", "name"),
        (f"log:{tmp_path.name}/gate-a.log:3", "ticket"),
    }
    # What goes with its key's own TTL, within its bound.
    expiring = {(f.where, f.what.partition(",")[0]) for f in found.expiring}
    assert expiring == {
        ("meetgate:admission:a1", "name"),
        ("meetgate:invite:i1", "address"),
        (f"meetgate:rate:addr:{digest}", "address (unkeyed hash)"),
    }
    # Never the secret itself in a finding.
    every = [*found.secrets, *found.expiring]
    assert not any(TROLL in str(f) or "Ada" in str(f) for f in every)
    lifetimes = {f.where for f in found.lifetimes}
    assert lifetimes == {"meetgate:admission:a2", "meetgate:rate:gate"}
    assert found.keys == 7 and found.log_lines == 3 and not found.clean


def test_the_evidence_export_is_verified_and_counted_against_the_scenario(
    store: RedisProcess, tmp_path: Path, jitsi_web: Any
) -> None:
    key = tmp_path / "evidence-key.pem"
    made = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "evidence", "key", "--generate", str(key)],
        capture_output=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    gateway, proc = start_gateway(
        tmp_path / "gate",
        upstream=jitsi_web.url,
        store_url=store.url,
        extra=GENEROUS_LIMITS + f'[evidence]\nkey_file = "{key}"\n',
    )
    events = Events()
    try:
        room = new_room(gateway)
        host = admit(gateway, room, "Hilde Host", role="host")
        admit(gateway, room, "Troll")
        events.add(HOST_REMOVE, "troll-0", "dashboard")
        troll = admission_id(gateway, host, "Troll")
        assert host_action(gateway, host, "revoke", admission=troll)["done"]
        assert host_action(gateway, host, "lockdown")["done"]
        events.add(FAULT, "stage", "lockdown")
    finally:
        stop_process(proc)  # the recorder drains at the stop
    replica = Replica("a", gateway.url, "", "", proc.pid, gateway.log_path, gateway.config_path)
    evidence = export_evidence(replica, room, tmp_path / "export")
    assert evidence.valid and evidence.verdict.startswith("valid: room"), evidence.verdict
    assert evidence.kinds["removal"] == 1 and evidence.kinds["lockdown"] == 1
    rows = {what: (exported, ours) for what, exported, ours in compare(evidence, events)}
    assert rows["removals and bans"] == (1, 1) and rows["lockdowns"] == (1, 1)
    assert rows["guard removals"] == (0, 0)


def test_an_address_written_as_hex_or_an_integer_counts_only_as_a_word_of_its_own(
    store: RedisProcess, tmp_path: Path
) -> None:
    flood = "198.18.7.9"  # c6120709 in hex, 3323070217 as an integer
    log = tmp_path / "gate-b.log"
    log.write_text(
        "request 9f3ac6120709e1d2 refused\n"  # inside a random request id: chance
        "request c6120709e1d2 refused\n"  # at its start
        "request 9f3ac6120709 refused\n"  # at its end
        "request 133230702175 refused\n"  # inside a longer run of digits: chance
        "refused c6120709 at the gate\n"
        "refused C6120709 at the gate\n"
        "peer=3323070217; refused\n"
    )
    found = scan_left_behind(store.url, [log], Secrets(addresses=[flood]))
    where = f"log:{tmp_path.name}/gate-b.log"
    assert {(f.where, f.what) for f in found.secrets} == {
        (f"{where}:5", "address"),
        (f"{where}:6", "address"),
        (f"{where}:7", "address"),
    }
    assert found.log_lines == 7 and not found.expiring
