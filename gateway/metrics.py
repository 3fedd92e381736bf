"""Prometheus metrics, kept in-process and served as text on the admin listener.

A deliberately small registry: counters and gauges with labels, no client library, nothing
about individual attendees (labels are reasons, limits and room names, never addresses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

MAX_SERIES = 5000


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Family:
    kind = "untyped"

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._values: dict[tuple[tuple[str, str], ...], float] = {}

    def _key(self, labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(labels.items()))

    def _slot(self, labels: dict[str, str]) -> tuple[tuple[str, str], ...] | None:
        key = self._key(labels)
        if key not in self._values and len(self._values) >= MAX_SERIES:
            return None  # a flood of distinct room names must not grow memory without bound
        return key

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def render(self) -> Iterator[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for key, value in sorted(self._values.items()):
            if key:
                inner = ",".join(f'{k}="{_escape(v)}"' for k, v in key)
                yield f"{self.name}{{{inner}}} {value:g}"
            else:
                yield f"{self.name} {value:g}"


class Counter(_Family):
    kind = "counter"

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._slot(labels)
        if key is not None:
            self._values[key] = self._values.get(key, 0.0) + amount

    def set_total(self, total: float, **labels: str) -> None:
        """Take a count kept elsewhere, which only grows, as this counter's value."""
        key = self._slot(labels)
        if key is not None:
            self._values[key] = total


class Gauge(_Family):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._slot(labels)
        if key is not None:
            self._values[key] = value


class StoreHealthReadings(Protocol):
    """What the metrics read of a store's health (gateway.store.health.StoreHealth)."""

    @property
    def up(self) -> bool: ...

    def take_corrupt_counts(self) -> dict[str, int]: ...


class StoreMemoryReadings(Protocol):
    """What the metrics read of the store's memory (gateway.store.continuity.Continuity)."""

    @property
    def lost(self) -> bool: ...


class ConnectionReadings(Protocol):
    """What the metrics read of the connection guard (gateway.edge.guard.Guarding)."""

    @property
    def connections(self) -> int: ...

    @property
    def ended(self) -> dict[str, int]: ...


class Metrics:
    def __init__(self) -> None:
        # Called before each rendering: counts kept elsewhere, cheaper to keep than to add here
        # one by one (a flood's refusals), are added then. Until then `value()` does not see
        # them. Each is added once, by a long-lived owner (the app's one RateLimiter).
        self.collectors: list[Callable[[], None]] = []
        self.admissions = Counter("meetgate_admissions_total", "Admissions granted, by path.")
        self.rejections = Counter("meetgate_rejections_total", "Join attempts refused, by reason.")
        self.rate_limited = Counter(
            "meetgate_rate_limited_total",
            "Join attempts refused by a rate limit, by the limit that refused them.",
        )
        self.challenges_issued = Counter(
            "meetgate_pow_issued_total", "Proof-of-work challenges handed out."
        )
        self.challenges_solved = Counter(
            "meetgate_pow_solved_total", "Proof-of-work answers accepted."
        )
        self.challenges_failed = Counter(
            "meetgate_pow_failed_total", "Proof-of-work answers refused (wrong, stale, replayed)."
        )
        self.pressure = Gauge(
            "meetgate_pressure", "Rejected join attempts in the current 10 s window, by room."
        )
        self.revocations = Counter(
            "meetgate_cuts_total", "Admissions whose connections were cut, by reason."
        )
        self.open_connections = Gauge(
            "meetgate_open_connections",
            "Proxied WebSockets and BOSH sessions open on this replica.",
        )
        self.store_up = Gauge(
            "meetgate_store_up",
            "1 while the store answers this replica's calls within their deadline, else 0.",
        )
        self.store_memory_lost = Gauge(
            "meetgate_store_memory_lost",
            "1 while the store is known to have lost its memory (bans, revocations) and no admin"
            " has acknowledged it: joins and ticket refreshes are refused; else 0.",
        )
        self.store_corrupt_records = Counter(
            "meetgate_store_corrupt_records_total",
            "Stored records that did not parse and were read as a refusal, by kind.",
        )

        self.client_connections = Gauge(
            "meetgate_client_connections",
            "Client connections open on this replica's gate listener (WebSockets included).",
        )
        self.client_connections_ended = Counter(
            "meetgate_client_connections_ended_total",
            "Client connections the gate ended itself, by reason: refused at accept over a"
            " connection cap (replica_full, address_full), a head or body not sent in time"
            " (header_timeout, body_timeout), a head over the size cap, a request that does not"
            " parse.",
        )

    def families(self) -> list[_Family]:
        return [
            self.admissions,
            self.rejections,
            self.rate_limited,
            self.challenges_issued,
            self.challenges_solved,
            self.challenges_failed,
            self.pressure,
            self.revocations,
            self.open_connections,
            self.store_up,
            self.store_memory_lost,
            self.store_corrupt_records,
            self.client_connections,
            self.client_connections_ended,
        ]

    def watch_store(self, health: StoreHealthReadings) -> None:
        """Read the store's health into `meetgate_store_up` and the corrupt-record counts
        before each rendering."""

        def collect() -> None:
            self.store_up.set(1.0 if health.up else 0.0)
            for kind, count in health.take_corrupt_counts().items():
                self.store_corrupt_records.inc(count, kind=kind)

        collect()
        self.collectors.append(collect)

    def watch_memory(self, continuity: StoreMemoryReadings) -> None:
        """Read whether the store lost its memory into `meetgate_store_memory_lost` before each
        rendering."""

        def collect() -> None:
            self.store_memory_lost.set(1.0 if continuity.lost else 0.0)

        collect()
        self.collectors.append(collect)

    def watch_connections(self, guarding: ConnectionReadings) -> None:
        """Read the connection guard's counts before each rendering."""

        def collect() -> None:
            self.client_connections.set(guarding.connections)
            for reason, count in guarding.ended.items():
                # The guard's counts only grow: the counter takes them as they are.
                self.client_connections_ended.set_total(count, reason=reason)

        collect()
        self.collectors.append(collect)

    def render(self) -> str:
        for collect in self.collectors:
            collect()
        return "\n".join(line for family in self.families() for line in family.render()) + "\n"
