"""Settings: one TOML file plus MEETGATE_* overrides, every bad key reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import load_settings
from gateway.ticket_keys import hmac_key_id

GOOD = """
public_url = "https://meet.example.org"
[admin]
token = "{token}"
[tickets]
[[tickets.keys]]
secret = "{secret}"
[admission]
pseudonym_key = "{secret}"
""".format(token="t" * 40, secret="s" * 48)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "meetgate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_config_runs_ephemeral_with_fresh_secrets() -> None:
    first = load_settings(environ={})
    second = load_settings(environ={})
    assert first.ephemeral
    assert first.store.url == "memory://"
    assert first.admin.token.get_secret_value() != second.admin.token.get_secret_value()


def test_toml_file_and_env_override(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD), environ={"MEETGATE_TICKETS__TTL_SECONDS": "60"})
    assert not settings.ephemeral
    assert settings.secure
    assert settings.tickets.ttl_seconds == 60
    assert settings.tickets.signing_kid == hmac_key_id(b"s" * 48)


def test_every_bad_key_is_named(tmp_path: Path) -> None:
    text = GOOD.replace('public_url = "https://meet.example.org"', 'public_url = "ftp://x"')
    text += "\n[listen]\nport = 70000\nbogus = 1\n"
    with pytest.raises(ConfigError) as caught:
        load_settings(
            write(tmp_path, text),
            environ={"MEETGATE_JITSI__APP_ID": "vpaas-magic-cookie-123"},
        )
    report = str(caught.value)
    assert "public_url (MEETGATE_PUBLIC_URL)" in report
    assert "[listen] port (MEETGATE_LISTEN__PORT)" in report
    assert "[listen] bogus" in report and "unknown setting" in report
    assert "[jitsi] app_id (MEETGATE_JITSI__APP_ID)" in report


def test_weak_secrets_refused_and_never_echoed(tmp_path: Path) -> None:
    text = GOOD.replace("t" * 40, "short-token-1234")
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ={})
    assert "[admin] token" in str(caught.value)
    assert "short-token-1234" not in str(caught.value)


def test_secrets_hidden_in_repr(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD), environ={})
    assert "s" * 48 not in repr(settings)
    assert "t" * 40 not in repr(settings)


def test_bad_toml_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "public_url = "), environ={})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_config_without_secrets_is_not_ephemeral(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, 'public_url = "http://127.0.0.1:8000"\n'), environ={})
    # A table is named as the file writes it.
    assert "[admin] (MEETGATE_ADMIN__…): required" in str(caught.value)
    assert "[tickets] (MEETGATE_TICKETS__…): required" in str(caught.value)


def test_a_check_across_a_table_names_the_table(tmp_path: Path) -> None:
    text = GOOD + "[store]\ndeadline_seconds = 5\nrequest_seconds = 1\n"
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ={})
    assert "[store] (MEETGATE_STORE__…): deadline_seconds must not exceed request_seconds" in str(
        caught.value
    )


def test_email_codes_without_an_smtp_server_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, GOOD + "[email_codes]\ndigits = 8\n"), environ={})
    assert "[smtp] host (MEETGATE_SMTP__HOST): required, because [email_codes] is set" in str(
        caught.value
    )
    # An [smtp] table without a host names no server either; from the environment, as in a file.
    with pytest.raises(ConfigError, match=r"\[smtp\] host"):
        load_settings(
            write(tmp_path, GOOD + '[smtp]\nsender = "meet@example.org"\n'),
            environ={"MEETGATE_EMAIL_CODES__TTL_SECONDS": "300"},
        )
    served = load_settings(
        write(tmp_path, GOOD),
        environ={"MEETGATE_EMAIL_CODES__TTL_SECONDS": "300", "MEETGATE_SMTP__HOST": "127.0.0.1"},
    )
    assert served.smtp.host == "127.0.0.1" and served.email_codes.ttl_seconds == 300


@pytest.mark.parametrize(
    ("listen", "public_url"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"MEETGATE_LISTEN__PORT": "9123"}, "http://127.0.0.1:9123"),
        (
            {"MEETGATE_LISTEN__HOST": "0.0.0.0", "MEETGATE_LISTEN__PORT": "9123"},
            "http://127.0.0.1:9123",
        ),
        ({"MEETGATE_LISTEN__HOST": "::", "MEETGATE_LISTEN__PORT": "9123"}, "http://[::1]:9123"),
        (
            {"MEETGATE_LISTEN__PORT": "9123", "MEETGATE_PUBLIC_URL": "https://meet.example.org"},
            "https://meet.example.org",
        ),
    ],
)
def test_a_run_without_config_is_reached_where_it_listens(
    listen: dict[str, str], public_url: str
) -> None:
    assert load_settings(environ=listen).public_url == public_url


def test_a_config_file_keeps_its_public_url_whatever_the_port(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD), environ={"MEETGATE_LISTEN__PORT": "9123"})
    assert settings.public_url == "https://meet.example.org"
