"""The CLI against the real admin API: `meetgate init`, `room …` (its policy too) and
`invite …`."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.cli import build_parser
from gateway.settings import load_settings
from gateway.ticket_keys import load_rsa_private_key
from tests.fixtures.gateway_server import GatewayServer
from tests.fixtures.http_clients import TLS
from tests.fixtures.oidc import OidcSetup
from tests.fixtures.processes import free_port, port_open, start_process, stop_process, wait_until
from tests.integration.journeys import admit

pytestmark = pytest.mark.slow


def meetgate(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
        check=False,
    )


def without_config(tmp_path: Path) -> dict[str, str]:
    """An environment with no MEETGATE_* setting, whose ephemeral token file is under tmp_path."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MEETGATE_")}
    return {**env, "XDG_RUNTIME_DIR": str(tmp_path), "HOME": str(tmp_path)}


def admin_args(gateway: GatewayServer) -> list[str]:
    return ["--config", str(gateway.config_path)]


def help_text(*command: str) -> str:
    """What `meetgate <command> --help` prints (in-process: the parser is the whole answer)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        build_parser().parse_args([*command, "--help"])
    assert done.value.code == 0
    return out.getvalue()


def help_entries(text: str) -> dict[str, str]:
    """Each argument, option and subcommand the help lists, with its help text (empty if none)."""
    entries: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            current = ""  # a section heading: "options:", "Example:"
            continue
        match = re.fullmatch(r"( {2,4})(\S.*?)(?: {2,}(\S.*))?", line)
        if match and len(match[1]) in (2, 4) and not line.startswith("  meetgate"):
            current = match[2].split(",")[-1].split()[0]
            entries[current] = match[3] or ""
        elif current and line.startswith(" " * 6):
            entries[current] += " " + line.strip()
    return entries


def every_command(*command: str) -> list[tuple[str, ...]]:
    text = help_text(*command)
    found = [command]
    listed = text.partition("positional arguments:")[2].partition("options:")[0]
    for name in re.findall(r"^    (\S+)", listed, flags=re.MULTILINE):
        found += every_command(*command, name)
    return found


def test_every_command_and_option_has_a_help_line_and_an_example() -> None:
    commands = every_command()
    assert ("invite", "create") in commands and ("store", "acknowledge-loss") in commands
    assert len(commands) >= 15
    for command in commands:
        text = help_text(*command)
        entries = help_entries(text.partition("\nExample:")[0])
        assert entries, command
        for name, described in entries.items():
            assert described, f"meetgate {' '.join(command)}: {name} has no help"
        examples = text.partition("\nExample:\n")[2].splitlines()
        assert examples and examples[0].startswith("  meetgate"), f"meetgate {command}: no example"
    host_link = help_text("invite", "create").partition("Example:")[2]
    assert "--host" in host_link and "a host link" in host_link


def test_a_usage_error_points_at_the_examples() -> None:
    result = meetgate("invite", "create", "--room", "board")
    assert result.returncode == 2
    assert "required: --name" in result.stderr
    assert "see `meetgate invite create --help` for examples" in result.stderr


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
    assert key.key_id == tickets.signing_kid and key.secret is None
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


def git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )


def test_init_keeps_its_secrets_out_of_git(tmp_path: Path) -> None:
    assert git("init", "--quiet", cwd=tmp_path).returncode == 0
    # A folder init makes for the config is private and ignored as a whole.
    path = tmp_path / "secrets" / "meetgate.toml"
    result = meetgate("init", "--path", str(path))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert "*" in (path.parent / ".gitignore").read_text().splitlines()
    assert git("check-ignore", "--quiet", "secrets/meetgate.toml", cwd=tmp_path).returncode == 0
    assert git("status", "--porcelain", "--untracked-files=all", cwd=tmp_path).stdout == ""
    assert "git work tree" not in result.stdout

    # A config written into a folder of the work tree that exists is not ignored: init says so.
    exposed = tmp_path / "meetgate.toml"
    told = meetgate("init", "--path", str(exposed))
    assert told.returncode == 0, told.stderr
    assert f"{exposed} holds secrets and lies in the git work tree" in told.stdout
    assert not (tmp_path / ".gitignore").exists()
    (tmp_path / ".gitignore").write_text("meetgate.toml\n")
    quiet = meetgate("init", "--path", str(exposed), "--force")
    assert quiet.returncode == 0, quiet.stderr
    assert "git work tree" not in quiet.stdout


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
    assert invite_id in invites.stdout and "0/3" in invites.stdout
    # No list of who was invited: the name is shown once, when the invite is made.
    assert "Grace Hopper" not in invites.stdout
    assert link.rsplit("/", 1)[1] not in invites.stdout  # the capability is shown only once

    assert meetgate("invite", "revoke", invite_id, *args).returncode == 0
    assert "revoked" in meetgate("invite", "list", "--room", "cli-room", *args).stdout
    assert meetgate("room", "delete", "cli-room", "--yes", *args).returncode == 0
    assert "cli-room" not in meetgate("room", "list", *args).stdout


def test_ephemeral_join_links_use_the_port_the_gate_listens_on(tmp_path: Path) -> None:
    gate_port, admin_port = free_port(), free_port()
    env = {
        **without_config(tmp_path),
        "MEETGATE_LISTEN__PORT": str(gate_port),
        "MEETGATE_ADMIN__PORT": str(admin_port),
    }
    client_env = without_config(tmp_path)
    token_file = tmp_path / "meetgate" / "ephemeral-admin.json"
    log = tmp_path / "serve.log"
    server = start_process([sys.executable, "-m", "gateway.cli", "serve"], log, env, tmp_path)

    def started() -> bool:
        assert server.poll() is None, log.read_text()
        return token_file.exists() and port_open(gate_port)

    try:
        wait_until(started, timeout=30, what="an ephemeral `meetgate serve`")
        assert json.loads(token_file.read_text())["url"].endswith(f":{admin_port}")
        made = meetgate("room", "create", "ephemeral-room", cwd=tmp_path, env=client_env)
        assert made.returncode == 0, made.stderr
        invite = meetgate(
            "invite",
            "create",
            "--room",
            "ephemeral-room",
            "--name",
            "Ada",
            cwd=tmp_path,
            env=client_env,
        )
        assert invite.returncode == 0, invite.stderr
        link = invite.stdout.strip().splitlines()[-1]
        assert link.startswith(f"http://127.0.0.1:{gate_port}/j/"), link
        with httpx.Client(trust_env=False, timeout=10, verify=TLS) as browser:
            assert browser.get(link).status_code == 200
    finally:
        stop_process(server)
    started_log = log.read_text()
    assert f"Join links start with http://127.0.0.1:{gate_port}" in started_log
    # Authlib's notice that it falls back from httpx2 to httpx is not printed at every start.
    assert "deprecat" not in started_log.lower()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["room", "create", "Bad/Name"], "Room names use lowercase"),
        (
            ["room", "delete", "no-such-room", "--yes"],
            "does not exist.\n`meetgate room list` shows",
        ),
        (
            ["invite", "create", "--room", "no-such-room", "--name", "A"],
            "does not exist.\n`meetgate room list` shows the rooms",
        ),
        (["invite", "create", "--room", "x", "--name", "A", "--expires", "soon"], "use e.g. 30m"),
        (
            ["invite", "revoke", "0000000000000000"],
            "No invite has this id.\n`meetgate invite list --room ROOM` shows the ids.",
        ),
    ],
)
def test_clear_errors(gateway: GatewayServer, argv: list[str], message: str) -> None:
    result = meetgate(*argv, *admin_args(gateway))
    # An id no invite has matched nothing (1, as grep's); the others are refusals (2).
    assert result.returncode == (1 if argv[:2] == ["invite", "revoke"] else 2)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["invite", "create", "--room", "x", "--name", "A", "--uses", "0"],
            "meetgate: --uses: Input should be greater than or equal to 1\n",
        ),
        (
            ["invite", "create", "--room", "x", "--name", "A", "--expires", "30s"],
            "meetgate: --expires (in seconds): Input should be greater than or equal to 60\n",
        ),
        (
            ["room", "create", "long-title", "--title", "T" * 500],
            "meetgate: --title: String should have at most",
        ),
    ],
)
def test_a_refused_value_is_named_by_its_option(
    gateway: GatewayServer, argv: list[str], message: str
) -> None:
    result = meetgate(*argv, *admin_args(gateway))
    assert result.returncode == 2
    assert message in result.stderr
    # Not the admin API's names for them.
    assert "body." not in result.stderr and "max_uses" not in result.stderr


def test_unreachable_admin_api_is_a_clear_error() -> None:
    result = meetgate(
        "room", "list", "--admin-url", f"http://127.0.0.1:{free_port()}", "--admin-token", "x" * 40
    )
    assert result.returncode == 3  # docs/operations.md: worth a retry, unlike a refusal
    assert "cannot reach the admin API" in result.stderr


def test_wrong_admin_token_is_a_clear_error(gateway: GatewayServer) -> None:
    result = meetgate("room", "list", "--admin-url", gateway.admin_url, "--admin-token", "y" * 40)
    assert result.returncode == 2
    assert "admin token" in result.stderr
    assert "--admin-token, MEETGATE_ADMIN__TOKEN or --config" in result.stderr


def test_room_policy_changes_who_may_enter_at_the_next_join(oidc: OidcSetup) -> None:
    # This gateway names an SMTP server, so a room may offer e-mail codes.
    gateway = oidc.gateway
    args = admin_args(gateway)
    room = f"cli-policy-{secrets.token_hex(4)}"
    assert meetgate("room", "create", room, *args).returncode == 0
    link = gateway.invite_token(gateway.create_invite(room, "Ada Invited"))
    with httpx.Client(base_url=gateway.url, trust_env=False, timeout=30, verify=TLS) as browser:
        # Invites only, the default: the gate page offers nobody else a way in.
        assert browser.get(f"/_meetgate/enter/{room}").status_code == 403

        lobby = meetgate("room", "policy", room, "--lobby", "--no-invite", *args)
        assert lobby.returncode == 0, lobby.stderr
        assert lobby.stdout.strip() == f"room {room}: ways in: lobby"
        page = browser.get(f"/_meetgate/enter/{room}")
        assert page.status_code == 200 and f'action="/_meetgate/lobby/{room}"' in page.text
        assert "/_meetgate/email/" not in page.text
        # The invite made before no longer opens the room, and is not used up by trying.
        refused = browser.post(f"/j/{link}", headers={"origin": gateway.url})
        assert refused.status_code == 403 and "<code>not_allowed</code>" in refused.text

        codes = meetgate(
            "room",
            "policy",
            room,
            "--email-code",
            "--allow-domain",
            "@Uni.Example",
            "--allow-email",
            "Guest@Elsewhere.Example",
            "--host-email",
            "Chair@Uni.Example",
            *args,
        )
        assert codes.returncode == 0, codes.stderr
        assert codes.stdout.strip() == f"room {room}: ways in: invite, email_code"
        page = browser.get(f"/_meetgate/enter/{room}")
        assert f'action="/_meetgate/email/{room}/send"' in page.text
        assert f'action="/_meetgate/lobby/{room}"' not in page.text
        assert browser.post(f"/j/{link}", headers={"origin": gateway.url}).status_code == 303
    with gateway.admin() as admin:
        saved = admin.get(f"/api/v1/rooms/{room}").json()
    assert saved["policy"] == ["invite", "email_code"]
    assert saved["rules"]["allowed_domains"] == ["uni.example"]
    assert saved["rules"]["lobby"] is False
    # The addresses are counted, never listed; one can be checked.
    assert saved["rules"]["allowed_email_count"] == 1 and saved["rules"]["host_email_count"] == 1
    assert "elsewhere" not in json.dumps(saved) and "chair" not in json.dumps(saved)
    checks = {
        address: meetgate("room", "check-email", room, address, *args)
        for address in ("guest@elsewhere.example", "Chair@Uni.Example", "eve@uni.example", "a/b@x")
    }
    assert (
        checks["guest@elsewhere.example"].stdout.strip()
        == f"room {room}'s policy lists it: allowed"
    )
    assert checks["Chair@Uni.Example"].stdout.strip() == f"room {room}'s policy lists it: host"
    for address in ("eve@uni.example", "a/b@x"):
        assert checks[address].returncode == 1
        assert "lists no such address" in checks[address].stderr, checks[address].stderr
    unknown = meetgate("room", "check-email", "no-such-room", "a@b.example", *args)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--no-invite"], "A room needs at least one way in."),
        (["--oidc", "any"], "Sign-in needs an OpenID Connect provider in the configuration."),
        (["--oidc", "keycloak"], "No OpenID Connect provider is configured as keycloak."),
        (["--allow-email", "not-an-address"], "This is not a valid address: not-an-address"),
        (["--allow-domain", "uni.example/evil"], "This is not a valid domain"),
        (["--host-email", "chair@uni.example\u202e"], "control, invisible"),
        # This gateway names no SMTP server.
        (["--email-code"], "an admin must set [smtp] host (MEETGATE_SMTP__HOST) first."),
    ],
)
def test_room_policy_refuses_a_bad_policy_and_keeps_the_old_one(
    gateway: GatewayServer, flags: list[str], message: str
) -> None:
    args = admin_args(gateway)
    room = f"cli-policy-{secrets.token_hex(4)}"
    assert meetgate("room", "create", room, *args).returncode == 0
    assert meetgate("room", "policy", room, "--lobby", *args).returncode == 0
    result = meetgate("room", "policy", room, *flags, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    with gateway.admin() as admin:
        assert admin.get(f"/api/v1/rooms/{room}").json()["policy"] == ["invite", "lobby"]


def test_room_policy_lists_take_several_values_after_a_flag_or_the_flag_repeated(
    gateway: GatewayServer,
) -> None:
    """Issue 18: `--allow-domain a b` was refused (b read as a stray argument)."""
    args = admin_args(gateway)
    room = f"cli-policy-{secrets.token_hex(4)}"
    assert meetgate("room", "create", room, *args).returncode == 0
    result = meetgate(
        "room",
        "policy",
        room,
        "--allow-domain",
        "a.example",
        "B.example",
        "--allow-group",
        "staff",
        "board",
        "--allow-domain",
        "c.example",
        "--allow-email",
        "x@a.example",
        "y@b.example",
        "--host-email",
        "h@a.example",
        "--host-email",
        "i@b.example",
        "j@c.example",
        "--lobby",
        *args,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"room {room}: ways in: invite, lobby"
    with gateway.admin() as admin:
        rules = admin.get(f"/api/v1/rooms/{room}").json()["rules"]
    assert sorted(rules["allowed_domains"]) == ["a.example", "b.example", "c.example"]
    assert sorted(rules["allowed_groups"]) == ["board", "staff"]
    assert rules["allowed_email_count"] == 2 and rules["host_email_count"] == 3
    with gateway.admin() as admin:
        listed = admin.get(f"/api/v1/rooms/{room}/policy/emails/y@b.example").json()
    assert listed == {"allowed": True, "host": False}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--allow-domain"], "--allow-domain: expected at least one argument"),
        (["--allow-email", "--lobby"], "--allow-email: expected at least one argument"),
        (["--allow-group"], "--allow-group: expected at least one argument"),
        (["--host-email"], "--host-email: expected at least one argument"),
        (["--oidc"], "--oidc: expected at least one argument"),
        (["--allow-domain", "a.example", "uni.example/evil"], "This is not a valid domain"),
        (
            ["--allow-email", "ok@a.example", "not-an-address", "--allow-email", "b@b.example"],
            "This is not a valid address: not-an-address",
        ),
        (["--host-email", "h@a.example", "chair@uni.example\u202e"], "control, invisible"),
    ],
)
def test_room_policy_refuses_a_bad_value_among_several(
    gateway: GatewayServer, flags: list[str], message: str
) -> None:
    args = admin_args(gateway)
    room = f"cli-policy-{secrets.token_hex(4)}"
    assert meetgate("room", "create", room, *args).returncode == 0
    assert meetgate("room", "policy", room, "--lobby", *args).returncode == 0
    result = meetgate("room", "policy", room, *flags, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    with gateway.admin() as admin:
        saved = admin.get(f"/api/v1/rooms/{room}").json()
    assert saved["policy"] == ["invite", "lobby"] and saved["rules"]["allowed_domains"] == []


def test_room_language_is_set_changed_and_checked(gateway: GatewayServer) -> None:
    args = admin_args(gateway)
    name = f"cli-{secrets.token_hex(4)}"
    created = meetgate("room", "create", name, "--language", "zh-Hant", *args)
    assert created.returncode == 0, created.stderr
    assert "pages in zh-Hant by default" in created.stdout
    with gateway.admin() as admin:
        assert admin.get(f"/api/v1/rooms/{name}").json()["language"] == "zh-Hant"
    changed = meetgate("room", "set", name, "--language", "zh-Hans", *args)
    assert changed.returncode == 0 and "pages in zh-Hans by default" in changed.stdout
    cleared = meetgate("room", "set", name, "--language", "none", *args)
    assert cleared.returncode == 0 and "no default language" in cleared.stdout
    with gateway.admin() as admin:
        assert admin.get(f"/api/v1/rooms/{name}").json()["language"] is None
    for command in (["room", "create", f"{name}-x"], ["room", "set", name]):
        refused = meetgate(*command, "--language", "fr", *args)
        assert refused.returncode == 2
        assert "--language: invalid choice: 'fr'" in refused.stderr
        assert f"see `meetgate {' '.join(command[:2])} --help` for examples" in refused.stderr
    assert "--language" in help_text("room", "set").partition("Example:")[2]
    assert "--language zh-Hant" in help_text("room", "create").partition("Example:")[2]


def test_room_quiet_and_chat_limits_are_set_and_checked(gateway: GatewayServer) -> None:
    args = admin_args(gateway)
    name = f"cli-{secrets.token_hex(4)}"
    assert meetgate("room", "create", name, *args).returncode == 0
    on = meetgate("room", "quiet", name, "on", *args)
    assert on.returncode == 0, on.stderr
    assert on.stdout.startswith(f"room {name}: chat: quiet mode on (only hosts can chat), ")
    with gateway.admin() as admin:
        assert admin.get(f"/api/v1/rooms/{name}").json()["quiet"] is True
    off = meetgate("room", "quiet", name, "off", *args)
    assert off.returncode == 0 and "quiet mode off" in off.stdout

    changed = meetgate(
        "room",
        "set",
        name,
        "--chat-per-10s",
        "3",
        "--chat-max-bytes",
        "512",
        "--strikes",
        "never",
        "--private-to-hosts",
        "off",
        *args,
    )
    assert changed.returncode == 0, changed.stderr
    assert (
        "  chat: quiet mode off, 3 messages per 10 s, burst default, longest 512 bytes,"
        " removal after never refused, private messages to hosts when quiet refused"
    ) in changed.stdout
    with gateway.admin() as admin:
        room = admin.get(f"/api/v1/rooms/{name}").json()
    assert room["chat"] == {
        "quiet_private_to_hosts": False,
        "chat_per_10s": 3,
        "chat_burst": 0,
        "chat_max_bytes": 512,
        "guard_strikes": 0,
    }
    assert room["quiet"] is False
    # The room's log, as its hosts read it on the dashboard, says the admin made each change.
    host = admit(gateway, name, "Hilde Host", role="host")
    with gateway.client(cookies=host.cookies) as client:
        audit = client.get(f"/_meetgate/host/{name}/roster").json()["audit"]
    assert [(e["actor_name"], e["action"]) for e in audit] == [
        ("admin", "change chat limits"),
        ("admin", "quiet off"),
        ("admin", "quiet on"),
    ]
    back = meetgate("room", "set", name, "--strikes", "default", "--chat-per-10s", "0", *args)
    assert back.returncode == 0 and "removal after default refused" in back.stdout
    assert "0 messages" not in back.stdout and "default messages per 10 s" in back.stdout

    # Refused: by the parser, by the API's bounds (named by the option), by Meetgate's rule.
    for option, value, said in (
        ("--strikes", "often", "--strikes: a whole number, 'never' or 'default'"),
        ("--chat-burst", "-1", "--chat-burst: a whole number"),
        ("--chat-burst", "10001", "meetgate: --chat-burst: Input should be less than or equal"),
        ("--chat-max-bytes", "10", "Longest message: 0 (the gate's default) or 64 to"),
    ):
        refused = meetgate("room", "set", name, option, value, *args)
        assert refused.returncode == 2, (option, value)
        assert said in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    with gateway.admin() as admin:
        assert admin.get(f"/api/v1/rooms/{name}").json()["chat"]["chat_burst"] == 0
    refused = meetgate("room", "quiet", name, "maybe", *args)
    assert refused.returncode == 2 and "invalid choice: 'maybe'" in refused.stderr
    assert "meetgate room quiet board on" in help_text("room", "quiet")
    assert "--chat-per-10s" in help_text("room", "set").partition("Example:")[2]
