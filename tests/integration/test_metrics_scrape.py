"""`/metrics` of a running gate, read by prometheus_client's own parser: every family keeps its
name, and the join and revocation histograms count what the gate did.

The real `meetgate serve`, a real prosody behind it and a real XMPP client (strophe.js) whose
WebSocket a host's revocation cuts.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.fixtures.gateway_server import GatewayServer
from tests.fixtures.http_clients import TLS
from tests.fixtures.processes import wait_until
from tests.fixtures.xmpp_client import XmppClient
from tests.integration.journeys import (
    admission_id,
    admit,
    host_action,
    new_room,
    signalling_query,
    ws_url,
)

pytestmark = pytest.mark.slow

# Every family the gate exposes, as the parser names them (a counter without its `_total`).
FAMILIES = {
    "meetgate_admissions": "counter",
    "meetgate_rejections": "counter",
    "meetgate_rate_limited": "counter",
    "meetgate_pow_issued": "counter",
    "meetgate_pow_solved": "counter",
    "meetgate_pow_failed": "counter",
    "meetgate_pressure": "gauge",
    "meetgate_cuts": "counter",
    "meetgate_open_connections": "gauge",
    "meetgate_guard_refused": "counter",
    "meetgate_guard_streams_ended": "counter",
    "meetgate_guard_removals": "counter",
    "meetgate_evidence_dropped": "counter",
    "meetgate_evidence_queued": "gauge",
    "meetgate_invitations_sent": "counter",
    "meetgate_invitations_retried": "counter",
    "meetgate_invitations_failed": "counter",
    "meetgate_store_up": "gauge",
    "meetgate_store_memory_lost": "gauge",
    "meetgate_store_corrupt_records": "counter",
    "meetgate_client_connections": "gauge",
    "meetgate_client_connections_ended": "counter",
    "meetgate_join_seconds": "histogram",
    "meetgate_revocation_close_seconds": "histogram",
}


def scrape(gateway: GatewayServer) -> list[Sample]:
    """Every sample of the gate's `/metrics`, parsed by prometheus_client (not by us); checks
    the families' names and types on the way."""
    with gateway.admin() as admin:
        answer = admin.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version="), answer.headers
    families = list(text_string_to_metric_families(answer.text))
    assert {family.name: family.type for family in families} == FAMILIES
    return [sample for family in families for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    return found[0] if found else 0.0


def buckets_add_up(samples: list[Sample], name: str, **labels: str) -> None:
    """The cumulative buckets of one histogram series never fall, and `+Inf` is its count."""
    series = [
        s
        for s in samples
        if s.name == f"{name}_bucket" and {k: v for k, v in s.labels.items() if k != "le"} == labels
    ]
    counts = [s.value for s in sorted(series, key=lambda s: float(s.labels["le"]))]
    assert counts == sorted(counts), series
    assert series and series[-1].labels["le"] == "+Inf"
    assert counts[-1] == value(samples, f"{name}_count", **labels)


async def test_a_join_and_a_revocation_show_in_the_histograms(
    gateway: GatewayServer, prosody: Any
) -> None:
    """Catches: a join or a cut left untimed (or timed under another outcome), a histogram
    registered nowhere the admin API serves, a counter renamed by the library's `_total`
    handling, `meetgate_open_connections` never set."""
    before = await asyncio.to_thread(scrape, gateway)
    room = new_room(gateway)
    host = await asyncio.to_thread(admit, gateway, room, "Host", role="host")
    troll = await asyncio.to_thread(admit, gateway, room, "Troll")

    def refused_join() -> int:
        with httpx.Client(base_url=gateway.url, trust_env=False, verify=TLS) as client:
            made_up = client.post("/j/not-an-invite-at-all", headers={"origin": gateway.url})
        return made_up.status_code

    assert await asyncio.to_thread(refused_join) >= 400

    async with XmppClient.open(ws_url(gateway, signalling_query(troll))) as troll_client:
        during = await asyncio.to_thread(scrape, gateway)
        assert value(during, "meetgate_open_connections") >= 1
        target = await asyncio.to_thread(admission_id, gateway, host, "Troll")
        answer = await asyncio.to_thread(host_action, gateway, host, "revoke", admission=target)
        assert answer["done"] is True
        await troll_client.wait_closed(timeout=15)

    closes = "meetgate_revocation_close_seconds_count"

    def closed_counted() -> bool:
        return value(scrape(gateway), closes) >= value(before, closes) + 1

    # The histogram is written once the gate's close of the socket has returned, which may be
    # just after the client saw the socket end.
    await asyncio.to_thread(wait_until, closed_counted, 15, "the close in the histogram")
    after = await asyncio.to_thread(scrape, gateway)
    joins = "meetgate_join_seconds_count"
    for outcome, made in (("admitted", 2), ("refused", 1)):
        grown = value(after, joins, outcome=outcome) - value(before, joins, outcome=outcome)
        assert grown >= made, (outcome, grown)
        buckets_add_up(after, "meetgate_join_seconds", outcome=outcome)
        assert value(after, "meetgate_join_seconds_sum", outcome=outcome) > 0
    buckets_add_up(after, "meetgate_revocation_close_seconds")
    assert value(after, "meetgate_cuts_total", reason="revoked") >= 1
    assert not any(s.name.endswith("_created") for s in after)
