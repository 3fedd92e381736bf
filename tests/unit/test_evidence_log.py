"""The evidence log over both its backends (memory, files): appends chain, racing writers never
fork a chain, heads are signed every N entries or T seconds, slices read back whole, the files
outlive the process; and what the log refuses to record."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.evidence.entries import (
    GATE_CHAIN,
    ChainBroken,
    EvidenceError,
    Head,
    Kind,
    Record,
    SealedEntry,
    check_links,
    genesis,
    moment,
    seal,
)
from gateway.evidence.export import verify_export
from gateway.evidence.files import FileChains
from gateway.evidence.log import Chains, EvidenceLog, ExportBusy, HostExport, SigningPolicy
from gateway.evidence.memory import MemoryChains
from gateway.evidence.pseudonyms import Pseudonyms
from gateway.evidence.signing import (
    fingerprint,
    generate_private_pem,
    load_private_key,
    public_hex,
    read_key_file,
)

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
PSEUDONYMS = Pseudonyms(b"evidence tests' pseudonym key, 32+ bytes")
HOST = PSEUDONYMS.host("board", "identity of a host")


class Clock:
    def __init__(self) -> None:
        self.now = 1_796_000_000.0

    def __call__(self) -> float:
        return self.now


def quiet() -> Record:
    return Record(Kind.QUIET_ON, {"actor": HOST})


@pytest.fixture(params=["memory", "files"])
def chains(request: pytest.FixtureRequest, tmp_path: Path) -> Chains:
    return MemoryChains() if request.param == "memory" else FileChains(tmp_path / "evidence")


async def test_appends_chain_from_the_room_start(chains: Chains) -> None:
    log = EvidenceLog(chains, KEY, clock=Clock())
    sealed = [await log.append("board", quiet()) for _ in range(3)]
    assert [e.seq for e in sealed] == [1, 2, 3]
    assert sealed[0].prev == genesis("board").hash
    check_links(genesis("board"), sealed)
    # Each room, and the gate, has a chain of its own.
    other = await log.append(GATE_CHAIN, quiet())
    assert other.seq == 1 and other.prev == genesis(GATE_CHAIN).hash != genesis("board").hash
    assert await log.chain_names() == [GATE_CHAIN, "board"]


async def test_racing_writers_never_fork_a_chain(chains: Chains, tmp_path: Path) -> None:
    # Two logs over one place (two replicas, or two processes on one directory).
    second = chains if isinstance(chains, MemoryChains) else FileChains(tmp_path / "evidence")
    logs = [EvidenceLog(chains, KEY), EvidenceLog(second, KEY)]
    sealed = await asyncio.gather(*(logs[i % 2].append("board", quiet()) for i in range(40)))
    assert sorted(e.seq for e in sealed) == list(range(1, 41))
    stored = await chains.entries("board")
    check_links(genesis("board"), stored)
    assert len(stored) == 40


async def test_heads_are_signed_every_n_entries_and_after_t_seconds(chains: Chains) -> None:
    clock = Clock()
    log = EvidenceLog(chains, KEY, SigningPolicy(every=3, seconds=60), clock=clock)
    for _ in range(7):
        await log.append("board", quiet())
    assert [s.seq for s in await chains.signatures("board")] == [3, 6]
    # Entry 7 waits: nothing is due before its 60 seconds.
    clock.now += 59
    assert await log.sign_due() == []
    clock.now += 1
    signed = await log.sign_due()
    assert [s.seq for s in signed] == [7]
    assert await log.sign_due() == []
    assert signed[0].key == fingerprint(public_hex(KEY))


async def test_a_slice_by_time_is_contiguous_and_verifies(chains: Chains) -> None:
    clock = Clock()
    log = EvidenceLog(chains, KEY, SigningPolicy(every=2), clock=clock)
    for _ in range(6):
        await log.append("board", quiet())
        clock.now += 60
    since, until = moment(1_796_000_000 + 60), moment(1_796_000_000 + 240)
    part = await log.read("board", since, until)
    assert [e.seq for e in part.entries] == [2, 3, 4]
    assert part.anchor == (await chains.entries("board"))[0].head
    assert [s.seq for s in part.signed] == [2, 4]
    verdict = verify_export(await log.export("board", since, until))
    assert verdict.valid, verdict.problem
    assert verdict.summary["entries"] == 3
    # An empty slice still verifies: a signature over its anchor.
    empty = verify_export(await log.export("board", moment(1_796_100_000), None))
    assert empty.valid and empty.summary["entries"] == 0 and empty.anchor is not None
    assert empty.anchor.seq == 6
    room_without_entries = verify_export(await log.export("lobby-test"))
    assert room_without_entries.valid and room_without_entries.anchor == genesis("lobby-test")


async def test_the_files_outlive_the_process(tmp_path: Path) -> None:
    directory = tmp_path / "evidence"
    first = EvidenceLog(FileChains(directory), KEY)
    await first.append("board", quiet())
    await first.append("board", quiet())
    again = EvidenceLog(FileChains(directory), KEY)
    third = await again.append("board", quiet())
    assert third.seq == 3
    check_links(genesis("board"), await FileChains(directory).entries("board"))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "board.jsonl").stat().st_mode) == 0o600


async def test_a_write_torn_by_a_crash_is_dropped_not_chained_onto(tmp_path: Path) -> None:
    directory = tmp_path / "evidence"
    log = EvidenceLog(FileChains(directory), KEY)
    await log.append("board", quiet())
    with (directory / "board.jsonl").open("ab") as handle:
        handle.write(b'{"at":"2026-12-05T14:0')
    assert (await FileChains(directory).head("board")).seq == 1
    assert (await log.append("board", quiet())).seq == 2
    check_links(genesis("board"), await FileChains(directory).entries("board"))


async def test_an_altered_file_is_refused_not_exported(tmp_path: Path) -> None:
    directory = tmp_path / "evidence"
    log = EvidenceLog(FileChains(directory), KEY)
    for _ in range(3):
        await log.append("board", Record(Kind.LOCKDOWN, {"actor": HOST, "removed": 4}))
    path = directory / "board.jsonl"
    path.write_bytes(path.read_bytes().replace(b'"removed":4', b'"removed":0', 1))
    with pytest.raises(ChainBroken, match="seq 1"):
        await log.export("board")
    path.write_bytes(path.read_bytes().replace(b'"kind":"lockdown"', b'"kind":"nothing"', 1))
    with pytest.raises(ChainBroken, match="line 1"):
        await log.export("board")


@pytest.mark.parametrize(
    ("kind", "fields", "problem"),
    [
        (Kind.REMOVAL, {"actor": HOST}, "needs target"),
        (Kind.REMOVAL, {"actor": HOST, "target": "a-" + "a" * 16, "email": "x@y"}, "no email"),
        (Kind.REMOVAL, {"actor": "grace@example.org", "target": "a-" + "a" * 16}, "actor"),
        # A host pseudonym where an admission's belongs.
        (Kind.REMOVAL, {"actor": HOST, "target": HOST}, "target"),
        (Kind.REMOVAL, {"actor": HOST, "target": "a-" + "a" * 16, "name": "a\nb"}, "printable"),
        (Kind.REMOVAL, {"actor": HOST, "target": "a-" + "a" * 16, "name": "x" * 201}, "name"),
        (Kind.REMOVAL, {"actor": HOST, "target": "a-" + "a" * 16, "name": "\ud800"}, "name"),
        (Kind.LOCKDOWN, {"actor": HOST, "removed": True}, "whole number"),
        (Kind.LOCKDOWN, {"actor": HOST, "removed": -1}, "whole number"),
        (Kind.LOCKDOWN, {"actor": HOST, "removed": 1.0}, "whole number"),
        (
            Kind.FLOOD_REFUSED,
            {"network": "n-" + "a" * 16, "minute": "2026-13-05T14:03Z", "count": 1},
            "minute",
        ),
        (
            Kind.FLOOD_REFUSED,
            {"network": "203.0.113.7", "minute": "2026-12-05T14:03Z", "count": 1},
            "network",
        ),
        (Kind.BAN, {"actor": HOST, "target": "a-" + "a" * 16, "until": "tomorrow"}, "until"),
        (Kind.GUARD_REMOVAL, {"target": "a-" + "a" * 16, "rule": "Rate limit!"}, "rule"),
        (Kind.CHAT_LIMITS, {"actor": HOST, "limits": {"per_10s": 1}}, "limits"),
    ],
)
def test_what_the_log_refuses_to_record(
    kind: Kind, fields: dict[str, object], problem: str
) -> None:
    with pytest.raises(EvidenceError, match=problem):
        Record(kind, fields)


async def test_a_chain_name_must_be_a_room_or_the_gate() -> None:
    log = EvidenceLog(MemoryChains(), KEY)
    for bad in ("../etc/passwd", "Board", "", "_other", "a" * 65, "board.jsonl"):
        with pytest.raises(EvidenceError):
            await log.append(bad, quiet())


def test_pseudonyms_are_per_room_and_never_the_value() -> None:
    one = PSEUDONYMS.admission("board", "the cookie's admission id")
    assert one == PSEUDONYMS.admission("board", "the cookie's admission id")
    assert one != PSEUDONYMS.admission("other", "the cookie's admission id")
    assert one != Pseudonyms(b"another gate's key, 32 bytes long!").admission(
        "board", "the cookie's admission id"
    )
    assert "admission" not in one and one.startswith("a-")


def test_key_files(tmp_path: Path) -> None:
    good = tmp_path / "key.pem"
    good.write_bytes(generate_private_pem())
    assert load_private_key(read_key_file(good))
    cases = {
        "missing.pem": (None, "does not exist"),
        "rsa.pem": (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PEM"),
        "big.pem": (b"x" * 70_000, "too large"),
    }
    for name, (content, problem) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ValueError, match=problem):
            read_key_file(path)
    from gateway.ticket_keys import generate_private_pem as rsa_pem

    rsa = tmp_path / "rsa-real.pem"
    rsa.write_bytes(rsa_pem())
    with pytest.raises(ValueError, match="not an Ed25519 key"):
        read_key_file(rsa)


async def test_stored_evidence_re_chained_or_cut_is_refused_not_signed(tmp_path: Path) -> None:
    """Stored files rewritten by someone without the key (issue 17 review): an entry changed
    and the rest re-chained, entries cut from either end, a head with a forged signature. Each
    is refused by a read and by the signer, naming the seq."""
    directory = tmp_path / "evidence"
    log = EvidenceLog(FileChains(directory), KEY, SigningPolicy(every=1))
    for removed in (4, 5, 6):
        await log.append("board", Record(Kind.LOCKDOWN, {"actor": HOST, "removed": removed}))
    path, heads = directory / "board.jsonl", directory / "board.heads.jsonl"
    original, original_heads = path.read_bytes(), heads.read_bytes()
    entries = await FileChains(directory).entries("board")

    def rechain(kept: list[SealedEntry], edit: int | None = None) -> bytes:
        head = genesis("board") if kept[0].seq == 1 else Head(kept[0].seq - 1, kept[0].prev)
        lines = []
        for entry in kept:
            fields = dict(entry.fields)
            if entry.seq == edit:
                fields["removed"] = 0
            sealed = seal(head, Record(entry.kind, fields), entry.at)
            lines.append(sealed.line + b"\n")
            head = sealed.head
        return b"".join(lines)

    cases = {
        "an entry changed, the rest re-chained": (rechain(entries, edit=2), "seq 2"),
        "the last entry removed": (rechain(entries[:2]), "seq 3 is beyond"),
        "the first entry removed": (rechain(entries[1:]), "removed from its front"),
        "the first entry removed, the rest re-chained as seq 1": (
            rechain([seal(genesis("board"), Record(e.kind, e.fields), e.at) for e in entries[1:2]]),
            "seq 1",
        ),
        "every entry removed": (b"", "beyond"),
    }
    for case, (stored, named) in cases.items():
        path.write_bytes(stored)
        fresh = EvidenceLog(FileChains(directory), KEY)
        with pytest.raises(ChainBroken, match=named):
            await fresh.export("board")
        if case != "the first entry removed":
            # (With the front cut, the head is still the one signed: signing it again vouches
            # for nothing new.)
            with pytest.raises(ChainBroken):
                await fresh.sign("board")
            assert heads.read_bytes() == original_heads, case
    path.write_bytes(original)
    # A head whose signature this key did not make, beside the real ones.
    first = original_heads.splitlines()[0]
    forged = first[: first.index(b'"signature":"') + 13] + b"0" * 128 + b'"}\n'
    heads.write_bytes(original_heads + forged)
    with pytest.raises(ChainBroken, match="signature"):
        await EvidenceLog(FileChains(directory), KEY).export("board")
    heads.write_bytes(original_heads)
    assert verify_export(await EvidenceLog(FileChains(directory), KEY).export("board")).valid


async def test_a_chain_without_retention_starts_at_seq_one(tmp_path: Path) -> None:
    """Files and memory are never trimmed: a first entry past seq 1 is entries removed, even
    with no signed head to tell (issue 17 review)."""
    directory = tmp_path / "evidence"
    log = EvidenceLog(FileChains(directory), KEY, SigningPolicy(every=1000))
    for _ in range(3):
        await log.append("board", quiet())
    path = directory / "board.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in path.read_bytes().splitlines()[1:]))
    with pytest.raises(ChainBroken, match=r"entry seq 2 .* removed from its front"):
        await EvidenceLog(FileChains(directory), KEY).read("board")


async def test_heads_of_another_key_are_left_out_and_counted(tmp_path: Path) -> None:
    directory = tmp_path / "evidence"
    before = EvidenceLog(FileChains(directory), OTHER_KEY, SigningPolicy(every=1))
    await before.append("board", quiet())
    log = EvidenceLog(FileChains(directory), KEY, SigningPolicy(every=1))
    await log.append("board", quiet())
    part = await log.read("board")
    assert part.unchecked == 1 and [s.seq for s in part.signed] == [2]
    assert verify_export(await log.export("board")).valid


async def test_writers_sign_when_the_chain_is_due_not_each_by_its_count(tmp_path: Path) -> None:
    directory = tmp_path / "evidence"
    writers = [EvidenceLog(FileChains(directory), KEY, SigningPolicy(every=4)) for _ in range(3)]
    for number in range(24):
        await writers[number % 3].append("board", quiet())
    signed = [s.seq for s in await FileChains(directory).signatures("board")]
    assert signed == [4, 8, 12, 16, 20, 24]


async def test_the_directory_and_its_files_must_be_the_gates_alone(tmp_path: Path) -> None:
    """Another local user cannot make the gate write through a link they planted, nor use a
    directory others can write to (issue 17 review)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(EvidenceError, match="written by other users"):
        FileChains(shared)
    directory = tmp_path / "evidence"
    chains = FileChains(directory)
    victim = tmp_path / "victim.conf"
    victim.write_bytes(b"important=1")
    (directory / "board.jsonl").symlink_to(victim)
    (directory / "board.heads.jsonl").symlink_to(tmp_path / "made-by-the-gate")
    log = EvidenceLog(chains, KEY, SigningPolicy(every=1))
    with pytest.raises(EvidenceError, match="symbolic link"):
        await log.append("board", quiet())
    with pytest.raises(EvidenceError, match="symbolic link"):
        await chains.signatures("board")
    assert victim.read_bytes() == b"important=1"
    assert not (tmp_path / "made-by-the-gate").exists()
    # An export only reads: it never makes the directory.
    with pytest.raises(EvidenceError, match="does not exist"):
        FileChains(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing").exists()


def test_the_guard_names_its_rule_and_never_a_name() -> None:
    target = "a-" + "a" * 16
    for rule in ("rate", "size", "quiet", "address"):
        Record(Kind.GUARD_REMOVAL, {"target": target, "rule": rule})
    with pytest.raises(EvidenceError, match="rule"):
        Record(Kind.GUARD_REMOVAL, {"target": target, "rule": "spam"})
    with pytest.raises(EvidenceError, match="no name"):
        Record(Kind.GUARD_REMOVAL, {"target": target, "rule": "rate", "name": "Troll"})


async def test_a_download_makes_one_export_of_a_room_at_a_time(tmp_path: Path) -> None:
    """The hosts' download reads and signs the whole chain: clicked again while one is being
    made (or by the hosts of many rooms at once), it is refused, not made twice (issue 17)."""
    log = EvidenceLog(FileChains(tmp_path / "evidence"), KEY)
    for room in ("board", "quiz", "choir"):
        await log.append(room, Record(Kind.QUIET_ON, {"actor": PSEUDONYMS.host(room, "h")}))
    made = await asyncio.gather(
        log.export_one("board"), log.export_one("board"), return_exceptions=True
    )
    assert sum(isinstance(one, HostExport) for one in made) == 1
    assert sum(isinstance(one, ExportBusy) for one in made) == 1
    made = await asyncio.gather(
        *(log.export_one(room) for room in ("board", "quiz", "choir")), return_exceptions=True
    )
    assert [isinstance(one, ExportBusy) for one in made] == [False, False, True]
    # One at a time is all: the next click, once the last file is made, makes one.
    assert verify_export((await log.export_one("board")).data).valid


async def test_entries_stamped_out_of_order_export_by_time() -> None:
    """Each entry keeps the moment its event happened, appended as the recorder reached it (the
    hosts' records before a minute's floods): a stretch by time holds every entry between its
    first and last, and verifies though some between are stamped earlier (issue 17 review 2)."""
    log = EvidenceLog(MemoryChains(), KEY, clock=Clock())
    base = 1_796_000_000.0
    for offset in (100, 50, 200, 150):
        await log.append("board", quiet(), at=base + offset)
    since, until = moment(base + 60), moment(base + 180)
    data = await log.export("board", since=since, until=until)
    verdict = verify_export(data)
    assert verdict.valid, verdict.problem
    # From the first at or after `since` (100) to the last before `until` (150), with the 50
    # and the 200 between them.
    assert verdict.summary["entries"] == 4
