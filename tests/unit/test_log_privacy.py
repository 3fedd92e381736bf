"""What may reach the log: the handlers' filter, the last-resort scrubber, client networks and the
access log's targets. Pure rules; tests/integration/test_log_secrets.py runs the real server."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from gateway.access_log import AccessLog, redact
from gateway.cli import store_for_log
from gateway.errors import ConfigError
from gateway.log_privacy import PrivateLog, client_network, install, scrub
from gateway.settings import load_settings

TICKET = "eyJhbGciOiJIUzI1NiJ9.eyJyb29tIjoiciJ9.c2lnbmF0dXJl"


def record(name: str, level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def written(entry: logging.LogRecord) -> str | None:
    """The line a handler guarded by PrivateLog writes for `entry`, or None."""
    if not PrivateLog().filter(entry):
        return None
    return logging.Formatter("%(name)s: %(message)s").format(entry)


@pytest.mark.parametrize(
    ("template", "args"),
    [
        # A server's usual lines for each WebSocket (uvicorn's, say), with the peer and ticket.
        ('%s - "WebSocket %s" [accepted]', ("127.0.0.1:5555", f"/xmpp-websocket?token={TICKET}")),
        ('%s - "WebSocket %s" 403', ("127.0.0.1:5555", f"/xmpp-websocket?token={TICKET}")),
        ("connection open", ()),
        ("connection rejected (%d %s)", (403, "Forbidden")),
        # The WebSocket library at DEBUG: request line and headers.
        ("< GET %s HTTP/1.1", (f"/xmpp-websocket?token={TICKET}",)),
        ("< %s: %s", ("Cookie", "meetgate=admission-cookie")),
    ],
)
@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO])
@pytest.mark.parametrize("name", ["websockets.server", "uvicorn.error"])
def test_a_librarys_lines_about_a_connection_are_dropped(
    template: str, args: tuple[object, ...], level: int, name: str
) -> None:
    assert written(record(name, level, template, *args)) is None


@pytest.mark.parametrize(
    "name", ["httpx", "httpcore.http11", "websockets.client", "authlib", "redis", "asyncio", "x"]
)
def test_other_libraries_inform_nothing(name: str) -> None:
    line = f"HTTP Request: GET http://prosody/http-bind?token={TICKET}"
    assert written(record(name, logging.INFO, line)) is None
    assert written(record(name, logging.DEBUG, line)) is None


def test_meetgates_own_lines_pass_at_every_level() -> None:
    for level in (logging.DEBUG, logging.INFO, logging.WARNING):
        assert written(record("meetgate.gate", level, "refused %s", "websocket")) is not None
    assert written(record("meetgate", logging.INFO, "gate on %s", "x")) == "meetgate: gate on x"


def test_warnings_and_tracebacks_are_scrubbed() -> None:
    try:
        raise ValueError(f"bad URI ws://up/xmpp-websocket?room=r&token={TICKET} for a@b.example")
    except ValueError:
        entry = logging.LogRecord(
            "meetgate.server",
            logging.ERROR,
            __file__,
            1,
            "the application failed on a request",
            (),
            sys.exc_info(),
        )
    line = written(entry)
    assert line is not None and "Traceback" in line and "ValueError" in line
    assert TICKET not in line and "a@b.example" not in line
    warned = written(record("websockets.client", logging.WARNING, "cookie %s", "meetgate=abc"))
    assert warned is not None and "abc" not in warned


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"/xmpp-websocket?room=r&token={TICKET}", TICKET),
        (f"bare {TICKET} in text", "c2lnbmF0dXJl"),
        ("/http-bind?room=r&token=opaque-value", "opaque-value"),
        ("/cb?code=the-code&state=the-state", "the-code"),
        ("/cb?code=the-code&state=the-state", "the-state"),
        ("GET /j/Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1 HTTP/1.1", "Zm9vYmFy"),
        ("< Cookie: meetgate=abc; other=x", "abc"),
        ("set-cookie: __Host-meetgate=abc; Path=/", "abc"),
        ("meetgate-lobby=lobbyvalue; meetgate_signin=signinvalue", "lobbyvalue"),
        ("meetgate-lobby=lobbyvalue; meetgate_signin=signinvalue", "signinvalue"),
        ("Authorization: Bearer admin-token", "admin-token"),
        ("retrying with TOKEN=upper-case-value", "upper-case-value"),
        ("__Secure-meetgate_signin=signed.value; Path=/", "signed.value"),
        ("redis+sentinel://s:26379/m?sentinel_password=hunter2", "hunter2"),
        ("mail for ada.lovelace+x@uni.example failed", "ada.lovelace"),
    ],
)
def test_scrub_removes_secret_shapes(text: str, secret: str) -> None:
    assert secret not in scrub(text)


def test_scrub_keeps_what_is_not_secret() -> None:
    line = "GET /room-1?room=room-1 200 1.0ms [abc] status_code=200 gate on http://127.0.0.2:80"
    assert scrub(line) == line


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("127.0.0.1", "127.0.0.0/24"),
        ("203.0.113.77", "203.0.113.0/24"),
        ("::1", "::/48"),
        ("2001:db8:1234:5678::9", "2001:db8:1234::/48"),
        ("::ffff:198.51.100.7", "198.51.100.0/24"),
        ("unknown", None),
        ("", None),
    ],
)
def test_client_networks(address: str, network: str | None) -> None:
    assert client_network(address) == network


def test_install_guards_each_handler_once_and_quiets_the_libraries() -> None:
    loggers = [logging.getLogger(name) for name in ("httpx", "websockets")]
    levels = [logger.level for logger in loggers]
    handler = logging.NullHandler()
    try:
        install([handler], logging.DEBUG)
        install([handler], logging.DEBUG)
        assert sum(isinstance(f, PrivateLog) for f in handler.filters) == 1
        assert logging.getLogger("httpx").level == logging.WARNING
        assert logging.getLogger("websockets").level == logging.WARNING
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def test_redact_writes_only_the_rooms_value() -> None:
    line = redact("/xmpp-websocket", f"room=r&token={TICKET}&previd=abc&%74oken=zz&Token=y&v=1")
    assert line == (
        "/xmpp-websocket?room=r&token=[redacted]&previd=[redacted]&token=[redacted]"
        "&Token=[redacted]&v=[redacted]"
    )
    assert redact("/j/SECRETSECRETSECRETSECRETSECRET1", "") == "/j/[invite]"


def test_redact_escapes_what_could_forge_a_line() -> None:
    line = redact("/x\n2024-01-01 INFO meetgate.access: GET /forged", "room=a%0Ab c")
    assert "\n" not in line and " " not in line


async def test_access_log_names_the_network_only_when_asked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})["client_addr"] = "198.51.100.7"
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    caplog.set_level(logging.INFO, logger="meetgate.access")
    for addresses in ("off", "truncated"):
        transport = httpx.ASGITransport(AccessLog(app, client_addresses=addresses))
        async with httpx.AsyncClient(transport=transport, base_url="http://gate") as client:
            await client.get("/page")
    off, truncated = [r.getMessage() for r in caplog.records if r.name == "meetgate.access"]
    assert "198.51" not in off and " from " not in off
    assert truncated.endswith(" from 198.51.100.0/24") and "198.51.100.7" not in truncated


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("memory://", "memory://"),
        ("redis://:hunter2@redis:6379/0", "redis://redis:6379/0"),
        (
            "redis+sentinel://u:p@a:26379,b:26379/meetgate/0?sentinel_password=zz",
            "redis+sentinel://a:26379,b:26379/meetgate/0",
        ),
    ],
)
def test_the_store_is_logged_without_credentials(url: str, logged: str) -> None:
    assert store_for_log(url) == logged


def test_client_addresses_take_off_or_truncated_only(tmp_path: Path) -> None:
    environ = {"MEETGATE_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_settings(environ=environ)
    assert "[logging]" not in str(refused.value)
    for value in ("truncated", "full"):
        environ["MEETGATE_LOGGING__CLIENT_ADDRESSES"] = value
        with pytest.raises(ConfigError) as refused:
            load_settings(environ=environ)
        named = "[logging] client_addresses (MEETGATE_LOGGING__CLIENT_ADDRESSES)"
        assert (named in str(refused.value)) is (value == "full")
