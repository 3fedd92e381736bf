"""bench/attack_figures.py on a synthetic attack: each figure and its verdict from `Events`, and
the report's text."""

from __future__ import annotations

from collections.abc import Sequence

from bench.attack_aftermath import Finding, Leftovers
from bench.attack_events import (
    CHAT_HEARD,
    CHAT_SENT,
    CONNECTED,
    FAULT,
    GUARD_THRESHOLD,
    HOST_REMOVE,
    JOIN_OK,
    JOIN_REFUSED,
    PRESENCE_HEARD,
    RECONNECTED,
    RETRY,
    SOCKET_CLOSED,
    Events,
)
from bench.attack_figures import figures, markdown_report, percentile
from bench.report import Figure

VERIFIED = {"hilde": "Hilde Host", "ada": "Ada", "bo": "Bo"}


class Timeline:
    def __init__(self) -> None:
        self.events = Events()

    def at(self, t: float, kind: str, who: str, detail: str = "", value: float = 0.0) -> None:
        self.events.add(kind, who, detail, value, at=self.events.origin + t)


def attack(*, slow_close: bool = False, alive: bool = False, impersonated: bool = False) -> Events:
    line = Timeline()
    for n, latency in enumerate((0.1, 0.2, 0.3)):
        line.at(1 + n, JOIN_OK, f"attendee-{n}", "quiet", latency)
    for n, latency in enumerate((0.2, 0.4)):
        line.at(60 + n, JOIN_OK, f"attendee-{n}", "attack", latency)
    line.at(62, JOIN_REFUSED, "attendee-2", "attack\t429")
    for troll in ("troll-0", "troll-1"):
        line.at(70, CONNECTED, troll, "a")
    # Troll 0: 3 messages sent, 2 heard by others (one by itself only).
    for n in range(3):
        line.at(71 + n, CHAT_SENT, "troll-0", f"t:0:{n}")
    line.at(71.1, CHAT_HEARD, "attendee-0", "t:0:0")
    line.at(72.1, CHAT_HEARD, "attendee-1", "t:0:1")
    line.at(73.1, CHAT_HEARD, "troll-0", "t:0:2")
    line.at(71, CHAT_SENT, "attendee-0", "m:a0")
    line.at(71.1, CHAT_HEARD, "attendee-1", "m:a0")
    # Troll 0 takes the host's name in a look-alike spelling, heard by attendee-1 (or not).
    shown = "HiIde Host" if impersonated else "Hilde Host (2)"
    line.at(74, PRESENCE_HEARD, "attendee-1", f"troll0\t{shown}")
    line.at(74, PRESENCE_HEARD, "attendee-1", "hilde\tHilde Host")
    # A host removes troll 0 (two sockets), the guard troll 1 (one).
    line.at(80, HOST_REMOVE, "troll-0", "dashboard")
    line.at(80.2, SOCKET_CLOSED, "troll-0", "unasked")
    line.at(81.5 if slow_close else 80.4, SOCKET_CLOSED, "troll-0", "unasked")
    line.at(82, RETRY, "troll-0", "old ticket\trefused")
    line.at(82.5, RETRY, "troll-0", "other replica\t" + ("ALIVE" if alive else "refused"))
    line.at(83, SOCKET_CLOSED, "troll-0", "unasked")  # a retry's socket: not the removal's
    line.at(90, GUARD_THRESHOLD, "troll-1", "30")
    line.at(90.5, SOCKET_CLOSED, "troll-1", "unasked")
    # A failover drops two attendees, who come back; the lockdown's closes are no fault's.
    line.at(100, FAULT, "stage", "failover")
    line.at(100.5, SOCKET_CLOSED, "attendee-0", "unasked")
    line.at(100.6, SOCKET_CLOSED, "attendee-1", "unasked")
    line.at(101.5, RECONNECTED, "attendee-0", "", 1.0)
    line.at(103.6, RECONNECTED, "attendee-1", "", 3.0)
    line.at(110, FAULT, "stage", "lockdown")
    line.at(110.1, SOCKET_CLOSED, "attendee-1", "unasked")
    return line.events


# Each troll's occupant JIDs, as PRESENCE_HEARD names them above.
TROLLS = {"troll-0": {"troll0"}, "troll-1": {"troll1"}}


def by_what(rows: Sequence[object]) -> dict[str, Figure]:
    return {f.what.split(" (")[0].split(",")[0]: f for f in rows if isinstance(f, Figure)}


def test_percentile_is_nearest_rank() -> None:
    assert percentile([3, 1, 2], 50) == 2
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([0.5], 99) == 0.5


def test_figures_of_an_attack_the_gate_held() -> None:
    made = figures(
        attack(),
        verified=VERIFIED,
        attendees={"quiet": 3},
        cpu_per_refusal_ms=0.0421,
        troll_occupants=TROLLS,
    )
    quiet, under = made[0], made[1]
    assert isinstance(quiet, Figure) and isinstance(under, Figure)
    assert quiet.what == "Legitimate joins admitted, quiet run"
    rows = by_what(made)
    assert quiet.meetgate == "3 of 3 (100%)" and quiet.met is True
    assert under.meetgate == "2 of 3 (67%)" and under.met is False
    p50 = rows["Join latency p50"]
    assert p50.meetgate == "200 ms" and p50.baseline == "200 ms (quiet)"
    assert p50.comparison == "1.00x"
    assert rows["Join latency p99"].comparison == "1.33x"
    host = rows["Host's Remove on the dashboard -> troll's sockets closed"]
    assert host.meetgate == "p50 400 ms, p99 400 ms (1 removals)" and host.met is True
    guard = rows["Wire guard threshold -> sockets closed"]
    assert guard.meetgate == "p50 500 ms, p99 500 ms (1 removals)" and guard.met is True
    alive = rows["Troll sessions alive after their removal"]
    assert alive.meetgate == "0 of 2 retries" and alive.met is True
    seen = rows["Occupants who saw an impersonated name"]
    assert seen.meetgate == "0 (0 of 2 presences, 1 of them trolls')" and seen.met is True
    chat = rows["Troll chat messages that reached others"]
    # Budget: each troll's burst (10) and 5 per 10 s over its time inside (troll-0 70..83 s,
    # troll-1 70..90.5 s).
    assert chat.meetgate == "2 of 3 sent" and chat.baseline == "budgets 37 in all"
    assert chat.met is True
    faults = rows["Attendees disconnected by the faults"]
    assert faults.what.startswith("Attendees disconnected by the faults (failover)")
    assert faults.meetgate == "2 disconnected, 2 back" and faults.met is True
    assert faults.comparison == "back in p50 1.00 s, max 3.00 s"
    assert rows["Gate CPU per refused attempt"].meetgate == "0.042 ms"


def test_each_failure_is_a_missed_goal() -> None:
    made = figures(
        attack(slow_close=True, alive=True, impersonated=True),
        verified=VERIFIED,
        troll_occupants=TROLLS,
    )
    rows = by_what(made)
    host = rows["Host's Remove on the dashboard -> troll's sockets closed"]
    assert host.meetgate.startswith("p50 1,500 ms") and host.met is False
    alive = rows["Troll sessions alive after their removal"]
    assert alive.meetgate == "1 of 2 retries (back by other replica)" and alive.met is False
    seen = rows["Occupants who saw an impersonated name"]
    assert seen.meetgate == "1 (1 of 2 presences, 1 of them trolls')" and seen.met is False


def test_a_removal_whose_sockets_never_close_is_missed() -> None:
    line = Timeline()
    line.at(1, HOST_REMOVE, "troll-0", "cli")
    line.at(2, RETRY, "troll-0", "old ticket\trefused")
    line.at(3, SOCKET_CLOSED, "troll-0", "unasked")
    rows = by_what(figures(line.events))
    cli = rows["`meetgate room remove` started -> troll's sockets closed"]
    assert cli.meetgate.endswith("1 never closed") and cli.met is False
    # No removal from the dashboard at all: its goal is not met either.
    dashboard = rows["Host's Remove on the dashboard -> troll's sockets closed"]
    assert dashboard.meetgate == "no removal" and dashboard.met is False


def test_the_report_shows_figures_leftovers_evidence_and_the_stage() -> None:
    rows = figures(attack(alive=True), verified=VERIFIED)
    leftovers = Leftovers(
        secrets=[Finding("log:gate-b.log:12", "address")],
        lifetimes=[Finding("meetgate:admission:x", "no TTL (bound: [admission] ttl_seconds)")],
        keys=120,
        log_lines=3400,
    )
    text = markdown_report(
        rows,
        leftovers,
        [("removals and bans", 2, 2), ("guard removals", 0, 1)],
        ["prosody logs in anonymously: the ticket is enforced by the gate only"],
        "python -m bench.attack_replay --quick",
    )
    assert text.startswith("- Command: `python -m bench.attack_replay --quick`")
    assert "| Troll sessions alive after their removal | 1 of 2 retries" in text
    assert "Goals missed: " in text and "Troll sessions alive after their removal" in text
    assert "120 Redis keys and 3,400 log lines scanned" in text
    assert (
        "- **1 holding a secret and outliving its TTLs**" in text
        and "`log:gate-b.log:12`: address" in text
    )
    assert "| removals and bans | 2 | 2 | equal |" in text
    assert "| guard removals | 0 | 1 | **differs** |" in text
    assert "- prosody logs in anonymously" in text
    clean = markdown_report(figures(attack()), Leftovers(keys=3), [], [], "x")
    assert "3 Redis keys and 0 log lines scanned." in clean
    assert "Nothing left once the TTLs pass" in clean
    assert "No evidence export was compared." in clean
