"""What the attack replay left behind, and what its evidence says (issue 20): after the meeting,
every Redis key and value and every line of the gates' logs is searched for the attackers'
addresses and the attendees' names, invite tokens, cookies and tickets, every key's expiry is held
to its docs/privacy.md bound, and the room's evidence is exported, verified and counted.

A finding names where (a key, or `log:<file>:<line>`) and what kind of secret, never the secret.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from redis.sentinel import Sentinel

from bench.attack_events import GUARD_THRESHOLD, HOST_REMOVE, RETRY, Events, Replica
from gateway.store import INVITE_KEPT_AFTER_EXPIRY
from gateway.store.sentinel_url import is_sentinel_url, parse_sentinel_url
from tests.fixtures.cli import environment
from tests.fixtures.privacy_scan import PREFIX_CHARS, hashed_forms, stored, written_forms

DAY = 86_400
# An address's unkeyed hashes are made this many addresses at a time: a flood's thousands at
# once would hold millions of strings.
HASHED_CHUNK = 256
# Plain needles are looked up by their first characters (the shortest written form of an
# address, a /24's "a.b.c." prefix, has 6 or more).
NEEDLE_PREFIX = 6
# A word long enough to hold a 64-bit hash prefix (as tests/fixtures/privacy_scan.holding reads).
LONG_WORD = re.compile(r"[0-9A-Za-z+/_=-]{16,}")


@dataclass(frozen=True, slots=True)
class Secrets:
    """What must not be left behind; the caller fills it from its cast."""

    addresses: Sequence[str] = ()  # every attacker's address (trolls', the flood's)
    names: Sequence[str] = ()  # attendees' and hosts' names
    invite_tokens: Sequence[str] = ()
    cookies: Sequence[str] = ()
    tickets: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Bound:
    """How long keys matching `pattern` may still live (seconds from the scan); None: for ever,
    by design (docs/privacy.md says so for that family)."""

    pattern: str  # a regex, matched from the key's start
    seconds: float | None
    why: str


def privacy_bounds(
    *,
    admission_seconds: float = 12 * 3600,
    invite_seconds: float = 30 * DAY,
    lobby_seconds: float = 900,
    audit_days: float = 30,
    evidence_days: float = 90,
    rate_seconds: float = 360,
    outbox_seconds: float = 7 * DAY,
) -> list[Bound]:
    """docs/privacy.md's "What the store keeps", with the stage's settings (defaults: the
    gate's). `invite_seconds` is the longest invite lifetime the stage made; `rate_seconds` the
    longest `burst * 60 / per_minute` of its `[rates]`."""
    invite = invite_seconds + INVITE_KEPT_AFTER_EXPIRY
    return [
        Bound(r"meetgate:rooms$", None, "a room, until deleted"),
        Bound(r"meetgate:memory$", None, "the store's loss marker"),
        Bound(r"meetgate:ban:", None, "a ban for good lasts for ever"),
        Bound(r"meetgate:evidence", 2 * evidence_days * DAY, "evidence: up to twice retention"),
        Bound(r"meetgate:audit:", audit_days * DAY, "[privacy] audit_retention_days"),
        Bound(r"meetgate:(invite|invite-token|room-invites|room-hosts)[:]", invite, "invites"),
        Bound(
            r"meetgate:(admission|room-admissions|names|value:signalling-lease|value:replaced"
            r"|counter:guard-strikes):",
            admission_seconds,
            "[admission] ttl_seconds",
        ),
        Bound(r"meetgate:index:guard-hosts:", admission_seconds, "minutes"),
        Bound(r"meetgate:(value|index):lobby:barred:", 12 * 3600, "a lobby bar: 12 hours"),
        Bound(r"meetgate:(value|index):lobby:", lobby_seconds + 600, "a lobby request"),
        Bound(r"meetgate:(rate|recent):", rate_seconds, "until the limit has recovered"),
        Bound(r"meetgate:once:", DAY, "one-time claims: a day at most"),
        Bound(r"meetgate:value:signin:", 600, "a sign-in: 10 minutes"),
        Bound(r"meetgate:(value|index):outbox:", outbox_seconds, "[outbox] batch_kept_seconds"),
    ]


@dataclass(frozen=True, slots=True)
class Finding:
    where: str  # the key, or "log:<file>:<line no>"
    what: str  # the secret's kind ("address", "address (unkeyed hash)", "name", …) or the TTL's

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass(slots=True)
class Leftovers:
    secrets: list[Finding] = field(default_factory=list)  # a secret found where it was
    lifetimes: list[Finding] = field(default_factory=list)  # no TTL, or a TTL past its bound
    # A secret in a key that expires by itself within its bound: there now, gone once the TTLs
    # pass (the meeting's records while they are needed; a scan cannot wait 12 hours).
    expiring: list[Finding] = field(default_factory=list)
    keys: int = 0  # keys scanned
    log_lines: int = 0  # log lines scanned

    @property
    def clean(self) -> bool:
        return not self.secrets and not self.lifetimes


class _Needles:
    """Plain strings to find in many texts, each with the kind of secret it is: looked up by
    their first characters at every position, so that thousands of addresses cost one pass."""

    def __init__(self) -> None:
        self._by_prefix: dict[str, list[tuple[str, str]]] = {}
        self._short: list[tuple[str, str]] = []

    def add(self, needle: str, kind: str) -> None:
        if len(needle) < NEEDLE_PREFIX:
            self._short.append((needle, kind))
        else:
            self._by_prefix.setdefault(needle[:NEEDLE_PREFIX], []).append((needle, kind))

    def kinds_in(self, text: str) -> set[str]:
        found = {kind for needle, kind in self._short if needle in text}
        by_prefix = self._by_prefix
        for start in range(len(text) - NEEDLE_PREFIX + 1):
            candidates = by_prefix.get(text[start : start + NEEDLE_PREFIX])
            if candidates:
                found |= {
                    k
                    for needle, k in candidates
                    if text.startswith(needle, start)
                    and (k != "address" or _standalone(text, needle, start))
                }
        return found


def _standalone(text: str, needle: str, start: int) -> bool:
    """Whether an address's needle of letters and digits only (8 hex digits, one integer)
    found at `start` is a word of its own: inside a longer run of them (a random request id,
    say), it is chance, not the address. Other address forms always count; links, cookies and
    tickets are long enough to count wherever they stand."""
    if not needle.isalnum():
        return True
    end = start + len(needle)
    before = text[start - 1] if start else ""
    after = text[end] if end < len(text) else ""
    return not before.isalnum() and not after.isalnum()


def _needles(secrets: Secrets) -> _Needles:
    needles = _Needles()
    for address in secrets.addresses:
        for form in written_forms(address):
            needles.add(form, "address")
    for kind, values in (
        ("name", secrets.names),
        ("invite token", secrets.invite_tokens),
        ("cookie", secrets.cookies),
        ("ticket", secrets.tickets),
    ):
        for value in values:
            for form in {value, quote(value, safe=""), json.dumps(value)[1:-1]}:
                needles.add(form, kind)
        if kind == "ticket":
            # A ticket's signature alone identifies it as well as the whole JWT.
            for value in values:
                needles.add(value.rsplit(".", 1)[-1], kind)
    return needles


def _hashed_findings(addresses: Sequence[str], texts: Mapping[str, str]) -> list[Finding]:
    """Where a 16-character window of a long word is the prefix of an unkeyed hash of an
    address (tests/fixtures/privacy_scan.hashed_forms), chunk by chunk."""
    windows: dict[str, set[str]] = {}
    for where, text in texts.items():
        for word in LONG_WORD.findall(text):
            for start in range(len(word) - PREFIX_CHARS + 1):
                windows.setdefault(word[start : start + PREFIX_CHARS], set()).add(where)
    found: set[str] = set()
    for first in range(0, len(addresses), HASHED_CHUNK):
        forms: set[str] = set()
        for address in addresses[first : first + HASHED_CHUNK]:
            forms |= hashed_forms(address)
        for window in forms & windows.keys():
            found |= windows[window]
    return [Finding(where, "address (unkeyed hash)") for where in sorted(found)]


def _master(redis_url_or_client: str | redis.Redis[str], db: int | None) -> redis.Redis[str]:
    if not isinstance(redis_url_or_client, str):
        return redis_url_or_client
    url = redis_url_or_client
    if not is_sentinel_url(url):
        client: redis.Redis[str] = redis.Redis.from_url(url, decode_responses=True)
        if db is None:
            return client
        # (from_url prefers the URL's database to a `db` argument.)
        kwargs = client.connection_pool.connection_kwargs
        client.close()
        return redis.Redis(**{**kwargs, "db": db})
    where = parse_sentinel_url(url)
    options: dict[str, Any] = {}
    if where.sentinel_password is not None:
        options["password"] = where.sentinel_password
    elif where.password is not None:
        options["password"] = where.password
    sentinel = Sentinel(list(where.sentinels), sentinel_kwargs=options)
    return sentinel.master_for(
        where.master_name,
        db=where.db if db is None else db,
        password=where.password,
        username=where.username,
        decode_responses=True,
    )


def _bound_of(key: str, bounds: Sequence[Bound]) -> Bound | None:
    return next((b for b in bounds if re.match(b.pattern, key)), None)


def _lifetimes(
    client: redis.Redis[str], keys: Iterable[str], bounds: Sequence[Bound]
) -> list[Finding]:
    found = []
    for key in keys:
        left = client.pttl(key)
        if left == -2:
            continue  # expired while the scan ran
        bound = _bound_of(key, bounds)
        if bound is None:
            found.append(Finding(key, "a key of no family docs/privacy.md names"))
        elif left == -1 and bound.seconds is not None:
            found.append(Finding(key, f"no TTL (bound: {bound.why})"))
        elif bound.seconds is not None and left / 1000 > bound.seconds + 1:
            found.append(
                Finding(key, f"TTL {left / 1000:,.0f} s > {bound.seconds:,.0f} s ({bound.why})")
            )
    return found


def scan_left_behind(
    redis_url_or_client: str | redis.Redis[str],
    log_paths: Iterable[Path],
    secrets: Secrets,
    *,
    dbs: Sequence[int] | None = None,
    bounds: Sequence[Bound] | None = None,
) -> Leftovers:
    """Search every key and value of the stage's Redis (the Sentinel master for a
    `redis+sentinel://` URL; each of `dbs`, else the URL's) and every line of `log_paths` for
    `secrets`, and hold every key's TTL to `bounds` (privacy_bounds() by default)."""
    bounds = privacy_bounds() if bounds is None else bounds
    texts: dict[str, str] = {}
    expiring: dict[str, float] = {}
    leftovers = Leftovers()
    for db in dbs if dbs is not None else [None]:
        client = _master(redis_url_or_client, db)
        try:
            keys = stored(client)
            prefix = "" if db is None else f"db{db}:"
            texts |= {f"{prefix}{key}": f"{key} {value}" for key, value in keys.items()}
            leftovers.keys += len(keys)
            leftovers.lifetimes += _lifetimes(client, keys, bounds)
            expiring |= {f"{prefix}{key}": left for key, left in _expiring(client, keys, bounds)}
        finally:
            if client is not redis_url_or_client:
                client.close()
    for path in log_paths:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        leftovers.log_lines += len(lines)
        # Named with their folder: the front's and Jitsi's nginx both write an error.log.
        where = f"log:{path.parent.name}/{path.name}"
        texts |= {f"{where}:{n}": line for n, line in enumerate(lines, start=1)}
    needles = _needles(secrets)
    found = [
        Finding(where, kind)
        for where, text in texts.items()
        for kind in sorted(needles.kinds_in(text))
    ]
    found += _hashed_findings(list(secrets.addresses), texts)
    for finding in found:
        left = expiring.get(finding.where)
        if left is None:
            leftovers.secrets.append(finding)
        else:
            what = f"{finding.what}, gone with its key within {_duration(left)}"
            leftovers.expiring.append(Finding(finding.where, what))
    return leftovers


def _expiring(
    client: redis.Redis[str], keys: Iterable[str], bounds: Sequence[Bound]
) -> list[tuple[str, float]]:
    """(key, seconds left) of each key that expires by itself within its docs/privacy.md
    bound: what it holds is gone once that TTL passes."""
    found = []
    for key in keys:
        left = client.pttl(key)
        bound = _bound_of(key, bounds)
        within = (
            bound is not None and bound.seconds is not None and left / 1000 <= bound.seconds + 1
        )
        if left > 0 and within:
            found.append((key, left / 1000))
    return found


def _duration(seconds: float) -> str:
    if seconds >= DAY:
        return f"{seconds / DAY:,.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:,.1f} hours"
    return f"{seconds:,.0f} s"


# ---------------------------------------------------------------- the evidence

# The export's counts the report shows: what the entry kinds (gateway/evidence/entries.py) add up
# to. A flood's and a refused name's entries count many attempts each ("count").
COUNTED_KINDS = {
    "flood refused": ("flood refused", "flood refused, other networks"),
    "names refused": ("name refused",),
    "removals and bans": ("removal", "ban"),
    "guard removals": ("guard removal",),
    "lockdowns": ("lockdown",),
    "moves": ("move",),
}


@dataclass(frozen=True, slots=True)
class Evidence:
    """A room's export, whether `meetgate evidence verify` found it valid, and its counts."""

    path: Path
    valid: bool
    verdict: str  # verify's first line (no secret: the export holds pseudonyms only)
    entries: int
    kinds: Mapping[str, int]  # entries of each kind
    counts: Mapping[str, int]  # COUNTED_KINDS' totals


def _meetgate(*args: str, cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI as an admin runs it: the replica's config file, none of the caller's MEETGATE_
    variables unless `env` names them."""
    clean = environment()
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**clean, "HOME": str(cwd), **env},
        check=False,
    )


def _entries(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines() if b'"prev"' in line]


def evidence_counts(entries: Sequence[Mapping[str, Any]]) -> tuple[Counter[str], Counter[str]]:
    """(entries of each kind, COUNTED_KINDS' totals) of an export's entries."""
    kinds: Counter[str] = Counter(str(entry["kind"]) for entry in entries)
    counts: Counter[str] = Counter({what: 0 for what in COUNTED_KINDS})
    for entry in entries:
        for what, among in COUNTED_KINDS.items():
            if entry["kind"] in among:
                counts[what] += int(entry.get("fields", {}).get("count", 1))
    return kinds, counts


def export_evidence(
    replica: Replica, room: str, workdir: Path, env: Mapping[str, str] | None = None
) -> Evidence:
    """`meetgate evidence export` of `room` with `replica`'s config, then `meetgate evidence
    verify` of the file (both as subprocesses, as tests/integration/test_evidence_attack does)."""
    workdir.mkdir(parents=True, exist_ok=True)
    output = workdir / f"{room}-evidence-{time.time_ns()}.jsonl"
    args = ["evidence", "export", "--config", str(replica.config), "--room", room]
    written = _meetgate(*args, "--output", str(output), cwd=workdir, env=env or {})
    if written.returncode != 0:
        raise RuntimeError(f"evidence export failed: {(written.stderr or written.stdout)[-500:]}")
    checked = _meetgate("evidence", "verify", str(output), cwd=workdir, env=env or {})
    kinds, counts = evidence_counts(_entries(output.read_bytes()))
    return Evidence(
        path=output,
        valid=checked.returncode == 0,
        verdict=(checked.stdout.strip() or checked.stderr.strip()).splitlines()[0],
        entries=sum(kinds.values()),
        kinds=dict(kinds),
        counts=dict(counts),
    )


def _flood_refused(detail: str) -> int:
    """The 429s of a FLOOD event's statuses ("429:812,303:20" or "429=812 303=20")."""
    parts = detail.split("\t")
    statuses = parts[2] if len(parts) > 2 else ""
    # FloodResult.mix(): "180 429, 110 403, 10 410" (how many, then the answer).
    pairs = re.findall(r"([\d,]+) (\d{3})\b", statuses)
    return sum(int(n.replace(",", "")) for n, status in pairs if status == "429")


def scenario_counts(events: Events) -> dict[str, int]:
    """What the scenario did, counted as COUNTED_KINDS count it (names refused: not counted by
    the scenario)."""
    faults = Counter(event.detail for event in events.of("fault"))
    return {
        "flood refused": sum(_flood_refused(e.detail) for e in events.of("flood"))
        + sum(1 for e in events.of("join_refused") if e.detail.endswith("429"))
        + sum(1 for e in events.of(RETRY) if e.value == 429),
        "removals and bans": len(events.of(HOST_REMOVE)),
        "guard removals": len({e.who for e in events.of(GUARD_THRESHOLD)}),
        "lockdowns": faults["lockdown"],
        "moves": faults["move"],
    }


def compare(evidence: Evidence, events: Events) -> list[tuple[str, int, int]]:
    """(what, the export's count, the scenario's count) for each count both sides keep."""
    ours = scenario_counts(events)
    return [(what, evidence.counts.get(what, 0), n) for what, n in ours.items()]
