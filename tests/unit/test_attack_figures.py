"""bench/attack_figures.py on a synthetic attack: each figure and its verdict from `Events`, and
the report's text."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bench.attack_aftermath import Finding, Leftovers
from bench.attack_events import (
    BENCH_ERROR,
    CHAT_HEARD,
    CHAT_SENT,
    CONNECTED,
    FAULT,
    GUARD_THRESHOLD,
    HOST_REMOVE,
    IMPERSONATION,
    JOIN_OK,
    JOIN_REFUSED,
    LEFT_HEARD,
    PRESENCE_HEARD,
    RECONNECTED,
    RETRY,
    SOCKET_CLOSED,
    Events,
)
from bench.attack_figures import figures, markdown_report, percentile, resource_lookalikes
from bench.report import Figure

VERIFIED = {"hilde": "Hilde Host", "ada": "Ada", "bo": "Bo"}


class Timeline:
    def __init__(self) -> None:
        self.events = Events()

    def at(self, t: float, kind: str, who: str, detail: str = "", value: float = 0.0) -> None:
        self.events.add(kind, who, detail, value, at=self.events.origin + t)


def attack(
    *,
    slow_close: bool = False,
    alive: bool = False,
    impersonated: bool = False,
    left_after: float | None = 0.5,
    reflected: str = "verified",
    chatty: int = 0,
    resource: bool = False,
    cut: str | None = None,
    bench_error: bool = False,
) -> Events:
    """A synthetic attack the gate held; each flag puts one failure in it. `left_after`: seconds
    after troll 0's removal attendee-1 hears it leave (None: never); `reflected`: what the room
    reflected to troll 0's nick impersonation; `chatty`: more of troll 0's messages heard by
    attendee-0; `resource`: a troll rejoined with the host's name as its occupant resource;
    `cut`: the gate cut attendee-2 with this close detail; `bench_error`: the bench lost sight
    of troll 1's guard threshold."""
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
    # What the room reflected to troll 0's attempts: a status URL passing is no failure.
    line.at(74.2, IMPERSONATION, "troll-0", f"nick\t{reflected}")
    line.at(74.3, IMPERSONATION, "troll-0", "trackers\tverified; status URL passed")
    if resource:
        # A troll back with "HiIde Host" as its occupant resource (Jitsi shows its verified
        # nick); what a troll hears is no legitimate client's view.
        line.at(74.5, PRESENCE_HEARD, "attendee-0", "room@muc/HiIde Host\tTrudy")
        line.at(74.5, PRESENCE_HEARD, "troll-1", "room@muc/H1lde Host\tTrudy")
    for n in range(chatty):
        line.at(75 + n / 10, CHAT_SENT, "troll-0", f"t:0:x{n}")
        line.at(75.05 + n / 10, CHAT_HEARD, "attendee-0", f"t:0:x{n}")
    # Troll 0 heard leaving before its removal (a rejoin) proves nothing; after it, seen gone.
    line.at(77, LEFT_HEARD, "attendee-1", "troll0")
    if left_after is not None:
        line.at(80 + left_after, LEFT_HEARD, "attendee-1", "troll0")
    # A host removes troll 0 (two sockets), the guard troll 1 (one).
    line.at(80, HOST_REMOVE, "troll-0", "dashboard")
    line.at(80.2, SOCKET_CLOSED, "troll-0", "cut:revoked")  # a troll's cut: not a wrong one
    line.at(81.5 if slow_close else 80.4, SOCKET_CLOSED, "troll-0", "unasked")
    line.at(82, RETRY, "troll-0", "old ticket\trefused")
    line.at(82.5, RETRY, "troll-0", "other replica\t" + ("ALIVE" if alive else "refused"))
    line.at(83, SOCKET_CLOSED, "troll-0", "unasked")  # a retry's socket: not the removal's
    line.at(90, GUARD_THRESHOLD, "troll-1", "30")
    if bench_error:
        line.at(90.1, BENCH_ERROR, "troll-1", "guard threshold\tnot seen")
    line.at(90.5, SOCKET_CLOSED, "troll-1", "unasked")
    # A failover drops two attendees, who come back; the lockdown's closes are no fault's.
    line.at(100, FAULT, "stage", "failover")
    line.at(100.5, SOCKET_CLOSED, "attendee-0", "unasked")
    line.at(100.6, SOCKET_CLOSED, "attendee-1", "unasked")
    line.at(101.5, RECONNECTED, "attendee-0", "", 1.0)
    line.at(103.6, RECONNECTED, "attendee-1", "", 3.0)
    line.at(110, FAULT, "stage", "lockdown")
    line.at(110.1, SOCKET_CLOSED, "attendee-1", "unasked")
    line.at(110.2, SOCKET_CLOSED, "attendee-0", "cut:lockdown")  # asked for: not a wrong cut
    if cut is not None:
        line.at(105, SOCKET_CLOSED, "attendee-2", cut)
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
    left = rows["Removed trolls seen leaving by those who had seen them"]
    assert left.meetgate == "1 of 1; p50 500 ms, p99 500 ms" and left.met is True
    assert "reflected to the troll" not in seen.meetgate and "resource" not in seen.meetgate
    cut = rows["Legitimate people cut by the gate"]
    assert cut.meetgate == "0" and cut.met is True
    errors = rows["The bench's own failures"]
    assert errors.meetgate == "0" and errors.met is True


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


def rows_of(events: Events) -> dict[str, Figure]:
    return by_what(figures(events, verified=VERIFIED, troll_occupants=TROLLS))


LEFT = "Removed trolls seen leaving by those who had seen them"


def test_a_removed_troll_not_seen_leaving_is_missed() -> None:
    # Its leave heard before the removal only (the fixture's rejoin) does not count.
    never = rows_of(attack(left_after=None))[LEFT]
    assert never.meetgate == "0 of 1; p50 —, p99 —" and never.met is False
    late = rows_of(attack(left_after=3.0))[LEFT]
    assert late.meetgate == "1 of 1; p50 3,000 ms, p99 3,000 ms" and late.met is False
    # Of two who saw it, one saw it go.
    half = attack()
    half.add(PRESENCE_HEARD, "attendee-0", "troll0\tTrudy", at=half.origin + 74)
    one = rows_of(half)[LEFT]
    assert one.meetgate == "1 of 2; p50 500 ms, p99 500 ms" and one.met is False
    on_time = rows_of(attack(left_after=2.0))[LEFT]
    assert on_time.meetgate.startswith("1 of 1") and on_time.met is True
    # No listener heard any troll: nothing was checked, so nothing is met.
    unheard = by_what(figures(attack(), verified=VERIFIED))[LEFT]
    assert unheard.meetgate.startswith("0 of 0") and unheard.met is False


def test_an_attendee_cut_by_the_gate_other_than_as_asked_is_missed() -> None:
    cut = rows_of(attack(cut="cut:revoked"))["Legitimate people cut by the gate"]
    assert cut.meetgate == "1 (cut:revoked)" and cut.met is False
    unknown = rows_of(attack(cut="cut:unknown"))["Legitimate people cut by the gate"]
    assert unknown.meetgate == "1 (cut:unknown)" and unknown.met is False
    # A close of the attendee's own is no cut of the gate's.
    own = rows_of(attack(cut="asked"))["Legitimate people cut by the gate"]
    assert own.meetgate == "0" and own.met is True


def test_a_failure_of_the_bench_itself_is_missed() -> None:
    made = figures(attack(bench_error=True), verified=VERIFIED, troll_occupants=TROLLS)
    errors = by_what(made)["The bench's own failures"]
    assert errors.meetgate == "1 (guard threshold\tnot seen)" and errors.met is False
    missed = markdown_report(made, Leftovers(), [], [], "x").partition("Goals missed: ")[2]
    assert "The bench's own failures (a figure around one cannot be trusted)" in missed


def test_a_troll_over_its_own_chat_budget_is_missed_though_all_are_within_theirs() -> None:
    # Troll 0's budget is 16.5 (70..83 s), troll 1's 20.25: 17 of troll 0's heard is over its
    # own, though under the 37 of both.
    over = rows_of(attack(chatty=15))["Troll chat messages that reached others"]
    assert over.meetgate == "17 of 18 sent; over budget: troll-0" and over.met is False
    assert over.baseline == "budgets 37 in all"
    within = rows_of(attack(chatty=14))["Troll chat messages that reached others"]
    assert within.meetgate == "16 of 17 sent" and within.met is True


@pytest.mark.parametrize(
    "reflected",
    ["FORGED", "verified; KEPT avatar-url,email", "verified; MUC nick changed"],
)
def test_an_impersonation_the_room_reflected_is_missed(reflected: str) -> None:
    seen = rows_of(attack(reflected=reflected))["Occupants who saw an impersonated name"]
    assert seen.meetgate.startswith("0 (0 of 2 presences, 1 of them trolls')")
    assert seen.meetgate.endswith(f"; reflected to the troll: nick\t{reflected}")
    assert seen.met is False


def test_an_occupant_address_with_a_hosts_name_is_reported() -> None:
    events = attack(resource=True)
    # The host's own address holding its name is no look-alike.
    events.add(PRESENCE_HEARD, "attendee-1", "room@muc/Hilde Host\tHilde Host")
    verified = {**VERIFIED, "room@muc/Hilde Host": "Hilde Host"}
    assert resource_lookalikes(events, verified, "troll") == {"room@muc/HiIde Host"}
    made = figures(events, verified=verified, troll_occupants=TROLLS)
    seen = by_what(made)["Occupants who saw an impersonated name"]
    assert seen.meetgate.endswith(
        "; 1 occupant address(es) with another's name as their resource, shown by non-Jitsi "
        "XMPP clients only"
    )
    # Known, and not what a Jitsi user sees: not a missed goal of its own.
    assert seen.met is True
    assert resource_lookalikes(attack(), VERIFIED, "troll") == set()


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


def test_the_report_names_each_familys_longest_time_left() -> None:
    expiring = [
        Finding("meetgate:admission:a1", "name, gone with its key within 40 s"),
        Finding("meetgate:admission:a2", "name, gone with its key within 1,200 s"),
        Finding("meetgate:admission:a3", "name, gone with its key within 2.0 hours"),
        Finding("meetgate:admission:a4", "name, gone with its key within 1.5 days"),
        Finding("meetgate:admission:a5", "name, gone with its key within 12.0 hours"),
        # A time left that cannot be read counts as none.
        Finding("meetgate:invite:i0", "address, gone with its key soon"),
        Finding("meetgate:invite:i1", "address, gone with its key within 1,200 s"),
        Finding("meetgate:invite:i2", "address, gone with its key within 900 s"),
    ]
    text = markdown_report([], Leftovers(expiring=expiring), [], [], "x")
    assert "- **8 keys holding a name or an address until their own TTL**" in text
    # Read as durations, not as text ("40 s" > "2.0 hours" > "1.5 days" as strings).
    families = [line for line in text.splitlines() if line.startswith("  - `meetgate:")]
    assert families == [
        "  - `meetgate:admission:*`: 5 keys with a name, gone with its key within 1.5 days",
        "  - `meetgate:invite:*`: 3 keys with a address, gone with its key within 1,200 s",
    ]
