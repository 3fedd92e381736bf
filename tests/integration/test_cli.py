"""The CLI against the real admin API: `meetgate init`, `room …` and `invite …`."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.settings import load_settings
from gateway.ticket_keys import load_rsa_private_key
from tests.fixtures.gateway_server import GatewayServer
from tests.fixtures.processes import free_port

pytestmark = pytest.mark.slow


def meetgate(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def admin_args(gateway: GatewayServer) -> list[str]:
    return ["--config", str(gateway.config_path)]


def test_init_writes_a_private_valid_config(tmp_path: Path) -> None:
    path = tmp_path / "meetgate.toml"
    result = meetgate("init", "--path", str(path), "--public-url", "https://meet.example.org")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings = load_settings(path, environ={})
    assert settings.secure and not settings.ephemeral
    assert len(settings.admin.token.get_secret_value()) >= 32
    assert settings.admin.token.get_secret_value() not in result.stdout

    again = meetgate("init", "--path", str(path))
    assert again.returncode == 2
    assert "--force" in again.stderr
    other = tmp_path / "other.toml"
    assert meetgate("init", "--path", str(other)).returncode == 0
    first = load_settings(path, environ={}).tickets.keys[0].private_pem
    second = load_settings(other, environ={}).tickets.keys[0].private_pem
    assert first and second and first != second


def test_init_makes_an_rs256_key_pair_by_default(tmp_path: Path) -> None:
    path = tmp_path / "meetgate.toml"
    result = meetgate("init", "--path", str(path))
    assert result.returncode == 0, result.stderr
    tickets = load_settings(path, environ={}).tickets
    assert tickets.algorithm == "RS256"
    key = tickets.keys[0]
    assert key.kid == tickets.signing_kid and key.secret is None
    # Inline: the one private file is the whole config (systemd hands it over as a credential).
    assert key.private_key is not None and key.private_key_file is None
    assert load_rsa_private_key(key.private_key.get_secret_value().encode()).key_size >= 2048
    assert list(tmp_path.iterdir()) == [path]
    assert "PRIVATE KEY" not in result.stdout
    assert "/_meetgate/keys" in result.stdout

    hs = tmp_path / "hs.toml"
    result = meetgate("init", "--path", str(hs), "--algorithm", "HS256")
    assert result.returncode == 0, result.stderr
    tickets = load_settings(hs, environ={}).tickets
    assert tickets.algorithm == "HS256"
    assert tickets.keys[0].secret is not None and tickets.keys[0].private_pem is None


def test_init_refuses_bad_values(tmp_path: Path) -> None:
    path = tmp_path / "meetgate.toml"
    result = meetgate("init", "--path", str(path), "--public-url", "ftp://nope")
    assert result.returncode == 2
    assert "public_url" in result.stderr
    assert not path.exists()


def test_serve_refuses_a_bad_config_naming_every_key(tmp_path: Path) -> None:
    path = tmp_path / "meetgate.toml"
    path.write_text('[listen]\nport = "x"\n[jitsi]\nupstream = "ftp://x"\n', encoding="utf-8")
    result = meetgate("serve", "--config", str(path))
    assert result.returncode == 2
    assert "[listen] port (MEETGATE_LISTEN__PORT)" in result.stderr
    assert "[jitsi] upstream (MEETGATE_JITSI__UPSTREAM)" in result.stderr
    assert "Traceback" not in result.stderr


def test_rooms_and_invites_round_trip(gateway: GatewayServer) -> None:
    args = admin_args(gateway)
    created = meetgate("room", "create", "cli-room", "--title", "CLI room", *args)
    assert created.returncode == 0, created.stderr
    listed = meetgate("room", "list", *args)
    assert "cli-room" in listed.stdout and "CLI room" in listed.stdout

    invite = meetgate(
        "invite",
        "create",
        "--room",
        "cli-room",
        "--name",
        "Grace Hopper",
        "--host",
        "--uses",
        "3",
        "--expires",
        "2h",
        *args,
    )
    assert invite.returncode == 0, invite.stderr
    link = invite.stdout.strip().splitlines()[-1]
    assert link.startswith(f"{gateway.url}/j/")
    invite_id = invite.stdout.split()[1]

    invites = meetgate("invite", "list", "--room", "cli-room", *args)
    assert "Grace Hopper" in invites.stdout and "0/3" in invites.stdout
    assert link.rsplit("/", 1)[1] not in invites.stdout  # the capability is shown only once

    assert meetgate("invite", "revoke", invite_id, *args).returncode == 0
    assert "revoked" in meetgate("invite", "list", "--room", "cli-room", *args).stdout
    assert meetgate("room", "delete", "cli-room", *args).returncode == 0
    assert "cli-room" not in meetgate("room", "list", *args).stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["room", "create", "Bad/Name"], "Room names use lowercase"),
        (["room", "delete", "no-such-room"], "does not exist"),
        (["invite", "create", "--room", "no-such-room", "--name", "A"], "does not exist"),
        (["invite", "create", "--room", "x", "--name", "A", "--expires", "soon"], "duration"),
        (["invite", "revoke", "0000000000000000"], "No invite"),
    ],
)
def test_clear_errors(gateway: GatewayServer, argv: list[str], message: str) -> None:
    result = meetgate(*argv, *admin_args(gateway))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_admin_api_is_a_clear_error() -> None:
    result = meetgate(
        "room", "list", "--admin-url", f"http://127.0.0.1:{free_port()}", "--admin-token", "x" * 40
    )
    assert result.returncode == 2
    assert "cannot reach the admin API" in result.stderr


def test_wrong_admin_token_is_a_clear_error(gateway: GatewayServer) -> None:
    result = meetgate("room", "list", "--admin-url", gateway.admin_url, "--admin-token", "y" * 40)
    assert result.returncode == 2
    assert "admin token" in result.stderr
