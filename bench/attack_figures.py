"""The attack replay's figures (issue 20's "What it measures"), each computed from `Events` alone,
and the Markdown report that shows them with what was left behind and the evidence's counts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

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
    Event,
    Events,
)
from bench.report import Figure, Goal
from gateway.admission.names import skeleton

TROLL_MARKER = "t:"  # a troll's chat marker's prefix (a legitimate one's is "m:")
# Faults that close attendees' sockets the scenario did not ask to close; a lockdown or a move
# closes them on purpose.
INFRASTRUCTURE_FAULTS = ("failover", "kill-b")
# A removed troll heard this long after its removal counts as alive (in flight before it).
HEARD_GRACE = 1.0


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in 0..100) of `values`; NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _ms(seconds: float) -> str:
    return "—" if math.isnan(seconds) else f"{seconds * 1000:,.0f} ms"


def _seconds(seconds: float) -> str:
    return "—" if math.isnan(seconds) else f"{seconds:,.2f} s"


def _is_troll(who: str, troll_prefix: str) -> bool:
    return who.startswith(troll_prefix)


# ---------------------------------------------------------------- joins


def _refusal_phase(event: Event, attack_phase: str) -> tuple[str, str]:
    """(phase, status) of a JOIN_REFUSED: its detail is "<phase>\\t<status>", or the status
    alone (then counted against the attack)."""
    phase, tab, status = event.detail.partition("\t")
    return (phase, status) if tab else (attack_phase, event.detail)


def _joins(events: Events, phase: str, attack_phase: str, expected: int | None) -> Figure:
    admitted = {e.who for e in events.of(JOIN_OK) if e.detail == phase}
    refused = {
        e.who for e in events.of(JOIN_REFUSED) if _refusal_phase(e, attack_phase)[0] == phase
    }
    tried = expected if expected is not None else len(admitted | refused)
    share = f"{len(admitted) / tried:.0%}" if tried else "—"
    figure = f"{len(admitted)} of {tried} ({share})"
    waited = admitted & refused
    if waited:
        # Refused first (429), in after waiting the Retry-After the page gave, as a person does.
        figure += f"; {len(waited)} of them refused first and in after the wait it named"
    return Figure(
        what=f"Legitimate joins admitted, {phase} run",
        meetgate=figure,
        baseline="—",
        comparison="—",
        target="100%",
        met=tried > 0 and len(admitted) >= tried,
    )


def _latency(events: Events, phase: str) -> list[float]:
    return [e.value for e in events.of(JOIN_OK) if e.detail == phase]


def _join_latency(events: Events, quiet_phase: str, attack_phase: str) -> list[Figure]:
    quiet, attack = _latency(events, quiet_phase), _latency(events, attack_phase)
    rows = []
    for q in (50, 99):
        under, calm = percentile(attack, q), percentile(quiet, q)
        ratio = under / calm if calm and not math.isnan(under + calm) else math.nan
        rows.append(
            Figure(
                what=f"Join latency p{q}, {attack_phase} run vs {quiet_phase} run",
                meetgate=_ms(under),
                baseline=f"{_ms(calm)} ({quiet_phase})",
                comparison="—" if math.isnan(ratio) else f"{ratio:.2f}x",
            )
        )
    return rows


# ---------------------------------------------------------------- removals


def closing_times(
    events: Events, start_kind: str, via: str | None = None
) -> tuple[list[float], int]:
    """For each `start_kind` event (a host's removal, the guard's threshold; of those whose
    detail is `via` if given), the seconds until the last of that troll's sockets closed after
    it and before its first retry; and how many removals saw no socket close."""
    times, never = [], 0
    for start in events.of(start_kind):
        if via is not None and start.detail != via:
            continue
        retries = [e.at for e in events.of(RETRY, start.who) if e.at >= start.at]
        until = min(retries, default=math.inf)
        closed = [e.at for e in events.of(SOCKET_CLOSED, start.who) if start.at <= e.at < until]
        if closed:
            times.append(max(closed) - start.at)
        else:
            never += 1
    return times, never


def _removal(
    events: Events, start_kind: str, what: str, goal: float, via: str | None = None
) -> Figure:
    times, never = closing_times(events, start_kind, via)
    p50, p99 = percentile(times, 50), percentile(times, 99)
    counted = len(times) + never
    figure = f"p50 {_ms(p50)}, p99 {_ms(p99)} ({counted} removals)"
    if never:
        figure += f"; {never} never closed"
    return Figure(
        what=what,
        meetgate=figure if counted else "no removal",
        baseline="—",
        comparison="—",
        target=f"<= {goal:g} s",
        met=counted > 0 and never == 0 and p99 <= goal,
    )


def _removed_at(events: Events) -> dict[str, float]:
    """Each removed troll's first removal (by a host or the guard)."""
    removed: dict[str, float] = {}
    for event in [*events.of(HOST_REMOVE), *events.of(GUARD_THRESHOLD)]:
        removed[event.who] = min(event.at, removed.get(event.who, math.inf))
    return removed


def _senders(events: Events) -> dict[str, str]:
    return {e.detail: e.who for e in events.of(CHAT_SENT)}


def _alive(events: Events) -> Figure:
    retries = events.of(RETRY)
    alive = [e for e in retries if e.detail.rpartition("\t")[2] == "ALIVE"]
    # An attempt that failed on the bench's side proves nothing either way.
    failed = [e for e in retries if e.detail.rpartition("\t")[2] == "error"]
    removed, senders = _removed_at(events), _senders(events)
    heard_late = {
        e.detail
        for e in events.of(CHAT_HEARD)
        if (sender := senders.get(e.detail)) in removed
        and e.at > removed[sender] + HEARD_GRACE
        and e.who != sender
    }
    ways = sorted({e.detail.partition("\t")[0] for e in alive})
    figure = f"{len(alive)} of {len(retries)} retries"
    if ways:
        figure += f" (back by {', '.join(ways)})"
    if heard_late:
        figure += f"; {len(heard_late)} messages heard after the removal"
    if failed:
        figure += f"; {len(failed)} attempts failed on the bench's side (not counted either way)"
    return Figure(
        what="Troll sessions alive after their removal",
        meetgate=figure,
        baseline="—",
        comparison="—",
        target="0",
        met=bool(retries) and not alive and not heard_late and not failed,
    )


# ---------------------------------------------------------------- what others saw


def impersonations(
    events: Events, verified: Mapping[str, str], troll_prefix: str
) -> list[tuple[str, str]]:
    """(listener, occupant) of each presence a legitimate client heard whose shown name looks
    like (gateway.admission.names.skeleton) a host's or attendee's verified name, while the
    occupant is not that person. `verified`: occupant (MUC resource) -> that person's name."""
    shapes = {skeleton(name) for name in verified.values()}
    seen = []
    for event in events.of(PRESENCE_HEARD):
        if _is_troll(event.who, troll_prefix):
            continue
        occupant, _, shown = event.detail.partition("\t")
        shape = skeleton(shown)
        own = verified.get(occupant)
        if shape in shapes and (own is None or skeleton(own) != shape):
            seen.append((event.who, occupant))
    return seen


# What a troll's impersonation attempt may find the room reflecting that counts as a failure:
# a nick it chose shown to others, a tracker kept, its occupant address changed to a chosen name.
REFLECTED_FAILURES = ("FORGED", "KEPT", "MUC nick changed")


def resource_lookalikes(events: Events, verified: Mapping[str, str], troll_prefix: str) -> set[str]:
    """The occupant addresses legitimate clients heard whose resource (the part after the
    room's address, which Jitsi never shows but other XMPP clients do) looks like a host's or
    attendee's verified name while the occupant is not that person."""
    shapes = {skeleton(name) for name in verified.values()}
    found = set()
    for event in events.of(PRESENCE_HEARD):
        if _is_troll(event.who, troll_prefix):
            continue
        occupant = event.detail.partition("\t")[0]
        resource = occupant.partition("/")[2]
        own = verified.get(occupant)
        if skeleton(resource) in shapes and (own is None or skeleton(own) != skeleton(resource)):
            found.add(occupant)
    return found


def _impersonated(
    events: Events,
    verified: Mapping[str, str],
    troll_prefix: str,
    occupants: Mapping[str, set[str]],
) -> Figure:
    """No legitimate client saw another's name on a troll, no attempt was reflected with a
    chosen nick, a kept tracker or a changed occupant address, and the trolls' presences were
    heard at all (else the check saw nothing). `occupants`: each troll's occupant JIDs."""
    seen = impersonations(events, verified, troll_prefix)
    listeners = {who for who, _ in seen}
    heard = len(events.of(PRESENCE_HEARD))
    troll_jids = {jid for jids in occupants.values() for jid in jids}
    heard_trolls = sum(
        1
        for e in events.of(PRESENCE_HEARD)
        if not _is_troll(e.who, troll_prefix) and e.detail.partition("\t")[0] in troll_jids
    )
    failed = [
        e.detail
        for e in events.of(IMPERSONATION)
        if any(word in e.detail for word in REFLECTED_FAILURES)
    ]
    figure = f"{len(listeners)} ({len(seen)} of {heard} presences, {heard_trolls} of them trolls')"
    if failed:
        figure += "; reflected to the troll: " + "; ".join(sorted(set(failed)))
    resources = resource_lookalikes(events, verified, troll_prefix)
    if resources:
        # Known and not a Jitsi user's view (see docs/attack-replay.md, "Found and left").
        figure += (
            f"; {len(resources)} occupant address(es) with another's name as their resource, "
            "shown by non-Jitsi XMPP clients only"
        )
    return Figure(
        what="Occupants who saw an impersonated name",
        meetgate=figure,
        baseline="—",
        comparison="—",
        target="0",
        met=heard_trolls > 0 and not listeners and not failed,
    )


def _inside(events: Events, who: str) -> float:
    """A troll's seconds in the meeting: its first connection to its last socket's close (or the
    record's last event)."""
    connected = [e.at for e in events.of(CONNECTED, who)]
    if not connected:
        return 0.0
    end = max((e.at for e in events.items), default=connected[0])
    closed = [e.at for e in events.of(SOCKET_CLOSED, who)]
    return max(closed, default=end) - min(connected)


def troll_chat(
    events: Events, troll_prefix: str, chat_per_10s: float, chat_burst: float
) -> dict[str, tuple[int, float]]:
    """Per troll: (its messages another client heard live, the guard's budget for its time
    inside: the burst and the rate over its seconds in the meeting)."""
    senders = _senders(events)
    heard: dict[str, set[str]] = {}
    for e in events.of(CHAT_HEARD):
        sender = senders.get(e.detail)
        if e.detail.startswith(TROLL_MARKER) and sender is not None and sender != e.who:
            heard.setdefault(sender, set()).add(e.detail)
    trolls = sorted({e.who for e in events.of(CONNECTED) if _is_troll(e.who, troll_prefix)})
    return {
        who: (
            len(heard.get(who, ())),
            chat_burst + chat_per_10s * _inside(events, who) / 10,
        )
        for who in trolls
    }


def _chat(events: Events, troll_prefix: str, chat_per_10s: float, chat_burst: float) -> Figure:
    per_troll = troll_chat(events, troll_prefix, chat_per_10s, chat_burst)
    heard = sum(n for n, _ in per_troll.values())
    budget = sum(b for _, b in per_troll.values())
    over = [who for who, (n, b) in per_troll.items() if n > b]
    sent = sum(1 for e in events.of(CHAT_SENT) if e.detail.startswith(TROLL_MARKER))
    return Figure(
        what="Troll chat messages that reached others (each troll against its own budget)",
        meetgate=f"{heard} of {sent} sent" + (f"; over budget: {', '.join(over)}" if over else ""),
        baseline=f"budgets {budget:,.0f} in all",
        comparison=f"{heard / budget:.0%} of the budgets" if budget else "—",
        target="<= each budget",
        met=bool(per_troll) and not over,
    )


# ---------------------------------------------------------------- faults, CPU


def fault_closes(events: Events, troll_prefix: str) -> tuple[list[Event], list[float]]:
    """Legitimate clients' unasked closes whose latest earlier fault is an infrastructure one,
    and for each that came back, the seconds away (RECONNECTED's value)."""
    faults = sorted(events.of(FAULT), key=lambda e: e.at)
    closes, away = [], []
    for close in events.of(SOCKET_CLOSED):
        if close.detail != "unasked" or _is_troll(close.who, troll_prefix):
            continue
        before = [f for f in faults if f.at <= close.at]
        if not before or before[-1].detail not in INFRASTRUCTURE_FAULTS:
            continue
        closes.append(close)
        back = [e for e in events.of(RECONNECTED, close.who) if e.at >= close.at]
        if back:
            away.append(min(back, key=lambda e: e.at).value)
    return closes, away


def _faults(events: Events, troll_prefix: str) -> Figure:
    closes, away = fault_closes(events, troll_prefix)
    kinds = ", ".join(e.detail for e in events.of(FAULT) if e.detail in INFRASTRUCTURE_FAULTS)
    return Figure(
        what=f"Attendees disconnected by the faults ({kinds or 'none'}), and back",
        meetgate=f"{len(closes)} disconnected, {len(away)} back",
        baseline="—",
        comparison=f"back in p50 {_seconds(percentile(away, 50))}, max "
        f"{_seconds(max(away, default=math.nan))}",
        target="all back",
        # A replica's death cuts the sessions it held: none cut means the fault missed the
        # meeting, and "all back" would say nothing.
        met=bool(closes) and len(away) == len(closes),
    )


# The gate's cuts of legitimate people the scenario asked for (every attendee at the lockdown,
# everyone at the move); any other cut of a host or attendee is the gate removing the wrong one.
ASKED_CUTS = ("cut:lockdown", "cut:moved")


def _wrongly_cut(events: Events, troll_prefix: str) -> Figure:
    cuts = [
        e
        for e in events.of(SOCKET_CLOSED)
        if not _is_troll(e.who, troll_prefix)
        and e.detail.startswith("cut:")
        and e.detail not in ASKED_CUTS
    ]
    reasons = sorted({e.detail for e in cuts})
    return Figure(
        what="Legitimate people cut by the gate (other than by the lockdown and the move)",
        meetgate=f"{len(cuts)}" + (f" ({', '.join(reasons)})" if reasons else ""),
        baseline="—",
        comparison="—",
        target="0",
        met=not cuts,
    )


def _left(events: Events, occupants: Mapping[str, set[str]], troll_prefix: str) -> Figure:
    """Each removed troll seen leaving: of the legitimate clients that heard its presence, how
    many heard it go (its occupant's `unavailable`) after its removal, and how soon."""
    removed = _removed_at(events)
    listeners = expected = 0
    delays: list[float] = []
    for troll, at in removed.items():
        jids = occupants.get(troll, set())
        heard_by = {
            e.who
            for e in events.of(PRESENCE_HEARD)
            if not _is_troll(e.who, troll_prefix) and e.detail.partition("\t")[0] in jids
        }
        left: dict[str, float] = {}
        for e in events.of(LEFT_HEARD):
            if e.who in heard_by and e.detail in jids and e.at >= at:
                left[e.who] = min(e.at - at, left.get(e.who, math.inf))
        expected += len(heard_by)
        listeners += len(left)
        delays += list(left.values())
    p99 = percentile(delays, 99)
    return Figure(
        what="Removed trolls seen leaving by those who had seen them (p50, p99 after removal)",
        meetgate=f"{listeners} of {expected}; p50 {_ms(percentile(delays, 50))}, p99 {_ms(p99)}",
        baseline="—",
        comparison="—",
        target="all, <= 2 s",
        met=expected > 0 and listeners == expected and p99 <= 2.0,
    )


def _cpu(cpu_per_refusal_ms: float | None) -> Figure:
    return Figure(
        what="Gate CPU per refused attempt (both replicas)",
        meetgate="not measured" if cpu_per_refusal_ms is None else f"{cpu_per_refusal_ms:.3f} ms",
        baseline="—",
        comparison="—",
    )


def figures(
    events: Events,
    quiet_phase: str = "quiet",
    attack_phase: str = "attack",
    *,
    verified: Mapping[str, str] | None = None,
    attendees: Mapping[str, int] | None = None,
    cpu_per_refusal_ms: float | None = None,
    chat_per_10s: float = 5,
    chat_burst: float = 10,
    troll_prefix: str = "troll",
    troll_occupants: Mapping[str, set[str]] | None = None,
    scenario: Sequence[Goal | Figure] = (),
) -> list[Goal | Figure]:
    """Every figure of issue 20's "What it measures", from `events`.

    `verified`: each host's and attendee's occupant (MUC resource) -> their verified name (for
    impersonations); `attendees`: how many legitimate joins each phase tried, in the order
    to show them (else the quiet and attack phases, counting those the events name);
    `chat_per_10s`/`chat_burst`: the guard's chat budget the stage ran with;
    `troll_occupants`: each troll's occupant JIDs (its leaving, heard by others); `scenario`:
    rows on what the attack was, shown right after the joins.
    """
    expected = attendees or {}
    phases = list(dict.fromkeys([*expected, quiet_phase, attack_phase]))
    rows: list[Goal | Figure] = [
        _joins(events, phase, attack_phase, expected.get(phase)) for phase in phases
    ]
    rows += scenario
    rows += _join_latency(events, quiet_phase, attack_phase)
    rows.append(
        _removal(
            events,
            HOST_REMOVE,
            "Host's Remove on the dashboard -> troll's sockets closed (p50, p99)",
            1.0,
            "dashboard",
        )
    )
    if any(e.detail == "cli" for e in events.of(HOST_REMOVE)):
        rows.append(
            _removal(
                events,
                HOST_REMOVE,
                "`meetgate room remove` started -> troll's sockets closed (p50, p99; the "
                "command's own start-up included)",
                2.0,
                "cli",
            )
        )
    rows.append(
        _removal(events, GUARD_THRESHOLD, "Wire guard threshold -> sockets closed (p50, p99)", 2.0)
    )
    rows.append(_alive(events))
    rows.append(_left(events, troll_occupants or {}, troll_prefix))
    rows.append(_impersonated(events, verified or {}, troll_prefix, troll_occupants or {}))
    rows.append(_chat(events, troll_prefix, chat_per_10s, chat_burst))
    rows.append(_faults(events, troll_prefix))
    rows.append(_wrongly_cut(events, troll_prefix))
    bench_errors = events.of(BENCH_ERROR)
    rows.append(
        Figure(
            what="The bench's own failures (a figure around one cannot be trusted)",
            meetgate=f"{len(bench_errors)}"
            + (f" ({'; '.join(sorted({e.detail for e in bench_errors}))})" if bench_errors else ""),
            baseline="—",
            comparison="—",
            target="0",
            met=not bench_errors,
        )
    )
    rows.append(_cpu(cpu_per_refusal_ms))
    return rows


# ---------------------------------------------------------------- the report

MAX_FINDINGS = 40


def _figures_table(rows: Iterable[Figure]) -> list[str]:
    lines = [
        "| measure | figure | baseline | comparison | goal | |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    lines += [
        f"| {f.what} | {f.meetgate} | {f.baseline} | {f.comparison} | {f.target} | {f.verdict} |"
        for f in rows
    ]
    return lines


def _goals_table(rows: Iterable[Goal]) -> list[str]:
    lines = [
        "| goal | figure (median) | baseline (median) | median | worst | repeats | target | |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    return lines + [goal.row() for goal in rows]


def _leftovers(leftovers: Leftovers) -> list[str]:
    scanned = f"{leftovers.keys:,} Redis keys and {leftovers.log_lines:,} log lines scanned"
    lines = [f"{scanned}.", ""]
    if leftovers.clean:
        lines += [
            "Nothing left once the TTLs pass: no key or log line holds an attendee's name, an "
            "address, a link, a cookie or a ticket beyond its key's own expiry, and every key "
            "expires within its docs/privacy.md bound.",
            "",
        ]
    if leftovers.expiring:
        lines += [
            f"- **{len(leftovers.expiring):,} keys holding a name or an address until their own "
            "TTL** (the meeting's records, by family; the secret's kind, never the secret):",
            *_families(leftovers.expiring),
        ]
    for title, found in (
        ("holding a secret and outliving its TTLs", leftovers.secrets),
        ("past their docs/privacy.md bound", leftovers.lifetimes),
    ):
        if not found:
            continue
        lines.append(f"- **{len(found)} {title}** (the secret's kind, never the secret):")
        lines += [f"  - `{f.where}`: {f.what}" for f in found[:MAX_FINDINGS]]
        if len(found) > MAX_FINDINGS:
            lines.append(f"  - … and {len(found) - MAX_FINDINGS} more")
    return lines


def _families(found: Sequence[Finding]) -> list[str]:
    """Expiring findings summed up by key family (`meetgate:admission:*`) and kind: how many
    keys, and the longest time left ("name, gone with its key within 12.0 hours")."""
    families: dict[tuple[str, str], tuple[int, str]] = {}
    for finding in found:
        family = re.sub(r"[^:]+$", "*", finding.where, count=1)
        kind, _, left = finding.what.partition(", ")
        count, longest = families.get((family, kind), (0, ""))
        families[(family, kind)] = (count + 1, max(longest, left, key=_left_seconds))
    return [
        f"  - `{family}`: {count:,} keys with a {kind}, {longest}"
        for (family, kind), (count, longest) in sorted(families.items())
    ]


def _left_seconds(text: str) -> float:
    """ "gone with its key within 12.0 hours" -> seconds (0 for none)."""
    found = re.search(r"([\d,.]+) (days|hours|s)$", text)
    if found is None:
        return 0.0
    unit = {"days": 86_400, "hours": 3600, "s": 1}[found.group(2)]
    return float(found.group(1).replace(",", "")) * unit


def _evidence(rows: Sequence[tuple[str, int, int]]) -> list[str]:
    if not rows:
        return ["No evidence export was compared."]
    lines = ["| count | evidence export | scenario | |", "| --- | ---: | ---: | --- |"]
    lines += [
        f"| {what} | {exported:,} | {ours:,} | {'equal' if exported == ours else '**differs**'} |"
        for what, exported, ours in rows
    ]
    return lines


def markdown_report(
    figures: Sequence[Goal | Figure],
    leftovers: Leftovers,
    evidence_rows: Sequence[tuple[str, int, int]],
    stage_notes: Sequence[str],
    command: str,
) -> str:
    """The report: the command, the figures against their goals, what was left behind, the
    evidence's counts against the scenario's, and what the stage was."""
    plain = [f for f in figures if isinstance(f, Figure)]
    goals = [f for f in figures if isinstance(f, Goal)]
    missed = [f.what for f in figures if f.met is False]
    parts = [f"- Command: `{command}`", ""]
    if goals:
        parts += [*_goals_table(goals), ""]
    parts += [*_figures_table(plain), ""]
    parts.append(
        f"Goals missed: {'; '.join(missed)}." if missed else "Every goal with a target was met."
    )
    parts += ["", "### Left behind after the meeting", "", *_leftovers(leftovers)]
    parts += ["", "### Evidence export against the scenario", "", *_evidence(evidence_rows)]
    if stage_notes:
        parts += ["", "### The stage", "", *(f"- {note}" for note in stage_notes)]
    return "\n".join(parts) + "\n"
