"""The faults the revocation fault report injects into its Redis: a redis-server of the run's own
with the append-only file as deploy/ configures it (`appendonly yes`, `appendfsync everysec`),
killed (`kill -9`) and started again on its port, paused (SIGSTOP, SIGCONT), and every replica's
pub/sub connection dropped (`CLIENT KILL TYPE pubsub`). Started and stopped by its PID, never
the Redis on 6379 (tests/fixtures/redis_server.py starts it on a free port).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import redis.asyncio

from bench.servers import pin
from tests.fixtures.processes import stop_process
from tests.fixtures.redis_server import RedisProcess, start_redis

# As deploy/compose and deploy/kubernetes run Redis.
PERSISTENCE = ("--appendonly", "yes", "--appendfsync", "everysec")


class FaultyRedis:
    """A redis-server to break on purpose; `close()` stops it."""

    def __init__(self, workdir: Path, cpus: set[int] | None) -> None:
        self._cpus = cpus
        self._server: RedisProcess = start_redis(workdir, *PERSISTENCE)
        self._pin()

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    def _pin(self) -> None:
        if self._cpus is not None:
            pin(self._server.proc.pid, self._cpus)

    def kill(self) -> None:
        """`kill -9`, and wait until it is gone."""
        os.kill(self._server.proc.pid, signal.SIGKILL)
        self._server.proc.wait(timeout=10)

    def restart(self) -> None:
        """Start it again on its port from its append-only file; returns once it listens."""
        self._server.restart()
        self._pin()

    def pause(self) -> None:
        os.kill(self._server.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self._server.proc.pid, signal.SIGCONT)

    async def drop_subscriptions(self) -> int:
        """`CLIENT KILL TYPE pubsub`: every replica's subscription dropped (redis-py
        re-establishes it by itself); how many were killed."""
        client = redis.asyncio.Redis.from_url(self.url)
        try:
            return int(await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))
        finally:
            await client.aclose()

    def close(self) -> None:
        # A paused server would not stop on SIGTERM.
        if self._server.proc.poll() is None:
            os.kill(self._server.proc.pid, signal.SIGCONT)
        stop_process(self._server.proc)
