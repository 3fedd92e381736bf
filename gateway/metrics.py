"""Prometheus metrics on prometheus_client, kept in a registry of each `Metrics` object's own and
served by the admin listener.

Nothing here is about individual attendees: labels are reasons, limits, outcomes and room names,
never addresses or names. Every labelled family is capped at `MAX_SERIES` label sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

MAX_SERIES = 5000

# A join's answer, from the gate's receipt of the POST: most take a few store round trips, a
# proof-of-work check or a slow store can take seconds.
JOIN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# A cut's closes: each connection says goodbye upstream first (bounded at 2 s twice).
CLOSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# No `<name>_created` series beside each counter and histogram: Meetgate's exposition never had
# them, and each is one more series per label set. The switch is the library's, process-wide.
# (The library's function has no annotations.)
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


_Metric = TypeVar(
    "_Metric", prometheus_client.Counter, prometheus_client.Gauge, prometheus_client.Histogram
)


class _Family(Generic[_Metric]):
    """One family of prometheus_client's, with a bound on its label sets (a flood of distinct
    room names must not grow memory without bound) and its series kept at hand: looking one up
    through the library validates its labels each time, three times the cost of the update."""

    def __init__(self, metric: _Metric, registry: CollectorRegistry, sample: str) -> None:
        self._metric: _Metric = metric
        self._registry = registry
        self._sample = sample
        self._series: dict[tuple[tuple[str, str], ...], _Metric] = {}

    def _series_for(self, labels: dict[str, str]) -> _Metric | None:
        if not labels:
            return self._metric
        key = tuple(labels.items())
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= MAX_SERIES:
                return None
            series = self._series[key] = self._metric.labels(**labels)
        return series

    def value(self, **labels: str) -> float:
        return self._registry.get_sample_value(self._sample, labels) or 0.0


class Counter(_Family[prometheus_client.Counter]):
    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
    ) -> None:
        # prometheus_client drops a counter's `_total` and adds it back to the sample: the
        # exposed name is `name` either way.
        counter = prometheus_client.Counter(name, help_text, labelnames, registry=registry)
        super().__init__(counter, registry, name)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        series = self._series_for(labels)
        if series is not None:
            series.inc(amount)


class Gauge(_Family[prometheus_client.Gauge]):
    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
    ) -> None:
        gauge = prometheus_client.Gauge(name, help_text, labelnames, registry=registry)
        super().__init__(gauge, registry, name)

    def set(self, value: float, **labels: str) -> None:
        series = self._series_for(labels)
        if series is not None:
            series.set(value)

    def read_from(self, read: Callable[[], float]) -> None:
        """Take the value `read` returns at each scrape (an unlabelled gauge only)."""
        self._metric.set_function(read)


class Histogram(_Family[prometheus_client.Histogram]):
    def __init__(
        self,
        registry: CollectorRegistry,
        name: str,
        help_text: str,
        buckets: Sequence[float],
        labelnames: Sequence[str] = (),
    ) -> None:
        histogram = prometheus_client.Histogram(
            name, help_text, labelnames, registry=registry, buckets=buckets
        )
        super().__init__(histogram, registry, name + "_count")

    def observe(self, seconds: float, **labels: str) -> None:
        series = self._series_for(labels)
        if series is not None:
            series.observe(seconds)


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


class RelayedReadings(Protocol):
    """What the metrics read of the live-connection registry
    (gateway.proxy.registry.ConnectionRegistry)."""

    def total(self) -> int: ...


class _StoreHealthCollector:
    """`meetgate_store_up` and the corrupt-record counts, read from the store at each scrape.
    The store hands its counts over once (they are taken): the totals are kept here."""

    def __init__(self, health: StoreHealthReadings) -> None:
        self._health = health
        self._corrupt: dict[str, float] = {}

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "meetgate_store_up",
            "1 while the store answers this replica's calls within their deadline, else 0.",
            value=1.0 if self._health.up else 0.0,
        )
        for kind, count in self._health.take_corrupt_counts().items():
            if kind in self._corrupt or len(self._corrupt) < MAX_SERIES:
                self._corrupt[kind] = self._corrupt.get(kind, 0.0) + count
        corrupt = CounterMetricFamily(
            "meetgate_store_corrupt_records_total",
            "Stored records that did not parse and were read as a refusal, by kind.",
            labels=["kind"],
        )
        for kind, total in sorted(self._corrupt.items()):
            corrupt.add_metric([kind], total)
        return [up, corrupt]


class _StoreMemoryCollector:
    def __init__(self, continuity: StoreMemoryReadings) -> None:
        self._continuity = continuity

    def collect(self) -> Iterable[Metric]:
        lost = GaugeMetricFamily(
            "meetgate_store_memory_lost",
            "1 while the store is known to have lost its memory (bans, revocations) and no admin"
            " has acknowledged it: joins and ticket refreshes are refused; else 0.",
            value=1.0 if self._continuity.lost else 0.0,
        )
        return [lost]


class _ConnectionCollector:
    def __init__(self, guarding: ConnectionReadings) -> None:
        self._guarding = guarding

    def collect(self) -> Iterable[Metric]:
        open_now = GaugeMetricFamily(
            "meetgate_client_connections",
            "Client connections open on this replica's gate listener (WebSockets included).",
            value=self._guarding.connections,
        )
        ended = CounterMetricFamily(
            "meetgate_client_connections_ended_total",
            "Client connections the gate ended itself, by reason: refused at accept over a"
            " connection cap (replica_full, address_full), a head or body not sent in time"
            " (header_timeout, body_timeout), a head over the size cap, a request that does not"
            " parse.",
            labels=["reason"],
        )
        # The guard's counts only grow (and name a handful of reasons): taken as they are.
        for reason, count in sorted(self._guarding.ended.items()):
            ended.add_metric([reason], count)
        return [open_now, ended]


class Metrics:
    def __init__(self) -> None:
        # Never prometheus_client's global registry: one process holds many gates in tests.
        self.registry = CollectorRegistry()
        # Called before each scrape: counts kept elsewhere, cheaper to keep than to add here
        # one by one (a flood's refusals), are added then. Until then `value()` does not see
        # them. Each is added once, by a long-lived owner (the app's one RateLimiter).
        self.collectors: list[Callable[[], None]] = []
        registry = self.registry
        self.admissions = Counter(
            registry, "meetgate_admissions_total", "Admissions granted, by path.", ["via"]
        )
        self.rejections = Counter(
            registry, "meetgate_rejections_total", "Join attempts refused, by reason.", ["reason"]
        )
        self.rate_limited = Counter(
            registry,
            "meetgate_rate_limited_total",
            "Join attempts refused by a rate limit, by the limit that refused them.",
            ["limit"],
        )
        self.challenges_issued = Counter(
            registry, "meetgate_pow_issued_total", "Proof-of-work challenges handed out."
        )
        self.challenges_solved = Counter(
            registry, "meetgate_pow_solved_total", "Proof-of-work answers accepted."
        )
        self.challenges_failed = Counter(
            registry,
            "meetgate_pow_failed_total",
            "Proof-of-work answers refused (wrong, stale, replayed).",
        )
        self.pressure = Gauge(
            registry,
            "meetgate_pressure",
            "Rejected join attempts in the current 10 s window, by room.",
            ["room"],
        )
        self.revocations = Counter(
            registry,
            "meetgate_cuts_total",
            "Admissions whose connections were cut, by reason.",
            ["reason"],
        )
        self.open_connections = Gauge(
            registry,
            "meetgate_open_connections",
            "Proxied WebSockets, BOSH sessions and relayed requests open on this replica.",
        )
        self.guard_refused = Counter(
            registry,
            "meetgate_guard_refused_total",
            "Stanzas the wire guard dropped, by rule: rate, size, quiet, address.",
            ["reason"],
        )
        self.guard_ended = Counter(
            registry,
            "meetgate_guard_streams_ended_total",
            "Signalling sessions the wire guard ended for input no client sends, by stream"
            " error condition.",
            ["reason"],
        )
        self.guard_removals = Counter(
            registry,
            "meetgate_guard_removals_total",
            "Admissions the wire guard removed past their room's strike threshold.",
        )
        self.evidence_dropped = Counter(
            registry,
            "meetgate_evidence_dropped_total",
            "Evidence records this replica could not keep, by reason: queue-full (its queue was"
            " full while the store was away), unrecordable (values no entry may hold). Each"
            " chain that lost some gets an `evidence lost` entry with the count.",
            ["reason"],
        )
        self.evidence_queued = Gauge(
            registry,
            "meetgate_evidence_queued",
            "Evidence records queued on this replica, not yet in the store.",
        )
        self.invitations_sent = Counter(
            registry,
            "meetgate_invitations_sent_total",
            "Invitation e-mails the outbox handed to the mail server.",
        )
        self.invitations_retried = Counter(
            registry,
            "meetgate_invitations_retried_total",
            "Invitation e-mails the mail server did not take, to be tried again.",
        )
        self.invitations_failed = Counter(
            registry,
            "meetgate_invitations_failed_total",
            "Invitation e-mails given up: tried as often as [outbox] max_attempts allows, or"
            " their invite revoked or expired, or their room gone, before they went.",
        )
        self.joins = Histogram(
            registry,
            "meetgate_join_seconds",
            "Join attempts posted to the gate, from receipt to the answer sent, by outcome:"
            " admitted (an admission cookie or a ticket into the meeting), refused (an error"
            " answer), pending (a proof-of-work page, the lobby, an e-mail code sent).",
            JOIN_BUCKETS,
            ["outcome"],
        )
        self.revocation_closes = Histogram(
            registry,
            "meetgate_revocation_close_seconds",
            "Cuts (revoked, banned, locked down, moved, room deleted) that closed connections on"
            " this replica: from the cut's arrival here to the last of its connections closed.",
            CLOSE_BUCKETS,
        )

    def watch_store(self, health: StoreHealthReadings) -> None:
        """Read the store's health into `meetgate_store_up` and the corrupt-record counts at
        each scrape."""
        self.registry.register(_StoreHealthCollector(health))

    def watch_memory(self, continuity: StoreMemoryReadings) -> None:
        """Read whether the store lost its memory into `meetgate_store_memory_lost` at each
        scrape."""
        self.registry.register(_StoreMemoryCollector(continuity))

    def watch_connections(self, guarding: ConnectionReadings) -> None:
        """Read the connection guard's counts at each scrape."""
        self.registry.register(_ConnectionCollector(guarding))

    def watch_relayed(self, connections: RelayedReadings) -> None:
        """Read the relayed connections open into `meetgate_open_connections` at each scrape."""
        self.open_connections.read_from(connections.total)

    def exposition(self) -> bytes:
        """Every metric in Prometheus' text format (prometheus_client.CONTENT_TYPE_LATEST)."""
        for collect in self.collectors:
            collect()
        return generate_latest(self.registry)

    def render(self) -> str:
        return self.exposition().decode()
