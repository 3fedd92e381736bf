"""Every class of configuration error, through the real CLI: `meetgate serve` and `meetgate
doctor` stop with one message naming the key (as TOML and as MEETGATE_…) or the file, a
non-zero exit and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.fixtures.processes import free_port

pytestmark = pytest.mark.slow

TOKEN = "t" * 40
SECRET = "s" * 48
PSEUDONYM = "p" * 40


def valid_config(*, listen: str = "", admin: str = "", tickets: str = "", top: str = "") -> str:
    """A config `meetgate serve` would start with (on free ports, should a case not stop it),
    with `listen`, `admin`, `tickets` and `top` lines added to their tables."""
    tickets = tickets or f'[[tickets.keys]]\nsecret = "{SECRET}"\n'
    return f"""{top}
[listen]
port = {free_port()}
{listen}
[admin]
port = {free_port()}
token = "{TOKEN}"
{admin}
[tickets]
{tickets}
[admission]
pseudonym_key = "{PSEUDONYM}"
"""


def rs256(path: str) -> str:
    return f'algorithm = "RS256"\n[[tickets.keys]]\nprivate_key_file = "{path}"\n'


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, password: bytes = b"") -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


@dataclass(frozen=True)
class Case:
    """A config directory's contents (`meetgate.toml` among them, unless `config` names what to
    pass), the environment, and what the one message must say."""

    files: dict[str, bytes | None]
    says: str
    env: dict[str, str] = field(default_factory=dict)
    config: str = "meetgate.toml"


def text(config: str) -> bytes:
    return config.encode()


CASES: dict[str, Callable[[], Case]] = {
    "unknown key": lambda: Case(
        {"meetgate.toml": text(valid_config(listen="prot = 8000"))},
        "[listen] prot (MEETGATE_LISTEN__PROT): unknown setting",
    ),
    "unknown table": lambda: Case(
        {"meetgate.toml": text(valid_config(top="[limit]\nmax_body_bytes = 1"))},
        "limit (MEETGATE_LIMIT): unknown setting",
    ),
    "wrong type": lambda: Case(
        {"meetgate.toml": text(valid_config(admin='host = ["127.0.0.1"]'))},
        "[admin] host (MEETGATE_ADMIN__HOST): Input should be a valid string",
    ),
    "out of range": lambda: Case(
        {
            "meetgate.toml": text(
                valid_config(tickets=f'ttl_seconds = 5\n[[tickets.keys]]\nsecret = "{SECRET}"')
            )
        },
        "[tickets] ttl_seconds (MEETGATE_TICKETS__TTL_SECONDS): Input should be greater than or"
        " equal to 10",
    ),
    "bad url": lambda: Case(
        {"meetgate.toml": text(valid_config(top='public_url = "meet.example.org"'))},
        "public_url (MEETGATE_PUBLIC_URL): must be the http:// or https:// address",
    ),
    "bad store url": lambda: Case(
        {"meetgate.toml": text(valid_config(top='[store]\nurl = "redis://redis:637900/0"'))},
        "[store] url (MEETGATE_STORE__URL): the port must be a number from 1 to 65535",
    ),
    "missing secret": lambda: Case(
        {"meetgate.toml": text(valid_config().replace(f'token = "{TOKEN}"', ""))},
        "[admin] token (MEETGATE_ADMIN__TOKEN): required, but not set",
    ),
    "weak secret": lambda: Case(
        {"meetgate.toml": text(valid_config().replace(PSEUDONYM, "short"))},
        "[admission] pseudonym_key (MEETGATE_ADMISSION__PSEUDONYM_KEY): must be at least 32",
    ),
    "missing file": lambda: Case({}, "config file", config="absent.toml"),
    "a directory": lambda: Case({"conf.d/x": b""}, "is a directory, not a file", config="conf.d"),
    "not utf-8": lambda: Case(
        {"meetgate.toml": b"\xff\xfe[listen]\n"}, "meetgate.toml is not UTF-8 text"
    ),
    "toml syntax": lambda: Case(
        {"meetgate.toml": text(valid_config(listen="port = = 1"))},
        "meetgate.toml is not valid TOML: ",
    ),
    "key file missing": lambda: Case(
        {"meetgate.toml": text(valid_config(tickets=rs256("keys/absent.pem")))},
        "[tickets] keys[0].private_key_file (MEETGATE_TICKETS__KEYS): ",
    ),
    "key file unreadable": lambda: Case(
        {"meetgate.toml": text(valid_config(tickets=rs256("keys"))), "keys/x": b""},
        "[tickets] keys[0].private_key_file (MEETGATE_TICKETS__KEYS): ",
    ),
    "key file not pem": lambda: Case(
        {"meetgate.toml": text(valid_config(tickets=rs256("k.pem"))), "k.pem": b"hello\n"},
        "k.pem is not a PEM private key",
    ),
    "key file not rsa": lambda: Case(
        {
            "meetgate.toml": text(valid_config(tickets=rs256("k.pem"))),
            "k.pem": pem(ec.generate_private_key(ec.SECP256R1())),
        },
        "k.pem is not an RSA key",
    ),
    "key file encrypted": lambda: Case(
        {
            "meetgate.toml": text(valid_config(tickets=rs256("k.pem"))),
            "k.pem": pem(rsa.generate_private_key(65537, 2048), password=b"passphrase"),
        },
        "k.pem is encrypted with a passphrase",
    ),
    "key too small": lambda: Case(
        {
            "meetgate.toml": text(valid_config(tickets=rs256("k.pem"))),
            # Too small is what this case is about.
            "k.pem": pem(rsa.generate_private_key(65537, 1024)),  # noqa: S505
        },
        "k.pem is a 1024-bit RSA key",
    ),
    "email codes without smtp": lambda: Case(
        {"meetgate.toml": text(valid_config(top="[email_codes]\nttl_seconds = 300"))},
        "[smtp] host (MEETGATE_SMTP__HOST): required, because [email_codes] is set",
    ),
    "values that contradict each other": lambda: Case(
        {
            "meetgate.toml": text(
                valid_config(
                    top="[limits]\nmax_connections = 100\nmax_connections_per_address = 101"
                )
            )
        },
        "[limits] (MEETGATE_LIMITS__…): max_connections_per_address must not exceed"
        " max_connections",
    ),
    "env wrong type": lambda: Case(
        {"meetgate.toml": text(valid_config())},
        "[listen] port (MEETGATE_LISTEN__PORT): Input should be a valid integer",
        env={"MEETGATE_LISTEN__PORT": "eighty"},
    ),
    "env unknown": lambda: Case(
        {"meetgate.toml": text(valid_config())},
        "[store] uri (MEETGATE_STORE__URI): unknown setting",
        env={"MEETGATE_STORE__URI": "redis://redis:6379/0"},
    ),
    "env bad json": lambda: Case(
        {"meetgate.toml": text(valid_config())},
        "[tickets] keys (MEETGATE_TICKETS__KEYS): starts with '[', so it is read as JSON, but it"
        " is not valid JSON",
        env={"MEETGATE_TICKETS__KEYS": f'[{{"secret": "{SECRET}"'},
    ),
}


def run(command: str, workdir: Path, case: Case) -> subprocess.CompletedProcess[str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MEETGATE_") and name != "PYTHONWARNINGS"
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", command, "--config", case.config],
        capture_output=True,
        text=True,
        # A case that failed to stop `serve` fails here instead of hanging the suite.
        timeout=30,
        cwd=workdir,
        env={**env, **case.env},
        check=False,
    )


@pytest.mark.parametrize("command", ["serve", "doctor"])
@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_config_stops_with_one_message_naming_the_key(
    tmp_path: Path, name: str, command: str
) -> None:
    case = CASES[name]()
    for relative, content in case.files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is not None:
            path.write_bytes(content)
    result = run(command, tmp_path, case)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert case.says in output, output
    # The secrets in the file are never repeated, whatever is wrong with it.
    assert TOKEN not in output and SECRET not in output and PSEUDONYM not in output
    if command == "serve":
        assert result.returncode == 2
        assert result.stdout == ""
        # One message: a first line saying what is wrong, then one line per bad key.
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines[0].startswith("meetgate: ")
        assert not any(line.startswith("meetgate: ") for line in lines[1:])
    else:
        assert result.returncode == 1
        assert output.startswith("FAIL  config  ")


def test_every_bad_key_is_named_at_once(tmp_path: Path) -> None:
    config = valid_config(listen="prot = 1", top='public_url = "x"')
    (tmp_path / "meetgate.toml").write_text(config, encoding="utf-8")
    case = Case({}, "", env={"MEETGATE_ADMIN__PORT": "0"})
    result = run("serve", tmp_path, case)
    assert result.returncode == 2
    for key in ("[listen] prot", "public_url (MEETGATE_PUBLIC_URL)", "[admin] port"):
        assert key in result.stderr
