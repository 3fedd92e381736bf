"""What the wire guard's integration tests share: a gateway of a module's own in front of the
test prosody, and the two transports each guard test runs over.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.fixtures.gateway_server import GatewayServer, start_gateway
from tests.fixtures.processes import stop_process


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
