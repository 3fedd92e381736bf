"""Revocation under faults (issue 13): from a host's revoke request to the revoked client's
socket closed, across two replicas sharing one Redis (the append-only file on, as deploy/ runs
it), under each Redis fault of the chaos suite: pub/sub healthy; every replica's subscription
dropped (`CLIENT KILL TYPE pubsub`) just before each revoke; Redis paused (SIGSTOP, SIGCONT)
and Redis killed (`kill -9`) and restarted while revocations are issued; and every pub/sub
message lost to the replica holding the socket, so that only its reconciliation (every
`[revocation] reconcile_seconds`) can cut; and a Sentinel failover (`SENTINEL FAILOVER`, Redis
run as deploy/kubernetes runs it) during the revocations, on two more replicas.
`python bench/run.py --faults [--quick]`.

The loss is made by a forwarder between that replica and Redis (tests/fixtures/tcp_proxy.py)
that holds its pub/sub connection's SUBSCRIBE once `CLIENT KILL TYPE pubsub` has dropped it: the
replica's own calls flow, its subscription never comes back. The faults are bench/redis_faults.py,
the revocations during them bench/fault_revocations.py; everything else is the revocation
section's set-up and client (bench/revocation.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio

from bench.admin import SetupError
from bench.fault_revocations import (
    CLICK_AGAIN_SECONDS,
    FaultRevocations,
    Outage,
    revoke_during_fault,
)
from bench.machine import this_machine
from bench.rawhttp import Connection, host_port
from bench.redis_faults import FaultyRedis
from bench.redis_sentinel import SentinelRedis
from bench.report import Figure, Report
from bench.revocation import Revocations, measure_revocations, quantiles
from bench.servers import GATEWAY_ENV, Gateway, Servers
from bench.suite import cpu_split, say
from gateway.settings import RevocationSettings
from tests.fixtures.tcp_proxy import SubscribeHoldingProxy

HEALTHY = "two replicas, pub/sub healthy"
LOST = "two replicas, every pub/sub message lost (reconciliation alone)"
DROPPED = (
    "two replicas, every subscription dropped (`CLIENT KILL TYPE pubsub`) just before each revoke"
)
PAUSE_SECONDS = 2.0
RESTART_SECONDS = 3.0
PAUSED = f"two replicas, Redis paused (SIGSTOP) for {PAUSE_SECONDS:g} s during the revocations"
RESTARTED = (
    f"two replicas, Redis killed (`kill -9`) and restarted {RESTART_SECONDS:g} s later (AOF) "
    "during the revocations"
)
FAILED_OVER = (
    "two replicas on Sentinel, a failover (`SENTINEL FAILOVER`, `min-replicas-to-write 1`) "
    "during the revocations"
)
# Revocations during a failover are spread over its 10-20 s: the host's next click this long
# after the previous revocation was accepted.
FAILOVER_SPACING_SECONDS = 0.5
HEALTHY_TARGET_MS = 100.0
# Past the bound, so that a late cut is measured rather than counted as never.
LOST_WAIT_EXTRA_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class FaultOptions:
    healthy: int
    lost: int
    # Revocations per fault case (dropped subscriptions, pause, restart).
    faulted: int
    reconcile_seconds: float
    pin: bool
    command: str


def faults_options(revocations: int, *, command: str, pin: bool) -> FaultOptions:
    """`revocations` with pub/sub healthy (run.py's --revocations: 200, --quick 50), a fifth
    as many with every message lost (each waits up to an interval), and for each other fault
    about a sixth as many (30; --quick 10)."""
    return FaultOptions(
        healthy=revocations,
        lost=max(5, revocations // 5),
        faulted=max(10, min(60, revocations * 3 // 20)),
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


def fault_figure(measured: FaultRevocations, options: FaultOptions) -> Figure:
    """One row for a fault case: every accepted revocation's socket closed within the bound
    (`reconcile_seconds` + 1 s from the accepted revoke; for a fault that lasts, also the
    outage + that from the host's first click), every other answer a 503, nobody cut by the
    fault itself."""
    bound_ms = (options.reconcile_seconds + 1) * 1000
    p50, p99 = quantiles(measured.accepted_ms)
    worst = max(measured.accepted_ms, default=float("nan"))
    notes = [f"{measured.count} revocations", f"{measured.refused} answered 503"]
    if measured.not_closed:
        notes.append(f"{measured.not_closed} never closed")
    notes += [f"{n} answered {status}" for status, n in sorted(measured.other_statuses.items())]
    if measured.cut_by_fault:
        notes.append(f"{measured.cut_by_fault} cut by the fault before their revoke")
    met = (
        measured.count > 0
        and not measured.not_closed
        and not measured.other_statuses
        and not measured.cut_by_fault
        and worst <= bound_ms
    )
    target = f"each ≤ {bound_ms:,.0f} ms from its accepted revoke"
    baseline = f"p50 {p50:,.1f} ms, p99 {p99:,.1f} ms"
    if measured.outage_seconds is not None:
        outage_bound_ms = measured.outage_seconds * 1000 + bound_ms
        from_click = max(measured.first_click_ms, default=float("nan"))
        target += (
            f", ≤ outage + {bound_ms:,.0f} ms = {outage_bound_ms:,.0f} ms from the first click"
        )
        baseline += f"; from the first click max {from_click:,.1f} ms"
        met = met and from_click <= outage_bound_ms
        if measured.recovered_seconds is None:
            notes.append("no 503, so no recovery to time")
        else:
            notes.append(
                f"revokes answered 200 again {measured.recovered_seconds * 1000:,.0f} ms after "
                "the store was back"
            )
    return Figure(
        what=f"revoke → revoked client's socket closed, {measured.setup}",
        meetgate=f"max {worst:,.1f} ms",
        baseline=baseline,
        comparison=", ".join(notes),
        target=target,
        met=met,
    )


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
        "Redis is a redis-server of the run's own with the append-only file as deploy/ "
        "configures it (`appendonly yes`, `appendfsync everysec`).",
        "Faults (dropped subscriptions, pause, restart): the attendees are admitted and joined "
        "through B before the fault, while the store answers; a host on A then revokes them one "
        f"after another 0.1 s apart, clicking again {CLICK_AGAIN_SECONDS:g} s after each 503, as "
        "the dashboard's host would. Dropped subscriptions: `CLIENT KILL TYPE pubsub` (both "
        "replicas' subscriptions; redis-py re-establishes them by itself) just before each "
        "revoke, each socket's close waited for before the next. Pause: SIGSTOP 0.5 s after the "
        f"first timed revoke, SIGCONT {PAUSE_SECONDS:g} s later. Restart: `kill -9` 0.5 s after "
        f"the first timed revoke, the same server started again on its port {RESTART_SECONDS:g} "
        "s later (the outage runs until it listens). Times run from the accepted revoke request "
        "(answered 200, done) and from the host's first click on that attendee; the bound is "
        f"the documented one, `reconcile_seconds` + 1 s ({options.reconcile_seconds + 1:g} s) "
        "of the store answering, so from an accepted revoke, and the outage + that from the "
        "first click. Recovery is timed from SIGCONT, or from the restarted Redis listening, to "
        "the first revoke answered 200 after the last 503.",
        "Failover: two more replicas, C (the host's) and D (the attendees'), on a Sentinel URL: "
        "a master, a replica and one Sentinel (`down-after-milliseconds` 5000, "
        "`failover-timeout` 10000, as tests/fixtures/redis_sentinel.py), each Redis as "
        "deploy/kubernetes runs it (AOF, `min-replicas-to-write 1`, `min-replicas-max-lag 10`). "
        "`SENTINEL FAILOVER` 0.5 s after the first timed revoke, revocations "
        f"{FAILOVER_SPACING_SECONDS:g} s apart; the outage runs until the Sentinel names the new "
        "master and the old one has become its replica (writes are refused with NOREPLICAS "
        "until then).",
    ]


async def memory_lost(gate: Gateway) -> bool:
    """Whether the replica finds the store has lost its memory (the admin API)."""
    connection = await Connection.open(*host_port(gate.admin_url))
    try:
        answer = await connection.request(
            "GET", "/api/v1/store/memory", {"authorization": f"Bearer {gate.admin_token}"}
        )
    finally:
        await connection.close()
    if answer.status != 200:
        raise SetupError(f"the store's memory state gave {answer.status}")
    return bool(json.loads(answer.body)["lost"])


def failover_outage(sentinel: SentinelRedis) -> Outage:
    """Asks for the failover; it is over once the old master follows the new one."""
    old: list[int] = []

    def begin() -> None:
        old.append(sentinel.master_port_now())
        sentinel.fail_over()

    return Outage(begin, lambda: sentinel.wait_failed_over(old[0]), 0.0)


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
    bound = options.reconcile_seconds + 1
    store = FaultyRedis(workdir / "redis", server_cpus)
    sentinel: SentinelRedis | None = None
    try:
        sentinel = SentinelRedis(workdir / "sentinel", server_cpus)
        with Servers(workdir, server_cpus) as servers:
            redis_url = store.url
            proxy = SubscribeHoldingProxy(store.port)
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
                c, d = (
                    servers.gateway(
                        f"gate-{name}",
                        upstream=upstream,
                        store_url=sentinel.url(),
                        signalling=prosody.http_url,
                        env=env,
                    )
                    for name in ("c", "d")
                )
                servers.wait_ready()
                say(f"measuring {options.healthy} revocations, {HEALTHY}")
                healthy = asyncio.run(measure_revocations(HEALTHY, a, b, prosody, options.healthy))
                faulted: list[FaultRevocations] = []
                cases: list[tuple[str, Outage | None, bool]] = [
                    (DROPPED, None, True),
                    (PAUSED, Outage(store.pause, store.resume, PAUSE_SECONDS), False),
                    (RESTARTED, Outage(store.kill, store.restart, RESTART_SECONDS), False),
                ]
                for setup, outage, dropping in cases:
                    say(f"measuring {options.faulted} revocations, {setup}")
                    faulted.append(
                        asyncio.run(
                            revoke_during_fault(
                                setup,
                                a,
                                b,
                                prosody,
                                options.faulted,
                                close_wait=bound + LOST_WAIT_EXTRA_SECONDS,
                                outage=outage,
                                before_each=store.drop_subscriptions if dropping else None,
                            )
                        )
                    )
                say(f"measuring {options.faulted} revocations, {FAILED_OVER}")
                sentinel.wait_discovered()
                faulted.append(
                    asyncio.run(
                        revoke_during_fault(
                            FAILED_OVER,
                            c,
                            d,
                            prosody,
                            options.faulted,
                            close_wait=bound + LOST_WAIT_EXTRA_SECONDS,
                            outage=failover_outage(sentinel),
                            spacing=FAILOVER_SPACING_SECONDS,
                        )
                    )
                )
                forgot = asyncio.run(memory_lost(c))
                asyncio.run(lose_every_message(proxy, redis_url))
                say(f"measuring {options.lost} revocations, {LOST}")
                wait = options.reconcile_seconds + LOST_WAIT_EXTRA_SECONDS
                lost = asyncio.run(measure_revocations(LOST, a, b, prosody, options.lost, wait))
            finally:
                proxy.release()
                proxy.close()
    finally:
        if sentinel is not None:
            sentinel.close()
        store.close()
    rows = figures(healthy, lost, options)
    rows[1:1] = [fault_figure(measured, options) for measured in faulted]
    return Report(
        command=options.command,
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=machine,
        method=method(options),
        figures=rows,
        runs=[],
        details=[
            *fault_details(faulted),
            f"{FAILED_OVER}: after it the store "
            + ("had lost its memory (writes lost)" if forgot else "had lost nothing"),
        ],
        profiles=[],
        warnings=[],
    )


def fault_details(measured: list[FaultRevocations]) -> list[str]:
    lines = []
    for m in measured:
        parts = []
        if m.outage_seconds is not None:
            parts.append(f"the fault lasted {m.outage_seconds:,.2f} s")
        if m.other_codes:
            codes = ", ".join(f"{n} with {code}" for code, n in sorted(m.other_codes.items()))
            parts.append(f"sockets closed {codes} instead of 4403")
        if parts:
            lines.append(f"{m.setup}: " + "; ".join(parts))
    return lines
