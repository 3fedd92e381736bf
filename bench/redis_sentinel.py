"""A Sentinel-managed Redis of the revocation fault report's own, to fail over on purpose: a
master, a replica and one Sentinel, each a real redis-server on a free port (the Sentinel is
`redis-server <conf> --sentinel`), password-protected, started as tests/fixtures/redis_sentinel.py
starts them, with the append-only file and `min-replicas-to-write 1` as deploy/kubernetes runs
Redis. Stopped by their PIDs.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import redis

from bench.servers import pin
from tests.fixtures.processes import free_port, start_listening, stop_process, wait_until
from tests.fixtures.redis_server import REDIS_SERVER

MASTER_NAME = "meetgate-bench"
# As tests/fixtures/redis_sentinel.py: the failover promotes within a second or two, and the
# Sentinel demotes the old master once it has seen it claim the role for a while: within this.
FAILOVER_SECONDS = 30.0
# As deploy/kubernetes/base/redis.yaml.
DEPLOYED = (
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--min-replicas-to-write",
    "1",
    "--min-replicas-max-lag",
    "10",
)


class SentinelRedis:
    """The three processes; `close()` stops them."""

    def __init__(self, workdir: Path, cpus: set[int] | None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self._password = secrets.token_urlsafe(24)
        self.master_port, self.replica_port, self.sentinel_port = (free_port() for _ in range(3))
        common = ["--bind", "127.0.0.1", "--save", "", *DEPLOYED]
        common += ["--requirepass", self._password, "--masterauth", self._password]
        self._procs: list[subprocess.Popen[bytes]] = []
        try:
            for name, port, extra in (
                ("master", self.master_port, []),
                ("replica", self.replica_port, ["--replicaof", "127.0.0.1", str(self.master_port)]),
            ):
                node_dir = workdir / name
                node_dir.mkdir()
                args = [REDIS_SERVER, "--port", str(port), "--dir", str(node_dir), *common, *extra]
                self._procs.append(start_listening(args, port, workdir / f"{name}.log"))
            conf = workdir / "sentinel.conf"
            conf.write_text(
                f"port {self.sentinel_port}\n"
                "bind 127.0.0.1\n"
                f"dir {workdir}\n"
                f"requirepass {self._password}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 1\n"
                f"sentinel auth-pass {MASTER_NAME} {self._password}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 5000\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            )
            self._procs.append(
                start_listening(
                    [REDIS_SERVER, str(conf), "--sentinel"],
                    self.sentinel_port,
                    workdir / "sentinel.log",
                )
            )
            if cpus is not None:
                for proc in self._procs:
                    pin(proc.pid, cpus)
            with self._direct(self.replica_port) as replica:
                wait_until(
                    lambda: replica.info("replication").get("master_link_status") == "up",
                    what="the replica to follow the master",
                )
        except BaseException:
            self.close()
            raise

    def url(self, db: int = 0) -> str:
        """The store URL: the Sentinel's address and the master's name."""
        return (
            f"redis+sentinel://:{self._password}@127.0.0.1:{self.sentinel_port}/{MASTER_NAME}/{db}"
        )

    def _sentinel(self) -> redis.Redis[str]:
        return redis.Redis(port=self.sentinel_port, password=self._password, decode_responses=True)

    def _direct(self, port: int) -> redis.Redis[str]:
        return redis.Redis(port=port, password=self._password, decode_responses=True)

    def master_port_now(self) -> int:
        with self._sentinel() as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def wait_discovered(self) -> None:
        """Until the Sentinel knows the replica (it learns of it from the master's INFO, every
        10 s at first) and the replica holds everything written so far."""
        with self._sentinel() as sentinel:
            wait_until(
                lambda: len(sentinel.sentinel_slaves(MASTER_NAME)) == 1,
                timeout=FAILOVER_SECONDS,
                what="the Sentinel to discover the replica",
            )
        with self._direct(self.master_port_now()) as master:
            written = int(master.info("replication")["master_repl_offset"])

            def caught_up() -> bool:
                replication = master.info("replication")
                return any(
                    isinstance(value, dict)
                    and value.get("state") == "online"
                    and int(value["offset"]) >= written
                    for key, value in replication.items()
                    if key.startswith("slave")
                )

            wait_until(caught_up, timeout=FAILOVER_SECONDS, what="the replica to catch up")

    def fail_over(self) -> None:
        """`SENTINEL FAILOVER`: ask for it, and return at once."""
        with self._sentinel() as sentinel:
            sentinel.execute_command("SENTINEL FAILOVER", MASTER_NAME)

    def wait_failed_over(self, old_master: int) -> None:
        """Until the Sentinel names another master and the old one has become its replica."""

        def done() -> bool:
            if self.master_port_now() == old_master:
                return False
            with self._direct(old_master) as old:
                return bool(old.info("replication")["role"] == "slave")

        wait_until(done, timeout=FAILOVER_SECONDS, what="the failover")

    def close(self) -> None:
        for proc in reversed(self._procs):
            stop_process(proc)
