"""Chains kept in files, for the memory store: evidence outlives a restart. One directory, per
chain an append-only JSON-lines file of entries (`<room>.jsonl`) and one of signed heads
(`<room>.heads.jsonl`), readable by the gate's user only.

The directory must be the gate's user's and writable by nobody else, and every file in it is
opened relative to it, never through a symbolic link, and only if it is a regular file of the
gate's user: another local user cannot make the gate write (or read) where they choose. Appends
hold an exclusive lock on the file (flock) while they compare the head and write, so two
processes sharing the directory never fork a chain; the file calls run in a thread, off the
event loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import stat
from pathlib import Path
from typing import Final

from gateway.evidence.entries import (
    CHAIN_NAME,
    MAX_ENTRY_BYTES,
    ChainBroken,
    EvidenceError,
    Head,
    SealedEntry,
    canonical,
    check_chain_name,
    genesis,
    load_object,
    parse_entry,
)
from gateway.evidence.log import Kept
from gateway.evidence.signing import SignedHead, parse_signed_head

ENTRIES: Final = ".jsonl"
HEADS: Final = ".heads.jsonl"
# The last entry is found in the file's last bytes: a line is never longer than an entry.
TAIL_BYTES: Final = 2 * MAX_ENTRY_BYTES + 2
_DIRECTORY_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS: Final = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def check_directory(directory: Path) -> str | None:
    """What is wrong with `directory` as the evidence's (None when nothing is): it must be a
    directory of this user's, which no other user can write to."""
    try:
        facts = directory.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"the evidence directory {directory} cannot be read: {exc.strerror or exc}"
    return _directory_problem(directory, facts)


def _directory_problem(directory: Path, facts: os.stat_result) -> str | None:
    if not stat.S_ISDIR(facts.st_mode):
        return f"the evidence directory {directory} is not a directory"
    if facts.st_uid != os.geteuid():
        return (
            f"the evidence directory {directory} is not owned by the gate's user (uid"
            f" {os.geteuid()}): chown it, or run the gate as its owner"
        )
    if facts.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"the evidence directory {directory} can be written by other users: chmod 700 it"
    return None


class FileChains:
    """The `Chains` kept under `directory`, made (mode 0700) if missing and `create`; checked
    (the gate's user's, written by nobody else) either way, and held open from here on."""

    def __init__(self, directory: Path, *, create: bool = True) -> None:
        self.directory = directory
        self._fd = -1
        if create:
            try:
                directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise EvidenceError(
                    f"the evidence directory {directory} cannot be made: {exc.strerror or exc}"
                ) from exc
        try:
            fd = os.open(directory, _DIRECTORY_FLAGS)
        except FileNotFoundError:
            raise EvidenceError(f"the evidence directory {directory} does not exist") from None
        except OSError as exc:
            raise EvidenceError(
                f"the evidence directory {directory} cannot be opened: {exc.strerror or exc}"
            ) from None
        problem = _directory_problem(directory, os.fstat(fd))
        if problem is not None:
            os.close(fd)
            raise EvidenceError(problem)
        self._fd = fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()

    def _name(self, chain: str, suffix: str) -> str:
        return check_chain_name(chain) + suffix

    def _path(self, chain: str, suffix: str) -> Path:
        return self.directory / self._name(chain, suffix)

    async def head(self, chain: str) -> Head:
        return await asyncio.to_thread(self._head, chain)

    async def append(self, chain: str, expected: Head, entry: SealedEntry) -> bool:
        return await asyncio.to_thread(self._append, chain, expected, entry)

    async def entries(self, chain: str) -> list[SealedEntry]:
        return await asyncio.to_thread(self._entries, chain)

    async def tail(self, chain: str, count: int) -> list[SealedEntry]:
        return (await self.entries(chain))[-count:] if count > 0 else []

    async def kept(self, chain: str) -> Kept:
        # The heads first: each is over an entry already appended, so the entries read after
        # hold it. Files are never trimmed: every chain starts at the start.
        signed = await self.signatures(chain)
        return Kept(genesis(check_chain_name(chain)), await self.entries(chain), signed)

    async def add_signature(self, chain: str, signed: SignedHead) -> None:
        line = canonical(signed.record()) + b"\n"
        await asyncio.to_thread(self._write, self._name(chain, HEADS), line)

    async def signatures(self, chain: str) -> list[SignedHead]:
        return await asyncio.to_thread(self._signatures, chain)

    async def last_signature(self, chain: str) -> SignedHead | None:
        kept = await self.signatures(chain)
        return kept[-1] if kept else None

    async def replicated(self) -> bool:
        # No replicas: what is appended is kept as it is.
        return True

    def forget(self, chain: str) -> None:
        # Nothing is remembered of what was seen: a chain here is never found shorter.
        return None

    async def chains(self) -> list[str]:
        names = await asyncio.to_thread(os.listdir, self._fd)
        return sorted(
            chain
            for name in names
            if name.endswith(ENTRIES)
            and not name.endswith(HEADS)
            and CHAIN_NAME.fullmatch(chain := name.removesuffix(ENTRIES))
        )

    # In a thread

    def _open(self, name: str, *, write: bool) -> int | None:
        """The file `name` in the directory, opened (made, for a write) only if it is a regular
        file of this user's; None when it is missing and only read."""
        flags = _FILE_FLAGS | (os.O_RDWR | os.O_APPEND if write else os.O_RDONLY)
        created = False
        try:
            fd = os.open(name, flags, dir_fd=self._fd)
        except FileNotFoundError:
            if not write:
                return None
            try:
                fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=self._fd)
                created = True
            except FileExistsError:
                fd = os.open(name, flags, dir_fd=self._fd)
        except OSError as exc:
            raise EvidenceError(
                f"{self.directory / name} cannot be opened (a symbolic link is never followed):"
                f" {exc.strerror or exc}"
            ) from None
        facts = os.fstat(fd)
        if not stat.S_ISREG(facts.st_mode) or facts.st_uid != os.geteuid():
            os.close(fd)
            raise EvidenceError(
                f"{self.directory / name} is not a regular file of the gate's user: refused"
            )
        if created:
            # The new file's name is the directory's: it must outlive a power cut too.
            os.fsync(self._fd)
        return fd

    def _writable(self, name: str) -> int:
        fd = self._open(name, write=True)
        if fd is None:  # never: a write makes the file
            raise EvidenceError(f"{self.directory / name} cannot be made")
        return fd

    def _head(self, chain: str) -> Head:
        fd = self._open(self._name(chain, ENTRIES), write=False)
        if fd is None:
            return genesis(chain)
        try:
            return _last_head(chain, fd)
        finally:
            os.close(fd)

    def _append(self, chain: str, expected: Head, entry: SealedEntry) -> bool:
        fd = self._writable(self._name(chain, ENTRIES))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _drop_torn_tail(fd)
            if _last_head(chain, fd) != expected or entry.seq != expected.seq + 1:
                return False
            _write_all(fd, entry.line + b"\n")
            os.fsync(fd)
            return True
        finally:
            os.close(fd)

    def _write(self, name: str, line: bytes) -> None:
        fd = self._writable(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _drop_torn_tail(fd)
            _write_all(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _lines(self, name: str) -> list[bytes]:
        fd = self._open(name, write=False)
        if fd is None:
            return []
        with os.fdopen(fd, "rb") as handle:
            data = handle.read()
        # A last line without its line break is a write the process did not live to finish.
        return data.split(b"\n")[:-1]

    def _entries(self, chain: str) -> list[SealedEntry]:
        entries = []
        for number, line in enumerate(self._lines(self._name(chain, ENTRIES)), start=1):
            try:
                entries.append(parse_entry(line))
            except ValueError as exc:
                raise ChainBroken(
                    f"{self._path(chain, ENTRIES)}, line {number}, is not an entry: {exc}"
                ) from None
        return entries

    def _signatures(self, chain: str) -> list[SignedHead]:
        signed = []
        for number, line in enumerate(self._lines(self._name(chain, HEADS)), start=1):
            try:
                signed.append(parse_signed_head(load_object(line)))
            except ValueError as exc:
                raise ChainBroken(
                    f"{self._path(chain, HEADS)}, line {number}, is not a signed head: {exc}"
                ) from None
        return signed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise EvidenceError("the evidence file took no more bytes")
        view = view[written:]


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
