"""WebSocket round-trip latency: one client, sequential echoes, alternating between targets.

The targets take turns in short blocks on connections opened up front, so a slow phase of the
machine (another process waking, a frequency change) falls on both sides alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect

from bench.report import Goal

MESSAGE_BYTES = 200
BLOCK = 100


@dataclass(frozen=True, slots=True)
class Latency:
    samples: int
    p50_ms: float
    p99_ms: float


def percentile(sorted_ns: list[int], fraction: float) -> float:
    """Nearest-rank percentile of sorted nanosecond samples, in milliseconds."""
    rank = min(len(sorted_ns) - 1, max(0, round(fraction * len(sorted_ns)) - 1))
    return sorted_ns[rank] / 1e6


async def echo_ns(connection: ClientConnection, message: str, expected: str | None = None) -> int:
    """Nanoseconds from sending `message` to its echo; the echo must be `expected` (by default
    the message itself), or RuntimeError."""
    started = time.perf_counter_ns()
    await connection.send(message)
    answer = await connection.recv()
    elapsed = time.perf_counter_ns() - started
    if answer != (message if expected is None else expected):
        raise RuntimeError("the echo came back different from what was expected")
    return elapsed


async def measure(
    targets: dict[str, str], *, cookie: str, round_trips: int, warm_up: int
) -> dict[str, Latency]:
    """p50/p99 of `round_trips` sequential echoes of a 200-byte text message per target.

    Every target gets the same client, the same headers and the same message.
    """
    message = ("0123456789abcdef" * (MESSAGE_BYTES // 16 + 1))[:MESSAGE_BYTES]
    connections: dict[str, ClientConnection] = {}
    samples: dict[str, list[int]] = {name: [] for name in targets}
    try:
        for name, url in targets.items():
            connections[name] = await connect(
                url,
                additional_headers={"cookie": cookie},
                compression=None,
                open_timeout=10,
                proxy=None,
            )
        for connection in connections.values():
            for _ in range(warm_up):
                await echo_ns(connection, message)
        while any(len(taken) < round_trips for taken in samples.values()):
            for name, connection in connections.items():
                for _ in range(min(BLOCK, round_trips - len(samples[name]))):
                    samples[name].append(await echo_ns(connection, message))
    finally:
        for connection in connections.values():
            await connection.close()
    result = {}
    for name, taken in samples.items():
        taken.sort()
        result[name] = Latency(
            samples=len(taken), p50_ms=percentile(taken, 0.50), p99_ms=percentile(taken, 0.99)
        )
    return result


# Issue 15's (and 16's) goals for the latency a relay adds to one round trip.
ADDED_P50_TARGET_MS = 0.5
ADDED_P99_TARGET_MS = 2.0


def added_latency_goals(
    repeats: Sequence[Mapping[str, Latency]], through: str, what: Callable[[str], str]
) -> list[Goal]:
    """The p50 and p99 goals on what going `through` a relay adds to the round trip straight to
    the echo (`direct`), repeat by repeat; `what(label)` names each row."""
    goals = []
    for label, attr, target in (
        ("p50", "p50_ms", ADDED_P50_TARGET_MS),
        ("p99", "p99_ms", ADDED_P99_TARGET_MS),
    ):
        relayed = [getattr(repeat[through], attr) for repeat in repeats]
        direct = [getattr(repeat["direct"], attr) for repeat in repeats]
        goals.append(
            Goal(
                what=what(label),
                meetgate=relayed,
                baseline=direct,
                unit="{:.3f} ms",
                baseline_name="straight to the echo",
                scores=[t - d for t, d in zip(relayed, direct, strict=True)],
                score_unit="{:+.3f} ms",
                target=target,
                higher_is_better=False,
                target_text=f"≤ {target:g} ms added",
            )
        )
    return goals
