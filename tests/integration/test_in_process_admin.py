"""The in-process gateway (tests/fixtures/in_process.py) as `meetgate serve` builds it: its admin
API uses the gate's own invitation outbox, so an import sent through the admin API goes out with
the gate's sending loop at once, not at its next look at the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.admission import outbox
from tests.fixtures.gateway_server import GENEROUS_LIMITS
from tests.fixtures.in_process import in_process_gateway
from tests.fixtures.smtp import SmtpServer, start_smtp


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = start_smtp()
    yield server
    server.stop()


def test_an_import_through_the_admin_api_is_sent_by_the_gates_loop(
    tmp_path: Path, smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches an admin API with an outbox of its own: the gate's loop, told nothing, would
    look at the store only after POLL_SECONDS (an hour here), and nobody would be sent the
    invitation meanwhile."""
    monkeypatch.setattr(outbox, "POLL_SECONDS", 3600.0)
    mail = (
        f'[smtp]\nhost = "{smtp.host}"\nport = {smtp.port}\nsecurity = "none"\n'
        "[outbox]\nper_minute = 100000\nburst = 1000\n"
    )
    with in_process_gateway(
        tmp_path, upstream="http://127.0.0.1:9", extra=GENEROUS_LIMITS + mail
    ) as gateway:
        with gateway.admin() as admin:
            made = admin.post("/api/v1/rooms", json={"name": "board"})
            assert made.status_code in (200, 201), made.text
            sent = admin.post(
                "/api/v1/rooms/board/invites/import",
                json={"csv": "Ada Lovelace,ada@example.org\n", "send": True},
            )
            assert sent.status_code == 200, sent.text
        (received,) = smtp.mailbox.wait_for("ada@example.org", 1, timeout=30)
        assert "/j/" in received.body
