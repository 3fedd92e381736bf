"""`meetgate audit purge` against a real Redis: a room's entries, every room's, by age; bad input
and a memory store refused with exit 2, nothing deleted; nothing deleted without `--room` or
`--all`, nor without a yes (asked, or `--yes`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.store import AuditEntry
from gateway.store.redis import RedisStore
from tests.integration.test_cli import meetgate

DAY = 86_400.0


def entry(room: str, at: float) -> AuditEntry:
    return AuditEntry(at=at, room=room, actor="host-id", actor_name="Ada", action="lock")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One `meetgate init` config for the module: the purges only read it (its store's URL comes
    from the environment)."""
    path = tmp_path_factory.mktemp("purge") / "meetgate.toml"
    made = meetgate("init", "--path", str(path))
    assert made.returncode == 0, made.stderr
    return path


def purge(
    config: Path, store_url: str, *argv: str, answer: str = ""
) -> subprocess.CompletedProcess[str]:
    """`meetgate audit purge` on the store at `store_url`, `answer` typed at its question."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "purge", "--config", str(config), *argv],
        input=answer,
        capture_output=True,
        text=True,
        timeout=60,
        env=environ(store_url),
        check=False,
    )


def environ(store_url: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("MEETGATE_")}
    return {**env, "MEETGATE_STORE__URL": store_url}


async def test_purge_deletes_a_rooms_entries_then_every_rooms_by_age(
    config: Path, contract_redis_url: str
) -> None:
    store = await RedisStore.connect(contract_redis_url)
    try:
        now = time.time()
        board, other = f"board-{os.getpid()}", f"other-{os.getpid()}"
        for room in (board, other):
            for days in (9, 3, 0):
                await store.append_audit(entry(room, now - days * DAY))
        done = purge(config, contract_redis_url, "--room", board, answer="y\n")
        assert done.returncode == 0, done.stderr
        assert f"Delete every audit entry of room {board}? [y/N]" in done.stdout
        assert f"deleted 3 audit entries of room {board}" in done.stdout
        assert await store.list_audit(board) == []
        assert len(await store.list_audit(other)) == 3
        done = purge(config, contract_redis_url, "--all", "--older-than", "5", "--yes")
        assert done.returncode == 0, done.stderr
        assert "[y/N]" not in done.stdout
        assert "of every room older than 5 days" in done.stdout
        assert [e.at for e in await store.list_audit(other)] == [now, now - 3 * DAY]
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--room", "Board Room"], "not a room name"),
        (["--room", "a:b"], "not a room name"),
        (["--all", "--older-than", "-1"], "from 0 to"),
        (["--all", "--older-than", "nan"], "from 0 to"),
        (["--all", "--older-than", "1e9"], "from 0 to"),
        (["--all", "--older-than", "week"], "invalid float value"),
        # Whose entries must be said: never every room's by default.
        ([], "one of the arguments --room --all is required"),
        (["--older-than", "5"], "one of the arguments --room --all is required"),
        (["--room", "board", "--all"], "not allowed with argument"),
    ],
)
async def test_bad_input_deletes_nothing(
    config: Path, contract_redis_url: str, argv: list[str], message: str
) -> None:
    store = await RedisStore.connect(contract_redis_url)
    try:
        room = f"kept-{os.getpid()}"
        await store.append_audit(entry(room, time.time() - 10 * DAY))
        done = purge(config, contract_redis_url, *argv, "--yes")
        assert done.returncode == 2
        assert message in done.stderr
        assert len(await store.list_audit(room)) == 1
        await store.purge_audit(room, time.time())
    finally:
        await store.close()


@pytest.mark.parametrize("answer", ["", "n\n", "no\n", "yes please\n", "\n"])
async def test_nothing_is_deleted_without_a_yes(
    config: Path, contract_redis_url: str, answer: str
) -> None:
    store = await RedisStore.connect(contract_redis_url)
    try:
        room = f"asked-{os.getpid()}"
        await store.append_audit(entry(room, time.time()))
        for argv in (["--room", room], ["--all"]):
            done = purge(config, contract_redis_url, *argv, answer=answer)
            assert done.returncode == 1, done.stderr
            assert "nothing deleted" in done.stderr and "deleted 1" not in done.stdout
            assert len(await store.list_audit(room)) == 1
        await store.purge_audit(room, time.time())
    finally:
        await store.close()


def test_a_memory_store_has_nothing_to_purge_from_outside(config: Path) -> None:
    done = purge(config, "memory://", "--all", "--yes")
    assert done.returncode == 2
    assert "inside the running server" in done.stderr
