"""What the wire guard's integration tests share: a gateway of a module's own in front of the
test prosody, the two transports each guard test runs over, a wait for the server to have read
what a client sent, the count of streams the guard ended, and the billion laughs' entities.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.processes import stop_process
from tests.fixtures.xmpp_client import XmppClient

# The billion laughs' entities (lol9 is 10**9 'lol'), for a document type's internal subset.
LAUGHS = "".join(f"<!ENTITY lol{n} '{f'&lol{n - 1};' * 10 if n else 'lol'}'>" for n in range(10))


@contextmanager
def guarded_gateway(
    tmp_path_factory: pytest.TempPathFactory, name: str, jitsi_web: Any, prosody: Any, extra: str
) -> Iterator[tuple[GatewayServer, int]]:
    """A gateway of its own (its guard metrics and memory are the module's alone) in front of
    prosody, and its process id; stopped on leaving."""
    server, proc = start_gateway(
        tmp_path_factory.mktemp(name),
        upstream=jitsi_web.url,
        signalling_upstream=f"http://127.0.0.1:{prosody.http_port}",
        extra=extra,
    )
    try:
        yield server, proc.pid
    finally:
        stop_process(proc)


@pytest.fixture(params=["websocket", "bosh"])
def transport(request: pytest.FixtureRequest) -> str:
    """Each test over both of the client's transports: the guard reads each."""
    return str(request.param)


async def sync(client: XmppClient, prosody: Any, mark: str) -> None:
    """Wait until the server has handled all `client` sent before: its answer to a ping."""
    await client.send_raw(
        f"<iq xmlns='jabber:client' to='{prosody.domain}' type='get' id='{mark}'>"
        "<ping xmlns='urn:xmpp:ping'/></iq>"
    )
    await client.wait_for_stanza(lambda e: e.get("id") == mark and e.get("type") == "result")


def streams_ended(gateway: GatewayServer, reason: str | None = None) -> float:
    """meetgate_guard_streams_ended_total for `reason`, or summed over every reason."""
    with gateway.admin() as admin:
        text = admin.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("meetgate_guard_streams_ended_total{")
        and (reason is None or f'reason="{reason}"' in line)
    )
