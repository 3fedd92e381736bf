"""`[jitsi] relayed_endpoints`: the Jitsi endpoints the gate relays besides signalling, checked
at start-up and named as the admin writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import load_settings

CONFIG = """
public_url = "https://meet.example.org"
[admin]
token = "{token}"
[jitsi]
relayed_endpoints = {endpoints}
[tickets]
[[tickets.keys]]
secret = "{secret}"
[admission]
pseudonym_key = "{secret}"
"""


def load(tmp_path: Path, endpoints: str) -> tuple[str, ...]:
    path = tmp_path / "meetgate.toml"
    path.write_text(CONFIG.format(token="t" * 40, secret="s" * 48, endpoints=endpoints))
    return load_settings(path, environ={}).jitsi.relayed_endpoints


def test_none_by_default(tmp_path: Path) -> None:
    assert load_settings(environ={}).jitsi.relayed_endpoints == ()
    assert load(tmp_path, "[]") == ()


def test_prefixes_and_exact_paths(tmp_path: Path) -> None:
    endpoints = load(tmp_path, '["/colibri-ws/", "/conference-request/v1", "/_api/room-info"]')
    assert endpoints == ("/colibri-ws/", "/conference-request/v1", "/_api/room-info")


@pytest.mark.parametrize(
    ("endpoints", "why"),
    [
        ('["colibri-ws"]', "lowercase path"),
        ('["/Colibri-WS/"]', "lowercase path"),
        ('["/"]', "lowercase path"),
        ('["//x"]', "lowercase path"),
        ('["/a/../b"]', "lowercase path"),
        ('["/x%2f/"]', "lowercase path"),
        ('["/x/http-bind"]', "signalling"),
        ('["/xmpp-websocket/"]', "signalling"),
        ('["/_meetgate/keys/"]', "Meetgate's own"),
        ('["/j/"]', "Meetgate's own"),
        ('["/colibri-ws/", "/colibri-ws/"]', "twice"),
        ('["/room-info"]', "prosody's internal API"),
        ('["/kick-participant"]', "prosody's internal API"),
        ('["/end-meeting/"]', "prosody's internal API"),
    ],
)
def test_bad_endpoints_are_named(tmp_path: Path, endpoints: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, endpoints)
    report = str(caught.value)
    assert "[jitsi] relayed_endpoints (MEETGATE_JITSI__RELAYED_ENDPOINTS)" in report
    assert why in report


def test_set_from_the_environment(tmp_path: Path) -> None:
    settings = load_settings(environ={"MEETGATE_JITSI__RELAYED_ENDPOINTS": '["/colibri-ws/"]'})
    assert settings.jitsi.relayed_endpoints == ("/colibri-ws/",)
