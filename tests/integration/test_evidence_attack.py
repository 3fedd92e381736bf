"""Issue 17's "done when" for the evidence log, through the real gate on a real Redis: a meeting
is flooded (joins refused by the rate limits, from several networks), a look-alike of its host's
name is refused, its host removes, bans, locks and quiets through the dashboard and an admin
through the admin API; the room's hosts download its evidence from the dashboard, an admin
exports it with `meetgate evidence export`; both verify with `meetgate evidence verify`, and
flipping any byte fails verification, naming the entry where the byte was."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.evidence.export import verify_export
from tests.fixtures.gateway_server import GENEROUS_LIMITS, GatewayServer, start_gateway
from tests.fixtures.in_process import in_process_gateway
from tests.fixtures.processes import stop_process, wait_until
from tests.fixtures.redis_server import RedisProcess, start_redis
from tests.integration.journeys import Admitted, admission_id, admit, host_action, new_room

pytestmark = pytest.mark.slow

# Joins are tight per address and network; rooms, the gate and invites are not.
RATES = """
[rates]
address = { per_minute = 60, burst = 4 }
network = { per_minute = 60, burst = 8 }
room = { per_minute = 1000000, burst = 100000 }
identity = { per_minute = 1000000, burst = 100000 }
invite = { per_minute = 1000000, burst = 100000 }
gate = { per_minute = 1000000, burst = 100000 }
[challenge]
mode = "off"
"""
# The networks the flood comes from, as the trusted proxy (127.0.0.1) reports them.
FLOOD_NETWORKS = ("198.51.100.", "203.0.113.")


def meetgate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("MEETGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**env, "HOME": str(cwd)},
        check=False,
    )


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    process = start_redis(tmp_path / "redis")
    try:
        yield process
    finally:
        stop_process(process.proc)


def start(tmp_path: Path, redis: RedisProcess, upstream: str) -> tuple[GatewayServer, Any]:
    key = tmp_path / "evidence-key.pem"
    if not key.exists():
        made = meetgate("evidence", "key", "--generate", str(key), cwd=tmp_path)
        assert made.returncode == 0, made.stderr
    return start_gateway(
        tmp_path / "gateway",
        upstream=upstream,
        store_url=redis.url,
        top='trusted_proxies = ["127.0.0.1/32"]',
        extra=RATES + f'[evidence]\nkey_file = "{key}"\nsign_every = 3\n',
    )


def flood(gateway: GatewayServer, room: str) -> int:
    """Join attempts on the room's invite link from two networks until they are refused; how
    many were refused."""
    made = gateway.create_invite(room, "Shared link", max_uses=1000)
    token = gateway.invite_token(made)
    refused = 0
    with gateway.client() as client:
        for network in FLOOD_NETWORKS:
            for host in range(1, 21):
                # Each attempt a browser of its own: one admitted through the link and sending
                # the form again would go back in as itself, uncharged (gateway/web/join.py).
                client.cookies.clear()
                response = client.post(
                    f"/j/{token}",
                    headers={"origin": gateway.url, "x-forwarded-for": f"{network}{host}"},
                )
                refused += response.status_code == 429
    return refused


def download(gateway: GatewayServer, host: Admitted, **headers: str) -> httpx.Response:
    """The host's download, once past its cool-down (a host downloads once in a few seconds)."""
    answers: list[httpx.Response] = []

    def answered() -> bool:
        with gateway.client(cookies=host.cookies) as client:
            answers.append(client.get(f"/_meetgate/host/{host.room}/evidence", headers=headers))
        return answers[-1].status_code != 429

    wait_until(answered, what="the evidence download, past its cool-down")
    return answers[-1]


def download_once(gateway: GatewayServer, host: Admitted, **headers: str) -> httpx.Response:
    with gateway.client(cookies=host.cookies) as client:
        return client.get(f"/_meetgate/host/{host.room}/evidence", headers=headers)


def entries_of(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines() if b'"prev"' in line]


def check_every_byte(data: bytes, path: Path, cwd: Path) -> None:
    """Any flipped byte fails; in an entry's line, the failure names that entry (the CLI's
    message for one byte of each entry, in-process for every byte)."""
    lines = data.split(b"\n")
    starts, offset = [], 0
    for line in lines:
        starts.append(offset)
        offset += len(line) + 1
    for index in range(len(data)):
        flipped = bytearray(data)
        flipped[index] ^= 0x01
        verdict = verify_export(bytes(flipped))
        assert not verdict.valid, f"byte {index} flipped still verifies"
    for number, line in enumerate(lines):
        if b'"prev"' not in line:
            continue
        seq = json.loads(line)["seq"]
        flipped = bytearray(data)
        flipped[starts[number] + len(line) // 2] ^= 0x01
        path.write_bytes(bytes(flipped))
        checked = meetgate("evidence", "verify", str(path), cwd=cwd)
        assert checked.returncode == 1, checked.stdout + checked.stderr
        assert f"seq {seq}" in checked.stdout, checked.stdout


def test_a_flooded_and_moderated_meeting_exports_verifies_and_every_byte_counts(
    tmp_path: Path, jitsi_web: Any, redis_process: RedisProcess
) -> None:
    gateway, proc = start(tmp_path, redis_process, jitsi_web.url)
    try:
        room = new_room(gateway)
        host = admit(gateway, room, "Hilde Host", role="host")
        troll = admit(gateway, room, "Troll")
        admit(gateway, room, "Troll Two")
        # A look-alike of the host's name: shown only with a number, and recorded.
        gateway.create_invite(room, "Hilde Host", role="host")
        admit(gateway, room, "H1lde Host")
        assert flood(gateway, room) >= 20
        # The dashboard: a removal with the shown name kept, a ban without it, a lock.
        assert host_action(
            gateway, host, "revoke", admission=admission_id(gateway, host, "Troll"), record_name="1"
        )["done"]
        ban = host_action(
            gateway,
            host,
            "ban",
            admission=admission_id(gateway, host, "Troll Two"),
            duration="forever",
        )
        assert ban["done"]
        assert host_action(gateway, host, "lock")["done"]
        # The admin API: quiet mode.
        with gateway.admin() as admin:
            assert admin.patch(f"/api/v1/rooms/{room}", json={"quiet": True}).status_code == 200

        # The hosts' download, once the recorder has appended what was done.
        def recorded() -> bool:
            got = download(gateway, host)
            return got.status_code == 200 and b'"quiet on"' in got.content

        wait_until(recorded, what="the dashboard's export to hold the host actions")
        got = download(gateway, host)
        assert got.headers["content-type"].startswith("application/x-ndjson")
        disposition = got.headers["content-disposition"]
        assert re.fullmatch(
            rf'attachment; filename="{room}-evidence-\d{{8}}T\d{{6}}Z\.jsonl"', disposition
        ), disposition
        assert got.headers["cache-control"] == "no-store"
        from_dashboard = tmp_path / "dashboard.jsonl"
        from_dashboard.write_bytes(got.content)
        checked = meetgate("evidence", "verify", str(from_dashboard), cwd=tmp_path)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        kinds = [entry["kind"] for entry in entries_of(got.content)]
        # (Refused names are counted per network and minute: written at the minute's end, or
        # the stop's, below.)
        for kind in ("removal", "ban", "lock", "quiet on"):
            assert kind in kinds, kinds
        # Only the room's hosts, and only from the gate's own pages.
        assert download(gateway, troll).status_code in (401, 403)
        assert download(gateway, host, **{"sec-fetch-site": "cross-site"}).status_code == 403
        with gateway.client() as client:
            assert client.get(f"/_meetgate/host/{room}/evidence").status_code in (401, 403)
    finally:
        # The stop drains the recorder: the flood's counts of this minute go in too.
        stop_process(proc)

    exported = tmp_path / "cli.jsonl"
    written = meetgate(
        "evidence",
        "export",
        "--config",
        str(gateway.config_path),
        "--room",
        room,
        "--output",
        str(exported),
        cwd=tmp_path,
    )
    assert written.returncode == 0, written.stdout + written.stderr
    data = exported.read_bytes()
    checked = meetgate("evidence", "verify", str(exported), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    entries = entries_of(data)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_kind.setdefault(entry["kind"], []).append(entry["fields"])
    floods = by_kind["flood refused"]
    assert len({f["network"] for f in floods}) == len(FLOOD_NETWORKS)
    assert sum(f["count"] for f in floods) >= 20
    (named,) = by_kind["name refused"]
    assert named["reason"] == "looks-like-a-host" and named["count"] == 1
    (removal,) = by_kind["removal"]
    assert removal["name"] == "Troll"
    (banned,) = by_kind["ban"]
    assert "name" not in banned and banned["until"] is None
    assert banned["actor"] == removal["actor"] != by_kind["quiet on"][0]["actor"]
    # Nothing of the attendees but pseudonyms and the one name the host chose to keep.
    text = data.decode()
    for never in ("Troll Two", "H1lde", "198.51.100", "203.0.113", "127.0.0.1"):
        assert never not in text, never
    check_every_byte(data, tmp_path / "flipped.jsonl", tmp_path)


def test_only_the_rooms_live_hosts_download_its_evidence(tmp_path: Path, jitsi_web: Any) -> None:
    with in_process_gateway(tmp_path / "gate", upstream=jitsi_web.url) as gateway:
        room, other = new_room(gateway), new_room(gateway)
        host = admit(gateway, room, "Hilde Host", role="host")
        other_host = admit(gateway, other, "Olga Host", role="host")
        attendee = admit(gateway, room, "Ada")
        assert download(gateway, host).status_code == 200
        # A host of another room, an attendee, nobody, a host from another site.
        for refused in (
            download(gateway, Admitted(room, other_host.ticket, other_host.cookie)),
            download(gateway, attendee),
            download(gateway, Admitted(room, "", "x" * 43)),
            download(gateway, host, **{"sec-fetch-site": "same-site"}),
            download(gateway, host, origin="https://elsewhere.example"),
        ):
            assert refused.status_code in (401, 403), refused.text
            assert b'"prev"' not in refused.content
        with gateway.client(cookies=host.cookies) as client:
            # Not an action: nothing is done by posting to it, nor by another room's name.
            posted = client.post(
                f"/_meetgate/host/{room}/evidence",
                data={"csrf": "x"},
                headers={"origin": gateway.url},
            )
            assert posted.status_code == 404
            for bad in ("../../etc", "%2e%2e", "Board", "a" * 65):
                assert client.get(f"/_meetgate/host/{bad}/evidence").status_code in (403, 404)


def test_the_start_says_once_what_will_not_outlive_the_process(
    tmp_path: Path, jitsi_web: Any
) -> None:
    gateway, proc = start_gateway(tmp_path / "memory", upstream=jitsi_web.url)
    try:
        wait_until(lambda: "kept in memory" in gateway.log_text(), what="the start's warning")
    finally:
        stop_process(proc)
    log = gateway.log_text()
    assert log.count("the evidence log is kept in memory") == 1
    assert log.count("no [evidence] key_file") == 1
    key = tmp_path / "key.pem"
    assert meetgate("evidence", "key", "--generate", str(key), cwd=tmp_path).returncode == 0
    kept = f'[evidence]\nkey_file = "{key}"\ndirectory = "{tmp_path / "evidence"}"\n'
    gateway, proc = start_gateway(
        tmp_path / "files", upstream=jitsi_web.url, extra=GENEROUS_LIMITS + kept
    )
    stop_process(proc)
    assert "evidence" not in gateway.log_text()


def test_a_download_clicked_again_is_told_to_wait(tmp_path: Path, jitsi_web: Any) -> None:
    with in_process_gateway(tmp_path / "gate", upstream=jitsi_web.url) as gateway:
        room = new_room(gateway)
        host = admit(gateway, room, "Hilde Host", role="host")
        other = admit(gateway, room, "Olga Host", role="host")
        assert download(gateway, host).status_code == 200
        again = download_once(gateway, host)
        assert again.status_code == 429
        assert 1 <= int(again.headers["retry-after"]) <= 3
        assert b"being prepared" in again.content and b'"prev"' not in again.content
        as_json = download_once(gateway, host, accept="application/json")
        assert as_json.status_code == 429
        assert as_json.json()["error"] == "evidence_being_prepared"
        # Another host of the room has a cool-down of their own.
        assert download_once(gateway, other).status_code == 200


def test_a_room_made_again_under_a_deleted_rooms_name_exports_its_own_evidence(
    tmp_path: Path, jitsi_web: Any
) -> None:
    with in_process_gateway(tmp_path / "gate", upstream=jitsi_web.url) as gateway:
        room = "book-club"
        gateway.create_room(room)
        host = admit(gateway, room, "Hilde Host", role="host")
        admit(gateway, room, "Secret Name")
        removed = admission_id(gateway, host, "Secret Name")
        assert host_action(gateway, host, "revoke", admission=removed, record_name="1")["done"]
        wait_until(
            lambda: b"Secret Name" in download(gateway, host).content, what="the removal recorded"
        )
        with gateway.admin() as admin:
            assert admin.delete(f"/api/v1/rooms/{room}").status_code == 204
        gateway.create_room(room)
        new_host = admit(gateway, room, "Someone Else", role="host")
        assert host_action(gateway, new_host, "lock")["done"]

        seen: list[list[str]] = []

        def locked() -> bool:
            seen.append([e["kind"] for e in entries_of(download(gateway, new_host).content)])
            return seen[-1] == ["lock"]

        # The new room's hosts get the new room's entries only, never the old room's names.
        try:
            wait_until(locked, what="the new room's lock, alone, in its download")
        except TimeoutError:
            raise AssertionError(f"the new room's download held {seen[-1]}") from None
        got = download(gateway, new_host)
        assert b"Secret Name" not in got.content
        assert verify_export(got.content).valid


def test_a_flood_of_a_rooms_gate_page_goes_in_that_rooms_evidence(
    tmp_path: Path, redis_process: RedisProcess, jitsi_web: Any
) -> None:
    """The gate page is charged before its room is looked up (the limits do not tell which
    rooms exist), and the gate answers an out-of-budget network itself: its refusals all the
    same go in the evidence of the room the page is of, never in another room's (an earlier
    refusal's) nor in a chain of a made-up name (issue 17 review 2)."""
    gateway, proc = start(tmp_path, redis_process, jitsi_web.url)
    try:
        board, other = new_room(gateway), new_room(gateway)
        # The room's host is in (the replica has seen the room exist by their join).
        admit(gateway, board, "Hilde Host", role="host")
        refused = {board: 0, other: 0, "no-such-room": 0}
        with gateway.client() as client:
            # The other room's page first, from the same networks: what they sent next must not
            # be counted there.
            for room in (other, board, "no-such-room"):
                for network in FLOOD_NETWORKS:
                    for host in range(1, 21):
                        response = client.get(
                            f"/_meetgate/enter/{room}",
                            headers={"x-forwarded-for": f"{network}{host}"},
                        )
                        refused[room] += response.status_code == 429
    finally:
        stop_process(proc)
    assert refused[board] == 40 and refused[other] > 0, refused
    counted = {}
    for room in (board, other, "no-such-room"):
        exported = tmp_path / f"{room}.jsonl"
        written = meetgate(
            "evidence",
            "export",
            "--config",
            str(gateway.config_path),
            "--room",
            room,
            "--output",
            str(exported),
            cwd=tmp_path,
        )
        if room == "no-such-room":
            assert "no evidence for room" in written.stdout + written.stderr
            continue
        assert written.returncode == 0, written.stdout + written.stderr
        entries = entries_of(exported.read_bytes())
        counted[room] = sum(e["fields"]["count"] for e in entries if e["kind"] == "flood refused")
    assert counted == {board: refused[board], other: refused[other]}


def test_after_a_move_its_hosts_download_the_evidence_of_what_made_them_move(
    tmp_path: Path, jitsi_web: Any
) -> None:
    with in_process_gateway(tmp_path / "gate", upstream=jitsi_web.url) as gateway:
        room = new_room(gateway)
        host = admit(gateway, room, "Hilde Host", role="host")
        admit(gateway, room, "Troll")
        removed = admission_id(gateway, host, "Troll")
        assert host_action(gateway, host, "revoke", admission=removed, record_name="1")["done"]
        wait_until(lambda: b"Troll" in download(gateway, host).content, what="the removal")
        moved = host_action(gateway, host, "move")
        new = moved["room"]
        mover = Admitted(new, host.ticket, host.cookie)

        def both() -> bool:
            kinds = [e["kind"] for e in entries_of(download(gateway, mover).content)]
            return kinds == ["move in"]

        wait_until(both, what="the new room's first entry, its move in")
        (move_in,) = entries_of(download(gateway, mover).content)
        # The old room: downloaded by the host who moved with the meeting (they know its name).
        old = download(gateway, host)
        assert old.status_code == 200, old.text
        assert verify_export(old.content).valid
        old_entries = entries_of(old.content)
        assert [e["kind"] for e in old_entries] == ["removal", "move"]
        assert old_entries[0]["fields"]["name"] == "Troll"
        # The new room's chain names the old room's move entry, not the old room.
        move = old_entries[1]
        old_line = next(line for line in old.content.splitlines() if b'"kind":"move"' in line)
        assert move_in["fields"]["from_seq"] == move["seq"]
        assert move_in["fields"]["from_hash"] == hashlib.sha256(old_line).hexdigest()
        assert set(move_in["fields"]) == {"actor", "from_seq", "from_hash"}
        # A host who came into the new room after the move has no way to the old one's.
        later = admit(gateway, new, "Later Host", role="host")
        refused = download_once(gateway, Admitted(room, later.ticket, later.cookie))
        assert refused.status_code in (401, 403) and b'"prev"' not in refused.content
