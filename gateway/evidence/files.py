"""Chains kept in files, for the memory store: evidence outlives a restart. One directory, per
chain an append-only JSON-lines file of entries (`<room>.jsonl`) and one of signed heads
(`<room>.heads.jsonl`), readable by the gate's user only.

Appends hold an exclusive lock on the file (flock) while they compare the head and write, so two
processes sharing the directory never fork a chain; the file calls run in a thread, off the
event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path
from typing import Final

from gateway.evidence.entries import (
    MAX_ENTRY_BYTES,
    ChainBroken,
    EvidenceError,
    Head,
    SealedEntry,
    canonical,
    genesis,
    load_object,
    parse_entry,
)
from gateway.evidence.signing import SignedHead, parse_signed_head

ENTRIES: Final = ".jsonl"
HEADS: Final = ".heads.jsonl"
# The last entry is found in the file's last bytes: a line is never longer than an entry.
TAIL_BYTES: Final = 2 * MAX_ENTRY_BYTES + 2


class FileChains:
    """The `Chains` kept under `directory`, made (mode 0700) if missing."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise EvidenceError(
                f"the evidence directory {directory} cannot be made: {exc.strerror or exc}"
            ) from exc

    def _path(self, chain: str, suffix: str) -> Path:
        return self.directory / f"{chain}{suffix}"

    async def head(self, chain: str) -> Head:
        return await asyncio.to_thread(self._head, chain)

    async def append(self, chain: str, expected: Head, entry: SealedEntry) -> bool:
        return await asyncio.to_thread(self._append, chain, expected, entry)

    async def entries(self, chain: str) -> list[SealedEntry]:
        return await asyncio.to_thread(self._entries, chain)

    async def add_signature(self, chain: str, signed: SignedHead) -> None:
        line = canonical(signed.record()) + b"\n"
        await asyncio.to_thread(self._write, self._path(chain, HEADS), line)

    async def signatures(self, chain: str) -> list[SignedHead]:
        return await asyncio.to_thread(self._signatures, chain)

    async def chains(self) -> list[str]:
        names = await asyncio.to_thread(os.listdir, self.directory)
        return sorted(
            name.removesuffix(ENTRIES)
            for name in names
            if name.endswith(ENTRIES) and not name.endswith(HEADS)
        )

    # In a thread

    def _open(self, path: Path) -> int:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)

    def _head(self, chain: str) -> Head:
        path = self._path(chain, ENTRIES)
        try:
            with path.open("rb") as handle:
                return _last_head(chain, handle.fileno())
        except FileNotFoundError:
            return genesis(chain)

    def _append(self, chain: str, expected: Head, entry: SealedEntry) -> bool:
        fd = self._open(self._path(chain, ENTRIES))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _drop_torn_tail(fd)
            if _last_head(chain, fd) != expected or entry.seq != expected.seq + 1:
                return False
            os.write(fd, entry.line + b"\n")
            os.fsync(fd)
            return True
        finally:
            os.close(fd)

    def _write(self, path: Path, line: bytes) -> None:
        fd = self._open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _drop_torn_tail(fd)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _lines(self, path: Path) -> list[bytes]:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        # A last line without its line break is a write the process did not live to finish.
        return data.split(b"\n")[:-1]

    def _entries(self, chain: str) -> list[SealedEntry]:
        entries = []
        for number, line in enumerate(self._lines(self._path(chain, ENTRIES)), start=1):
            try:
                entries.append(parse_entry(line))
            except ValueError as exc:
                raise ChainBroken(
                    f"{self._path(chain, ENTRIES)}, line {number}, is not an entry: {exc}"
                ) from None
        return entries

    def _signatures(self, chain: str) -> list[SignedHead]:
        signed = []
        for number, line in enumerate(self._lines(self._path(chain, HEADS)), start=1):
            try:
                signed.append(parse_signed_head(load_object(line)))
            except ValueError as exc:
                raise ChainBroken(
                    f"{self._path(chain, HEADS)}, line {number}, is not a signed head: {exc}"
                ) from None
        return signed


def _tail(fd: int) -> tuple[int, bytes]:
    """The file's size and its last TAIL_BYTES."""
    size = os.fstat(fd).st_size
    start = max(0, size - TAIL_BYTES)
    return size, os.pread(fd, size - start, start)


def _drop_torn_tail(fd: int) -> None:
    """Cut a last line left without its line break by a crash: it was never acknowledged, and
    what follows must start on a line of its own."""
    size, tail = _tail(fd)
    if size and not tail.endswith(b"\n"):
        os.ftruncate(fd, size - len(tail) + tail.rfind(b"\n") + 1)


def _last_head(chain: str, fd: int) -> Head:
    _, tail = _tail(fd)
    lines = tail.split(b"\n")[:-1]
    if not lines:
        return genesis(chain)
    try:
        last = parse_entry(lines[-1])
    except ValueError as exc:
        raise ChainBroken(f"the {chain} chain's last stored entry is not one: {exc}") from None
    return last.head
