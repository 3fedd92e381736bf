"""`meetgate evidence …` as a process (issue 17): `verify` works with no config file and no
store and exits 0 valid, 1 invalid, 2 unusable, never with a trace; `key` makes and shows the
gate's key; `export` writes a room's evidence from the file chains."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.doctor import check_evidence
from gateway.errors import ConfigError
from gateway.evidence.backend import open_evidence
from gateway.evidence.entries import Kind, Record, genesis, parse_entry, seal
from gateway.evidence.export import MAX_EXPORT_BYTES
from gateway.evidence.files import FileChains
from gateway.evidence.log import EvidenceLog, SigningPolicy
from gateway.evidence.pseudonyms import Pseudonyms
from gateway.evidence.signing import load_private_key
from gateway.settings import load_settings

PSEUDONYMS = Pseudonyms(b"evidence tests' pseudonym key, 32+ bytes")


def meetgate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("MEETGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**env, "HOME": str(cwd), "XDG_RUNTIME_DIR": str(cwd)},
        check=False,
    )


def record_attack(directory: Path, key_file: Path) -> None:
    """What a flooded and moderated meeting leaves in the file chains."""
    host = PSEUDONYMS.host("board", "host")
    troll = PSEUDONYMS.admission("board", "troll")

    async def record() -> None:
        log = EvidenceLog(
            FileChains(directory),
            load_private_key(key_file.read_bytes()),
            SigningPolicy(every=2),
        )
        network = PSEUDONYMS.network("board", "network")
        for minute in ("2026-12-05T14:03Z", "2026-12-05T14:04Z"):
            await log.append(
                "board",
                Record(Kind.FLOOD_REFUSED, {"network": network, "minute": minute, "count": 300}),
            )
        await log.append("board", Record(Kind.GUARD_REMOVAL, {"target": troll, "rule": "rate"}))
        await log.append("board", Record(Kind.BAN, {"actor": host, "target": troll, "until": None}))
        await log.append("board", Record(Kind.LOCKDOWN, {"actor": host, "removed": 12}))

    asyncio.run(record())


def test_key_export_and_verify(tmp_path: Path) -> None:
    made = meetgate("evidence", "key", "--generate", "evidence-key.pem", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    key_file = tmp_path / "evidence-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = meetgate("evidence", "key", "--generate", "evidence-key.pem", cwd=tmp_path)
    assert again.returncode == 2 and "never overwritten" in again.stderr
    assert key_file.read_bytes() != b""

    config = tmp_path / "meetgate.toml"
    assert (
        meetgate("init", "--path", str(config), "--algorithm", "HS256", cwd=tmp_path).returncode
        == 0
    )
    with config.open("a", encoding="utf-8") as handle:
        handle.write('\n[evidence]\nkey_file = "evidence-key.pem"\ndirectory = "evidence"\n')
    shown = meetgate("evidence", "key", "--config", str(config), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    fingerprint_line = next(line for line in shown.stdout.splitlines() if "fingerprint" in line)
    fingerprint = fingerprint_line.split(":", 1)[1].strip()
    assert fingerprint in made.stdout

    record_attack(tmp_path / "evidence", key_file)
    output = tmp_path / "board-evidence.jsonl"
    exported = meetgate(
        "evidence",
        "export",
        "--config",
        str(config),
        "--room",
        "board",
        "--output",
        str(output),
        cwd=tmp_path,
    )
    assert exported.returncode == 0, exported.stderr
    assert "5 entries" in exported.stdout

    # Checked elsewhere, with nothing of the gate: an empty directory, no config.
    elsewhere = tmp_path / "recipient"
    elsewhere.mkdir()
    copy = elsewhere / "evidence.jsonl"
    copy.write_bytes(output.read_bytes())
    valid = meetgate("evidence", "verify", str(copy), "--key", fingerprint, cwd=elsewhere)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert "valid: room board" in valid.stdout
    assert "ban 1" in valid.stdout and "flood refused 2" in valid.stdout

    wrong_key = meetgate("evidence", "verify", str(copy), "--key", "0" * 64, cwd=elsewhere)
    assert wrong_key.returncode == 1 and "another key" in wrong_key.stdout

    lines = copy.read_bytes().split(b"\n")
    ban = next(i for i, line in enumerate(lines) if b'"kind":"ban"' in line)
    lines[ban] = lines[ban].replace(b'"until":null', b'"until":"2026-12-06T00:00:00.000Z"')
    copy.write_bytes(b"\n".join(lines))
    tampered = meetgate("evidence", "verify", str(copy), cwd=elsewhere)
    assert tampered.returncode == 1
    assert "INVALID" in tampered.stdout and "entry seq 4 (ban," in tampered.stdout
    assert "Traceback" not in tampered.stdout + tampered.stderr

    # A slice by time still verifies.
    part = tmp_path / "part.jsonl"
    sliced = meetgate(
        "evidence",
        "export",
        "--config",
        str(config),
        "--room",
        "board",
        "--output",
        str(part),
        "--since",
        "2000-01-01T00:00",
        cwd=tmp_path,
    )
    assert sliced.returncode == 0, sliced.stderr
    assert meetgate("evidence", "verify", str(part), cwd=elsewhere).returncode == 0

    def export(room: str, to: str) -> subprocess.CompletedProcess[str]:
        args = ("--config", str(config), "--room", room, "--output", to)
        return meetgate("evidence", "export", *args, cwd=tmp_path)

    # A room with no chain: said, and no file that would pass for its (empty) evidence.
    unknown = export("nobody-here", "nobody.jsonl")
    assert unknown.returncode != 0 and "no evidence for room nobody-here" in unknown.stderr
    assert not (tmp_path / "nobody.jsonl").exists()
    # The stored ban re-written and the chain re-made after it was signed (the repro of the
    # review): no export, no file.
    stored = tmp_path / "evidence" / "board.jsonl"
    entries = [parse_entry(line) for line in stored.read_bytes().splitlines()]
    head = genesis("board")
    rewritten = []
    for entry in entries:
        fields = dict(entry.fields)
        if entry.kind is Kind.BAN:
            fields["target"] = PSEUDONYMS.admission("board", "a victim")
        sealed = seal(head, Record(entry.kind, fields), entry.at)
        rewritten.append(sealed.line + b"\n")
        head = sealed.head
    stored.write_bytes(b"".join(rewritten))
    refused = export("board", "rewritten.jsonl")
    assert refused.returncode != 0 and "seq 4" in refused.stderr, refused.stderr
    assert not (tmp_path / "rewritten.jsonl").exists()
    assert "Traceback" not in refused.stderr


def test_verify_exit_codes_for_what_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "garbage").write_bytes(b"\x00\xff not an export\n")
    (tmp_path / "folder").mkdir()
    # One line of 1 MiB; newlines past the bound on an export's size (sparse: no disk).
    (tmp_path / "huge-line").write_bytes(b"x" * (1024 * 1024) + b"\n")
    with (tmp_path / "too-large").open("wb") as handle:
        handle.write(b"\n" * 4096)
        handle.truncate(MAX_EXPORT_BYTES + 1)
    os.mkfifo(tmp_path / "fifo")
    # An anchor of 4,300 digits (the str() of int limit): a verdict, never a trace.
    (tmp_path / "big-seq").write_bytes(
        b'{"anchor":{"hash":"' + b"0" * 64 + b'","seq":' + b"9" * 4300 + b"}}\n{}\n{}\n"
    )
    cases = {
        ("evidence", "verify", "missing.jsonl"): (2, "does not exist"),
        ("evidence", "verify", "folder"): (2, "is a directory"),
        ("evidence", "verify"): (2, "required"),
        ("evidence", "verify", "garbage", "--key", "abc"): (2, "fingerprint"),
        ("evidence", "verify", "garbage", "--key", "z" * 64): (2, "fingerprint"),
        ("evidence", "verify", "huge-line"): (2, "longer than any line"),
        ("evidence", "verify", "too-large"): (2, "larger than any export"),
        ("evidence", "verify", "fifo"): (2, "not a regular file"),
        ("evidence", "verify", "big-seq"): (1, "INVALID"),
        ("evidence", "verify", "garbage"): (1, "INVALID"),
        ("evidence", "export", "--room", "board", "--output", "x"): (2, ""),
        ("evidence", "export", "--room", "../etc", "--output", "x"): (2, "room"),
    }
    for args, (code, words) in cases.items():
        done = meetgate(*args, cwd=tmp_path)
        assert done.returncode == code, (args, done.stdout, done.stderr)
        assert words in done.stdout + done.stderr, args
        assert "Traceback" not in done.stdout + done.stderr, args


def test_a_directory_others_can_write_stops_the_gate_and_doctor_says_so(tmp_path: Path) -> None:
    """The evidence directory must be the gate's user's alone: `serve` does not start with one
    others can write (said in one line, no trace), and doctor fails it; doctor warns of a key
    file others can read (issue 17 review)."""
    config = tmp_path / "meetgate.toml"
    made = meetgate("init", "--path", str(config), "--algorithm", "HS256", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert meetgate("evidence", "key", "--generate", "key.pem", cwd=tmp_path).returncode == 0
    (tmp_path / "key.pem").chmod(0o644)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with config.open("a", encoding="utf-8") as handle:
        handle.write('\n[evidence]\nkey_file = "key.pem"\ndirectory = "shared"\n')
    settings = load_settings(config, environ={}, allow_ephemeral=False)
    found = {finding.check: finding for finding in check_evidence(settings)}
    assert found["evidence directory"].verdict == "FAIL"
    assert "written by other users" in found["evidence directory"].detail
    assert found["evidence key mode"].verdict == "WARN"
    with pytest.raises(ConfigError, match=r"\[evidence\] directory: .* other users"):
        open_evidence(settings.evidence, settings.store.url)
    refused = meetgate("serve", "--config", str(config), cwd=tmp_path)
    assert refused.returncode == 2 and "written by other users" in refused.stderr
    assert "Traceback" not in refused.stderr
    shared.chmod(0o700)
    (tmp_path / "key.pem").chmod(0o600)
    assert check_evidence(load_settings(config, environ={}, allow_ephemeral=False)) == []
