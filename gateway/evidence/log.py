"""The evidence log: records sealed into one chain per room (and one for the gate), heads signed
every so many entries or seconds, slices read back for export.

`EvidenceLog` holds the rules; a `Chains` backend only keeps bytes, and appends an entry only
if the chain's head is still the one the entry was sealed after (compare-and-append), so that
replicas sharing one backend never fork a chain: memory.py, files.py, and a Redis stream per
room (redis_chains.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from cryptography.hazmat.primitives.asymmetric import ed25519

from gateway.evidence.entries import (
    ChainBroken,
    EvidenceError,
    Head,
    Record,
    SealedEntry,
    check_chain_name,
    check_links,
    genesis,
    moment,
    seal,
)
from gateway.evidence.export import Slice, build_export
from gateway.evidence.signing import SignedHead, fingerprint, public_hex, sign_head

# Attempts at appending while other writers keep moving the head; each loses only to an append
# that succeeded, so running out means a writer storm, not a fault.
APPEND_ATTEMPTS: Final = 64


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

    async def add_signature(self, chain: str, signed: SignedHead) -> None: ...

    async def signatures(self, chain: str) -> list[SignedHead]:
        """Every signed head kept, oldest first."""
        ...

    async def chains(self) -> list[str]:
        """The names of the chains that hold an entry."""
        ...


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

    async def append(self, chain: str, record: Record, at: float | None = None) -> SealedEntry:
        """Seal `record` as the chain's next entry, at `at` (seconds since the epoch; now when
        None: the recorder passes when the event happened); sign the head if that is due."""
        check_chain_name(chain)
        when = moment(self._clock() if at is None else at)
        for _ in range(APPEND_ATTEMPTS):
            head = await self._chains.head(chain)
            entry = seal(head, record, when)
            if await self._chains.append(chain, head, entry):
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
            raise EvidenceError(f"the {chain} chain moved while its loss was being recorded")
        self._unsigned_since.setdefault(chain, self._clock())
        await self._sign_if_due(chain, entry.head)
        return entry

    async def sign_due(self) -> list[SignedHead]:
        """Sign each chain whose oldest unsigned entry (appended here) waited `seconds`: run
        every few seconds, so that no entry stays unsigned for long."""
        signed = []
        for chain, since in list(self._unsigned_since.items()):
            if self._clock() - since >= self._policy.seconds:
                signed.append(await self.sign(chain))
        return signed

    async def sign(self, chain: str) -> SignedHead:
        """Sign the chain's head now, and keep the signature with the chain."""
        check_chain_name(chain)
        head = await self._chains.head(chain)
        signed = sign_head(self._key, chain, head, moment(self._clock()))
        await self._chains.add_signature(chain, signed)
        self._signed[chain] = head.seq
        self._unsigned_since.pop(chain, None)
        return signed

    async def _sign_if_due(self, chain: str, head: Head) -> None:
        if chain not in self._signed:
            kept = await self._chains.signatures(chain)
            self._signed[chain] = max((s.seq for s in kept), default=0)
        waited = self._clock() - self._unsigned_since.get(chain, self._clock())
        if head.seq - self._signed[chain] >= self._policy.every or waited >= self._policy.seconds:
            await self.sign(chain)

    async def read(self, chain: str, since: str | None = None, until: str | None = None) -> Slice:
        """The entries from the first at or after `since` to the last before `until` (moments,
        as entries write them), with every entry between them: a contiguous slice. Raises
        ChainBroken if what is kept does not chain."""
        check_chain_name(chain)
        entries = await self._chains.entries(chain)
        start = genesis(chain)
        if entries and entries[0].seq != 1:
            # A backend bounded by retention keeps the latest entries; the first kept is trusted
            # as far as it goes, its link checked against what follows.
            start = Head(entries[0].seq - 1, entries[0].prev)
        check_links(start, entries)
        first = next(
            (i for i, e in enumerate(entries) if since is None or e.at >= since), len(entries)
        )
        last = max((i for i, e in enumerate(entries) if until is None or e.at < until), default=-1)
        chosen = entries[first : last + 1] if first <= last else []
        anchor = entries[first - 1].head if first > 0 else start
        seqs = {e.seq: e.hash for e in chosen}
        signed = tuple(
            s
            for s in await self._chains.signatures(chain)
            if s.key == self.key_fingerprint and seqs.get(s.seq) == s.hash
        )
        return Slice(chain, anchor, tuple(chosen), signed)

    async def export(self, chain: str, since: str | None = None, until: str | None = None) -> bytes:
        """The slice `read` gives, as one self-contained file signed now (export.py)."""
        part = await self.read(chain, since, until)
        return build_export(part, self._key, moment(self._clock()), since, until)

    async def chain_names(self) -> list[str]:
        return await self._chains.chains()
