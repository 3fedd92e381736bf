"""`meetgate doctor` on the store: persistence read from a real redis-server (CONFIG, or INFO
where a managed Redis forbids CONFIG), and the store's memory marker as the replicas judge it."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from gateway.doctor import (
    RedisPersistence,
    Verdict,
    memory_finding,
    persistence_finding,
    redis_persistence,
)
from tests.fixtures.processes import stop_process
from tests.fixtures.redis_server import start_redis

NO_CONFIG = ("--rename-command", "CONFIG", "")
DEPLOYED = ("--appendonly", "yes", "--appendfsync", "everysec")


@pytest.mark.parametrize(
    ("args", "verdict", "said"),
    [
        (DEPLOYED, Verdict.PASS, "appendfsync everysec"),
        (("--appendonly", "yes", "--appendfsync", "no"), Verdict.WARN, "appendfsync no"),
        (("--save", "3600 1"), Verdict.FAIL, "RDB snapshots only"),
        ((), Verdict.FAIL, "appendonly no"),
        ((*NO_CONFIG, "--appendonly", "yes"), Verdict.PASS, "read from INFO"),
        (NO_CONFIG, Verdict.FAIL, "appendonly no"),
    ],
)
async def test_persistence_is_judged_from_what_redis_says(
    tmp_path: Path, args: tuple[str, ...], verdict: Verdict, said: str
) -> None:
    server = start_redis(tmp_path, *args)
    try:
        finding = persistence_finding(await redis_persistence(server.url, 3.0))
    finally:
        stop_process(server.proc)
    assert (finding.verdict, finding.check) == (verdict, "persistence"), finding
    assert said in finding.detail, finding


def test_a_redis_that_tells_nothing_is_a_warning() -> None:
    finding = persistence_finding(RedisPersistence(appendonly=None, save=None, source=""))
    assert finding.verdict is Verdict.WARN and "make sure AOF is on" in finding.detail


@pytest.mark.parametrize(
    ("marker", "verdict", "said"),
    [
        (None, Verdict.PASS, "no memory marker yet"),
        ("0123456789abcdef0123456789abcdef:7:ok", Verdict.PASS, "intact"),
        ("0123456789abcdef0123456789abcdef:7:lost", Verdict.FAIL, "LOST ITS MEMORY"),
        ("garbled", Verdict.FAIL, "does not parse"),
    ],
)
async def test_the_memory_marker_is_judged_as_the_replicas_judge_it(
    tmp_path: Path, marker: str | None, verdict: Verdict, said: str
) -> None:
    server = start_redis(tmp_path)
    try:
        if marker is not None:
            with redis.Redis(port=server.port) as client:
                client.set("meetgate:memory", marker)
        finding = await memory_finding(server.url, 3.0)
    finally:
        stop_process(server.proc)
    assert (finding.verdict, finding.check) == (verdict, "store memory"), finding
    assert said in finding.detail, finding
