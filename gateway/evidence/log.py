"""The evidence log: records sealed into one chain per room (and one for the gate), heads signed
every so many entries or seconds, slices read back for export.

`EvidenceLog` holds the rules; a `Chains` backend only keeps bytes, and appends an entry only
if the chain's head is still the one the entry was sealed after (compare-and-append), so that
replicas sharing one backend never fork a chain: memory.py, files.py, and a Redis stream per
room (redis_chains.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.errors import StoreUnavailable
from gateway.evidence.entries import (
    ChainBroken,
    EvidenceError,
    Head,
    Kind,
    Record,
    SealedEntry,
    check_chain_name,
    check_links,
    genesis,
    moment,
    seal,
)
from gateway.evidence.export import Slice, build_export
from gateway.evidence.signing import (
    SignedHead,
    fingerprint,
    head_signature_valid,
    public_hex,
    sign_head,
)

log = logging.getLogger("meetgate.evidence")

# Attempts at appending while other writers keep moving the head; each loses only to an append
# that succeeded, so running out means a writer storm, not a fault.
APPEND_ATTEMPTS: Final = 64


@dataclass(frozen=True, slots=True)
class Kept:
    """What a backend keeps of a chain, read at one moment: `start` is the head its first kept
    entry follows as the backend recorded it (the chain's genesis where nothing is ever
    trimmed; where entries are trimmed, the head before the first kept one, or None when the
    backend recorded none), the entries oldest first, the signed heads oldest first."""

    start: Head | None
    entries: list[SealedEntry]
    signed: list[SignedHead]


class Chains(Protocol):
    """Where chains are kept. Every method takes a checked chain name."""

    async def head(self, chain: str) -> Head:
        """The last entry's seq and hash; `genesis(chain)` while the chain is empty."""
        ...

    async def append(self, chain: str, expected: Head, entry: SealedEntry) -> bool:
        """Add `entry` if the head is still `expected` (then True); else nothing (False)."""
        ...

    async def entries(self, chain: str) -> list[SealedEntry]:
        """Every entry kept, oldest first."""
        ...

    async def tail(self, chain: str, count: int) -> list[SealedEntry]:
        """The last `count` entries kept (fewer if there are not as many), oldest first."""
        ...

    async def kept(self, chain: str) -> Kept:
        """The chain's start, entries and signed heads, as one read: no signed head in it is
        over an entry the read does not hold."""
        ...

    async def last_signature(self, chain: str) -> SignedHead | None:
        """The signed head kept last, if any."""
        ...

    async def add_signature(self, chain: str, signed: SignedHead) -> None: ...

    async def signatures(self, chain: str) -> list[SignedHead]:
        """Every signed head kept, oldest first."""
        ...

    async def chains(self) -> list[str]:
        """The names of the chains that hold an entry."""
        ...

    async def replicated(self) -> bool:
        """Whether what was appended so far is kept by a replica of the store too (True where
        the store has none): an append only the primary holds is lost by a failover."""
        ...

    def forget(self, chain: str) -> None:
        """Forget the furthest head seen of `chain`: its loss is recorded, and the chain goes
        on from the head the store keeps."""
        ...


# A host's download reads and signs the room's whole chain (some 30 MB at the Redis store's
# bound): one at a time per room, and this many at once in a process.
MAX_EXPORTS: Final = 2
# What a refused download is told to wait, in seconds.
EXPORT_RETRY_SECONDS: Final = 5.0


class ExportBusy(EvidenceError):
    """An export of this chain, or as many exports as a process makes at once, is being made:
    try again shortly."""

    retry_after = EXPORT_RETRY_SECONDS


class ChainFull(EvidenceError):
    """The chain holds as many entries as it keeps, and the entry is of a kind an attacker makes
    many of (entries.BOUNDED_KINDS): it is not kept, and nothing older is dropped for it."""


class ChainRewound(ChainBroken):
    """The backend holds a chain shorter than one this process saw: it lost entries (a store
    flushed, or restored from an older copy). `seen` is the head seen, `stored` the one kept."""

    def __init__(self, chain: str, seen: Head, stored: Head) -> None:
        super().__init__(
            f"the {chain} chain is kept up to seq {stored.seq}, but this gate saw it reach seq"
            f" {seen.seq}: the store lost entries (flushed, or restored from an older copy)"
        )
        self.chain = chain
        self.seen = seen
        self.stored = stored

    @property
    def lost(self) -> int:
        """How many entries are known to be gone."""
        return max(0, self.seen.seq - self.stored.seq)


@dataclass(frozen=True, slots=True)
class SigningPolicy:
    """A chain's head is signed once `every` entries follow its last signature, or once an entry
    has waited unsigned `seconds`."""

    every: int = 100
    seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class HostExport:
    """An export as a host downloads it: the file, and whether it starts after a break in the
    chain (what comes before the break is left out)."""

    data: bytes
    after_break: bool


def last_break(entries: list[SealedEntry]) -> int | None:
    """The index of the entry after the last broken link among `entries` (one that is not the
    next seq, or does not link to the entry before it), or None if every link holds."""
    for index in range(len(entries) - 1, 0, -1):
        if not follows(entries[index - 1], entries[index]):
            return index
    return None


def follows(before: SealedEntry, entry: SealedEntry) -> bool:
    """Whether `entry` is the next seq after `before` and links to it."""
    return entry.seq == before.seq + 1 and entry.prev == before.hash


class EvidenceLog:
    """Appends, signs and reads the evidence chains kept in `chains`."""

    def __init__(
        self,
        chains: Chains,
        key: ed25519.Ed25519PrivateKey,
        policy: SigningPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._chains = chains
        self._key = key
        self._policy = policy or SigningPolicy()
        self._clock = clock
        self.key_fingerprint = fingerprint(public_hex(key))
        # Per chain: the seq last signed and when the oldest unsigned entry was appended here.
        self._signed: dict[str, int] = {}
        self._unsigned_since: dict[str, float] = {}
        # The chains an export is being made of (export_one).
        self._exporting: set[str] = set()
        # Per chain: the entry whose append's reply was lost (it may be kept).
        self._unsure: dict[str, SealedEntry] = {}

    async def append(self, chain: str, record: Record, at: float | None = None) -> SealedEntry:
        """Seal `record` as the chain's next entry, at `at` (seconds since the epoch; now when
        None: the recorder passes when the event happened); sign the head if that is due."""
        check_chain_name(chain)
        when = moment(self._clock() if at is None else at)
        # The last attempt of this record's may have appended though its reply was lost: a
        # head that is that very entry (its hash covers the record and the moment) is this
        # record appended, not one to append twice.
        tried = self._unsure.pop(chain, None)
        for _ in range(APPEND_ATTEMPTS):
            head = await self._chains.head(chain)
            if tried is not None and head == tried.head:
                entry = tried
                break
            tried = None
            entry = seal(head, record, when)
            try:
                appended = await self._chains.append(chain, head, entry)
            except StoreUnavailable:
                self._unsure[chain] = entry
                raise
            if appended:
                break
            await asyncio.sleep(0)
        else:
            raise EvidenceError(f"the {chain} chain kept moving: {APPEND_ATTEMPTS} attempts lost")
        self._unsigned_since.setdefault(chain, self._clock())
        await self._sign_if_due(chain, entry.head)
        return entry

    async def bridge(self, lost: ChainRewound, record: Record) -> SealedEntry:
        """Seal `record` (saying what was lost) after the head this process saw, in place of
        the shorter chain the backend keeps: the chain goes on from what was seen, and a read
        shows the hole (an anchor past the start, or a break after the entries that survived)
        instead of a chain that silently starts over."""
        chain = check_chain_name(lost.chain)
        entry = seal(lost.seen, record, moment(self._clock()))
        if not await self._chains.append(chain, lost.stored, entry):
            # Another writer moved the chain meanwhile (it bridged from a head of its own, or
            # appended): the loss is said at the chain's head as the store keeps it.
            self._chains.forget(chain)
            return await self.append(chain, record)
        # Signed at once, whatever was signed before the loss: this gate vouches that the
        # chain goes on from the head it saw, and later heads chain onto this one.
        await self._sign_head(chain, entry.head)
        return entry

    async def replicated(self) -> bool:
        """Whether the store's replicas hold what was appended (True without replicas)."""
        return await self._chains.replicated()

    async def sign_due(self) -> list[SignedHead]:
        """Sign each chain whose oldest unsigned entry (appended here) waited `seconds`: run
        every few seconds, so that no entry stays unsigned for long."""
        signed = []
        for chain, since in list(self._unsigned_since.items()):
            if self._clock() - since >= self._policy.seconds:
                last = await self._chains.last_signature(chain)
                head = await self._chains.head(chain)
                if last is not None and last.key == self.key_fingerprint and last.seq >= head.seq:
                    # Another writer signed it meanwhile.
                    self._signed[chain] = last.seq
                    self._unsigned_since.pop(chain, None)
                    continue
                signed.append(await self.sign(chain))
        return signed

    async def sign(self, chain: str) -> SignedHead:
        """Sign the chain's head now, and keep the signature with the chain: only a head that
        chains onto the last one this key signed (or, with none to go by, a chain that reads
        whole): a store whose entries were altered since is never vouched for."""
        check_chain_name(chain)
        last = await self._chains.last_signature(chain)
        if last is not None and last.key == self.key_fingerprint and last.chain == chain:
            if not head_signature_valid(self._key.public_key(), last):
                raise ChainBroken(
                    f"the {chain} chain's last signed head (seq {last.seq}) carries a signature"
                    " this gate's key did not make: the stored heads were altered"
                )
            head = await self._head_after(chain, last.head)
        else:
            head = (await self.read(chain)).head
        return await self._sign_head(chain, head)

    async def _head_after(self, chain: str, signed: Head) -> Head:
        """The chain's head, once the entries after `signed` are checked to chain onto it."""
        head = await self._chains.head(chain)
        for _ in range(APPEND_ATTEMPTS):
            if head.seq < signed.seq:
                raise ChainBroken(
                    f"the {chain} chain is kept up to seq {head.seq}, but its head of seq"
                    f" {signed.seq} was signed: entries were removed from its end"
                )
            following = await self._chains.tail(chain, head.seq - signed.seq)
            if not following or following[0].seq <= signed.seq + 1:
                break
            # Appended to since the head was read: read further back.
            head = following[-1].head
        else:
            raise EvidenceError(f"the {chain} chain kept moving: {APPEND_ATTEMPTS} attempts lost")
        after = [entry for entry in following if entry.seq > signed.seq]
        check_links(signed, after)
        if not after and head != signed:
            raise ChainBroken(
                f"the {chain} chain's entry seq {signed.seq} is not the one its signed head is"
                " over: it was altered, or the chain re-made after it was signed"
            )
        return after[-1].head if after else signed

    async def _sign_head(self, chain: str, head: Head) -> SignedHead:
        signed = sign_head(self._key, chain, head, moment(self._clock()))
        await self._chains.add_signature(chain, signed)
        self._signed[chain] = head.seq
        self._unsigned_since.pop(chain, None)
        return signed

    async def _sign_if_due(self, chain: str, head: Head) -> None:
        if chain not in self._signed:
            last = await self._chains.last_signature(chain)
            self._signed[chain] = last.seq if last is not None else 0
        waited = self._clock() - self._unsigned_since.get(chain, self._clock())
        if head.seq - self._signed[chain] < self._policy.every and waited < self._policy.seconds:
            return
        # Due by this process's count: due by the chain's, which other writers sign too?
        last = await self._chains.last_signature(chain)
        if last is not None and last.seq > self._signed[chain]:
            self._signed[chain] = last.seq
            if head.seq - last.seq < self._policy.every and waited < self._policy.seconds:
                return
        try:
            await self.sign(chain)
        except ChainBroken as exc:
            # The entry is appended; the break is the store's, and every read says it.
            log.warning("evidence: the %s chain's head is not signed: %s", chain, exc)

    async def read(
        self,
        chain: str,
        since: str | None = None,
        until: str | None = None,
        *,
        after_break: bool = False,
        after_deleted: bool = False,
    ) -> Slice:
        """The entries from the first at or after `since` to the last before `until` (moments,
        as entries write them), with every entry between them: a contiguous slice, anchored on
        the entry before it. With `after_break`, the slice starts no earlier than the entry
        after the chain's last break (anchored on what that entry links to; `Slice.after_break`
        says whether there was one). With `after_deleted`, it starts after the chain's last
        `room deleted` entry (a room made again under a deleted room's name: the old room's
        entries are not its hosts'). Raises ChainBroken if the slice does not chain, or does
        not match a head this key signed: an entry altered, removed from either end, or
        re-chained after it was signed. What lies outside the slice is not checked: a break
        before it (entries a store lost) does not stop the export of what follows.

        The backend's read is paged; the checks run in a thread, as long chains take seconds."""
        check_chain_name(chain)
        kept = await self._chains.kept(chain)
        return await asyncio.to_thread(
            self._select, chain, kept, since, until, after_break, after_deleted
        )

    def _select(
        self,
        chain: str,
        kept: Kept,
        since: str | None,
        until: str | None,
        after_break: bool,
        after_deleted: bool = False,
    ) -> Slice:
        entries = kept.entries
        own, unchecked = self._checked_heads(chain, kept.signed)
        first = next(
            (i for i, e in enumerate(entries) if since is None or e.at >= since), len(entries)
        )
        if after_deleted:
            deleted = next(
                (
                    i
                    for i in range(len(entries) - 1, -1, -1)
                    if entries[i].kind == Kind.ROOM_DELETED
                ),
                None,
            )
            if deleted is not None:
                first = max(first, deleted + 1)
        broke = False
        if after_break:
            cut = last_break(entries)
            if cut is not None:
                broke = True
                first = max(first, cut)
        last_index = max(
            (i for i, e in enumerate(entries) if until is None or e.at < until), default=-1
        )
        chosen = entries[first : last_index + 1] if first <= last_index else []
        if first == 0 or not entries:
            anchor = self._start(chain, kept, own)
        elif first < len(entries) and not follows(entries[first - 1], entries[first]):
            # A break just before the slice (entries a store lost) is not in it: the slice is
            # anchored on what its first entry links to, and says nothing of what is lost.
            anchor = Head(entries[first].seq - 1, entries[first].prev)
        else:
            anchor = entries[first - 1].head
        check_links(anchor, chosen)
        last = entries[-1].head if entries else anchor
        end = chosen[-1].seq if chosen else anchor.seq
        hashes = {e.seq: e.hash for e in chosen}
        hashes[anchor.seq] = anchor.hash
        for signed in own:
            what = f"the {chain} chain's signed head of seq {signed.seq}"
            if signed.seq > last.seq:
                raise ChainBroken(
                    f"{what} is beyond its last stored entry (seq {last.seq}): entries were"
                    " removed from its end"
                )
            if anchor.seq <= signed.seq <= end and hashes.get(signed.seq) != signed.hash:
                raise ChainBroken(
                    f"{what} does not match the stored entry seq {signed.seq}: it was altered,"
                    " or the chain re-made after it was signed"
                )
        seqs = {e.seq for e in chosen}
        by_seq = {s.seq: s for s in reversed(own) if s.seq in seqs}
        heads = tuple(by_seq[seq] for seq in sorted(by_seq))
        return Slice(chain, anchor, tuple(chosen), heads, unchecked, after_break=broke)

    def _checked_heads(self, chain: str, stored: list[SignedHead]) -> tuple[list[SignedHead], int]:
        """The stored heads this key signed, each signature checked (ChainBroken for one it did
        not make), and how many another key signed: those cannot be checked here (a key used
        before this one) and are left out of exports."""
        public = self._key.public_key()
        own = []
        others = 0
        for signed in stored:
            if signed.chain != chain:
                raise ChainBroken(
                    f"a signed head kept with the {chain} chain is another room's (seq"
                    f" {signed.seq}): the stored heads were altered"
                )
            if signed.key != self.key_fingerprint:
                others += 1
                continue
            if not head_signature_valid(public, signed):
                raise ChainBroken(
                    f"the {chain} chain's signed head of seq {signed.seq} carries a signature"
                    " this gate's key did not make: the stored heads were altered"
                )
            own.append(signed)
        return own, others

    def _start(self, chain: str, kept: Kept, own: list[SignedHead]) -> Head:
        """The head the first kept entry follows, if the backend's record of its start or a
        signed head vouches for it; ChainBroken if neither does."""
        if not kept.entries:
            return kept.start or genesis(chain)
        first = kept.entries[0]
        follows = Head(first.seq - 1, first.prev)
        if follows == genesis(chain) or follows == kept.start:
            return follows
        if kept.start is None and any(s.head == follows for s in own):
            return follows
        raise ChainBroken(
            f"the {chain} chain's first kept entry, {first.named()}, follows seq {first.seq - 1},"
            " which neither the chain's start nor a signed head vouches for: entries were"
            " removed from its front"
        )

    async def export(self, chain: str, since: str | None = None, until: str | None = None) -> bytes:
        """The slice `read` gives, as one self-contained file signed now (export.py)."""
        part = await self.read(chain, since, until)
        return await asyncio.to_thread(self.export_part, part, since, until)

    def export_part(self, part: Slice, since: str | None = None, until: str | None = None) -> bytes:
        """`part` (as `read` gives it for `since` and `until`) as one file signed now."""
        return build_export(part, self._key, moment(self._clock()), since, until)

    async def export_one(self, chain: str, since: str | None = None) -> HostExport:
        """The export of the chain from `since` (a host's download), unless this process is
        making one of the chain already, or MAX_EXPORTS of any: then ExportBusy (a download
        clicked again and again, or by many hosts at once, makes one file at a time, not one a
        click). A chain broken in that stretch (entries a store lost) is exported from after
        its last break, and `HostExport.after_break` says so."""
        check_chain_name(chain)
        if chain in self._exporting or len(self._exporting) >= MAX_EXPORTS:
            raise ExportBusy(f"an export of the {chain} chain is being made")
        self._exporting.add(chain)
        try:
            try:
                part = await self.read(chain, since, after_deleted=True)
            except ChainRewound:
                raise
            except ChainBroken:
                part = await self.read(chain, since, after_break=True, after_deleted=True)
            data = await asyncio.to_thread(self.export_part, part, since)
            return HostExport(data, part.after_break)
        finally:
            self._exporting.discard(chain)

    async def chain_names(self) -> list[str]:
        return await self._chains.chains()
