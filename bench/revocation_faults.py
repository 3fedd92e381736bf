"""Revocation under faults (issue 13): from a host's revoke request to the revoked client's
socket closed, across two replicas sharing one Redis, with pub/sub healthy and with every
pub/sub message lost to the replica holding the socket, so that only its reconciliation (every
`[revocation] reconcile_seconds`) can cut. `python bench/run.py --faults [--quick]`.

The loss is made by a forwarder between that replica and Redis (tests/fixtures/tcp_proxy.py)
that holds its pub/sub connection's SUBSCRIBE once `CLIENT KILL TYPE pubsub` has dropped it: the
replica's own calls flow, its subscription never comes back. Everything else is the revocation
section's set-up and client (bench/revocation.py).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import redis.asyncio

from bench.machine import this_machine
from bench.report import Figure, Report
from bench.revocation import Revocations, measure_revocations, quantiles
from bench.servers import GATEWAY_ENV, Servers
from bench.suite import cpu_split, say
from gateway.settings import RevocationSettings
from tests.fixtures.tcp_proxy import SubscribeHoldingProxy

HEALTHY = "two replicas, pub/sub healthy"
LOST = "two replicas, every pub/sub message lost (reconciliation alone)"
HEALTHY_TARGET_MS = 100.0
# Past the bound, so that a late cut is measured rather than counted as never.
LOST_WAIT_EXTRA_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class FaultOptions:
    healthy: int
    lost: int
    reconcile_seconds: float
    pin: bool
    command: str


def faults_options(revocations: int, *, command: str, pin: bool) -> FaultOptions:
    """`revocations` with pub/sub healthy (run.py's --revocations: 200, --quick 50), a fifth
    as many with every message lost (each waits up to an interval)."""
    return FaultOptions(
        healthy=revocations,
        lost=max(5, revocations // 5),
        reconcile_seconds=RevocationSettings().reconcile_seconds,
        pin=pin,
        command=command,
    )


async def lose_every_message(proxy: SubscribeHoldingProxy, redis_url: str) -> None:
    proxy.hold_subscriptions()
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    finally:
        await client.aclose()


def figures(healthy: Revocations, lost: Revocations, options: FaultOptions) -> list[Figure]:
    bound_ms = (options.reconcile_seconds + 1) * 1000
    rows = []
    for measured, target in ((healthy, HEALTHY_TARGET_MS), (lost, bound_ms)):
        p50, p99 = quantiles(measured.closed_ms)
        missing = f", {measured.not_closed} never closed" if measured.not_closed else ""
        worst = max(measured.closed_ms, default=float("nan"))
        rows.append(
            Figure(
                what=f"revoke → revoked client's socket closed, {measured.setup}",
                meetgate=f"p99 {p99:,.1f} ms",
                baseline=f"p50 {p50:,.1f} ms, max {worst:,.1f} ms",
                comparison=f"{measured.count} revocations{missing}",
                target=f"p99 ≤ {target:,.0f} ms",
                met=not measured.not_closed and p99 <= target,
            )
        )
    return rows


def method(options: FaultOptions) -> list[str]:
    return [
        "Each revocation as in the revocation section: a host revokes through the dashboard's "
        "JSON API on replica A, where another occupant watches the MUC room; the revoked "
        "attendee was admitted and joined (XMPP over `/xmpp-websocket`, a real prosody) through "
        "replica B; the time runs from just before the revoke request is written to the "
        "attendee's socket closed.",
        f"Every pub/sub message lost: B reaches Redis through a forwarder; `CLIENT KILL TYPE "
        "pubsub` drops its subscription and the forwarder holds the SUBSCRIBE it sends again, "
        "so B is never subscribed while its other calls flow. Only its reconciliation, every "
        f"{options.reconcile_seconds:g} s (`[revocation] reconcile_seconds`, the default), "
        "cuts. Each revocation here comes right after the previous one was cut, that is just "
        "after a sweep, so each waits nearly a whole interval: the bound's worst case, not its "
        "average (a revocation at a random moment waits half an interval on average).",
    ]


def run_faults(options: FaultOptions) -> Report:
    machine = this_machine("wrk not used")
    client_cpus, server_cpus = cpu_split(options.pin)
    if client_cpus is not None:
        os.sched_setaffinity(0, client_cpus)
    say(f"machine: {machine.describe()}")
    workdir = Path(tempfile.mkdtemp(prefix="meetgate-faults-"))
    env = {
        **GATEWAY_ENV,
        "MEETGATE_REVOCATION__RECONCILE_SECONDS": str(options.reconcile_seconds),
    }
    with Servers(workdir, server_cpus) as servers:
        redis_url = servers.redis()
        servers.wait_ready()
        proxy = SubscribeHoldingProxy(urlsplit(redis_url).port or 6379)
        try:
            prosody = servers.prosody()
            upstream = servers.bench_app("upstream")
            a, b = (
                servers.gateway(
                    f"gate-{name}",
                    upstream=upstream,
                    store_url=url,
                    signalling=prosody.http_url,
                    env=env,
                )
                for name, url in (("a", redis_url), ("b", proxy.url()))
            )
            servers.wait_ready()
            say(f"measuring {options.healthy} revocations, {HEALTHY}")
            healthy = asyncio.run(measure_revocations(HEALTHY, a, b, prosody, options.healthy))
            asyncio.run(lose_every_message(proxy, redis_url))
            say(f"measuring {options.lost} revocations, {LOST}")
            wait = options.reconcile_seconds + LOST_WAIT_EXTRA_SECONDS
            lost = asyncio.run(measure_revocations(LOST, a, b, prosody, options.lost, wait))
        finally:
            proxy.release()
            proxy.close()
    return Report(
        command=options.command,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine,
        method=method(options),
        figures=figures(healthy, lost, options),
        runs=[],
        details=[],
        profiles=[],
        warnings=[],
    )
