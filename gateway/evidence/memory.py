"""Chains kept in this process's memory: for tests and trial runs, gone when it stops."""

from __future__ import annotations

from gateway.evidence.entries import Head, SealedEntry, genesis
from gateway.evidence.log import Kept
from gateway.evidence.signing import SignedHead


class MemoryChains:
    """The `Chains` of one process: compare-and-append needs no lock, as no call awaits."""

    def __init__(self) -> None:
        self._entries: dict[str, list[SealedEntry]] = {}
        self._signatures: dict[str, list[SignedHead]] = {}

    async def head(self, chain: str) -> Head:
        entries = self._entries.get(chain)
        return entries[-1].head if entries else genesis(chain)

    async def append(self, chain: str, expected: Head, entry: SealedEntry) -> bool:
        if await self.head(chain) != expected or entry.seq != expected.seq + 1:
            return False
        self._entries.setdefault(chain, []).append(entry)
        return True

    async def entries(self, chain: str) -> list[SealedEntry]:
        return list(self._entries.get(chain, ()))

    async def tail(self, chain: str, count: int) -> list[SealedEntry]:
        return list(self._entries.get(chain, ())[-count:]) if count > 0 else []

    async def kept(self, chain: str) -> Kept:
        # Never trimmed: every chain starts at the start.
        return Kept(genesis(chain), await self.entries(chain), await self.signatures(chain))

    async def last_signature(self, chain: str) -> SignedHead | None:
        kept = self._signatures.get(chain)
        return kept[-1] if kept else None

    async def add_signature(self, chain: str, signed: SignedHead) -> None:
        self._signatures.setdefault(chain, []).append(signed)

    async def signatures(self, chain: str) -> list[SignedHead]:
        return list(self._signatures.get(chain, ()))

    async def replicated(self) -> bool:
        # No replicas: what is appended is kept as it is.
        return True

    def forget(self, chain: str) -> None:
        # Nothing is remembered of what was seen: a chain here is never found shorter.
        return None

    async def chains(self) -> list[str]:
        return sorted(self._entries)
