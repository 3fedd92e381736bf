"""The room's log of the hosts' issue 19 actions, through the dashboard's invitations page: each
entry keeps what it did as values (how many invitations and refused lines, the meeting's
settings), never a name or an address, and the dashboard's log puts them into words."""

from __future__ import annotations

import json
import time

from gateway.host.dashboard import AUDIT_ACTIONS
from gateway.store.records import AuditFacts, AuditKind, Role, encode_audit
from tests.integration.test_dashboard_registrations import (
    BASE,
    CSV,
    ROOM,
    Desk,
    desk,  # noqa: F401  (the fixture, used by name)
    upload,
    utc_field,
)


async def test_the_hosts_list_and_meeting_are_logged_as_counts_and_values(desk: Desk) -> None:  # noqa: F811
    starts = (time.time() // 60 + 30 * 24 * 60) * 60
    host = await desk.admitted("Hilde Host", Role.HOST)
    async with host:
        answer = await upload(host, desk.csrf(host), CSV, "send")
        saved = await host.post(
            f"{BASE}/meeting",
            data={
                "csrf": desk.csrf(host),
                "registration": "1",
                "auto_approve_domains": "uni.example",
                "starts_at": utc_field(starts),
                "ends_at": utc_field(starts + 3600),
            },
        )
    assert answer.status_code == 200 and saved.status_code == 303
    log = await desk.store.list_audit(ROOM)
    facts = {entry.action: entry.facts for entry in log if entry.action != "view roster"}
    assert facts == {
        "import and send": AuditFacts(AuditKind.INVITATIONS, count=2, refused=3),
        "change auto-approval": AuditFacts(
            AuditKind.AUTO_APPROVAL, domains=("uni.example",), count=0
        ),
        "change meeting time": AuditFacts(
            AuditKind.MEETING_TIME, starts=starts, ends=starts + 3600
        ),
    }
    stored = json.dumps([encode_audit(entry) for entry in log])
    for secret in ("Ada", "ada@", "lilei", "李雷"):
        assert secret not in stored
    assert all(entry.detail == "" for entry in log)
    assert set(facts) <= set(AUDIT_ACTIONS)
