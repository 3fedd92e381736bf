"""`meetgate invite import --send` with the mail server failing in the middle (issue 19): the
500-row list of tests/integration/test_invite_import.py (malformed rows among the good ones),
imported by the CLI into a running `meetgate serve` whose SMTP server (aiosmtpd) takes the first
part of the batch, then refuses every message (421, a temporary failure), then is gone (the port
closed), then is back. The CLI follows the batch to its end: every good invitee receives exactly
one invitation, nobody else any, each bad row is reported by its line, and the gate counted its
retries.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from tests.fixtures.cli import command, environment
from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.processes import free_port, stop_process, wait_until
from tests.fixtures.smtp import Mailbox, _Handler
from tests.integration.test_invite_import import (
    invitee_list,
    invites,
    new_room,
    reported,
)

pytestmark = pytest.mark.slow

# Messages taken before the outage.
BEFORE_OUTAGE = 120


class FlakyHandler(_Handler):
    """Takes messages until `limit`, then answers every new one 421 until `healthy` is set."""

    def __init__(self, mailbox: Mailbox, limit: int) -> None:
        super().__init__(mailbox)
        self.limit = limit
        self.healthy = threading.Event()
        self.refused = 0

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if len(self._mailbox.messages) >= self.limit and not self.healthy.is_set():
            self.refused += 1
            return "421 4.3.2 Service not available, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"


class FlakyServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self.handler = FlakyHandler(self.mailbox, BEFORE_OUTAGE)
        self.controller = self._start(self.handler)

    def _start(self, handler: _Handler) -> Controller:
        controller = Controller(handler, hostname="127.0.0.1", port=self.port)
        controller.start()
        return controller

    def stop(self) -> None:
        self.controller.stop()

    def back(self) -> None:
        """On its port again, keeping its mailbox, taking every message."""
        self.handler.healthy.set()
        self.controller = self._start(self.handler)


@pytest.fixture(scope="module")
def smtp() -> Iterator[FlakyServer]:
    server = FlakyServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gate(
    tmp_path_factory: pytest.TempPathFactory, jitsi_web: Any, smtp: FlakyServer
) -> Iterator[GatewayServer]:
    """Sends as fast as the server takes, retries within a second, and never gives up on the
    way (the outage is the test's to end)."""
    mail = (
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "none"\n'
        'sender = "Meetgate <gate@meet.test>"\ntimeout_seconds = 5\n'
        "[outbox]\nper_minute = 100000\nburst = 10000\nretry_seconds = 0.2\n"
        "retry_max_seconds = 1\nmax_attempts = 100\n"
    )
    server, proc = start_gateway(
        tmp_path_factory.mktemp("invite-import-outage"),
        upstream=jitsi_web.url,
        extra=GENEROUS_LIMITS + mail,
    )
    yield server
    stop_process(proc)


def retried(gateway: GatewayServer) -> float:
    with gateway.admin() as admin:
        text = admin.get("/metrics").text
    found = re.search(r"^meetgate_invitations_retried_total (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_an_outage_mid_batch_resumes_and_nobody_gets_two(
    gate: GatewayServer, smtp: FlakyServer, tmp_path: Path
) -> None:
    room = new_room(gate)
    data, good, bad = invitee_list("outage")
    path = tmp_path / "invitees.csv"
    path.write_bytes(data)
    assert len(good) > BEFORE_OUTAGE * 2
    process = subprocess.Popen(
        command(gate, "invite", "import", "--room", room, str(path), "--send"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment(),
    )
    try:
        # The server refuses: the gate is told to try again later.
        wait_until(lambda: smtp.handler.refused > 0, 60, "the mail server refusing")
        refused_at = retried(gate)
        assert refused_at > 0
        # Then it is gone altogether, and the gate keeps trying.
        smtp.stop()
        wait_until(lambda: retried(gate) > refused_at, 30, "a retry with the server gone")
        assert len(smtp.mailbox.messages) < len(good)
        smtp.back()
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    stdout, stderr = out.decode(), err.decode()
    assert process.returncode == 1, stderr
    assert reported(stderr) == bad
    lines = stdout.splitlines()
    assert lines[-1] == f"{len(good)}/{len(good)} sent, 0 failed, 0 waiting"
    # A line per change, the count sent never going back.
    counts = [int(line.split("/", 1)[0]) for line in lines]
    assert counts == sorted(counts) and len(set(lines)) == len(lines)

    addresses = sorted(address for _, address, _ in good.values())
    got: dict[str, int] = {}
    for message in smtp.mailbox.messages:
        for to in message.rcpt_tos:
            got[to] = got.get(to, 0) + 1
    assert sorted(got) == addresses
    assert {to: n for to, n in got.items() if n != 1} == {}
    assert len(invites(gate, room)) == len(good)
    # A link sent after the outage admits its holder.
    last = smtp.mailbox.messages[-1]
    token = last.body.split("/j/", 1)[1].split()[0]
    with httpx.Client(base_url=gate.url, trust_env=False, timeout=30) as browser:
        assert browser.post(f"/j/{token}", headers={"origin": gate.url}).status_code == 303
