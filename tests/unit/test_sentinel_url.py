"""The `redis+sentinel://` store URL: what it names, and every malformed one refused at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import load_settings
from gateway.store.sentinel_url import SentinelLocation, parse_sentinel_url

GOOD_PASSWORD = "pw-" + "x" * 40


def test_addresses_master_database_and_credentials() -> None:
    where = parse_sentinel_url(
        f"redis+sentinel://:{GOOD_PASSWORD}@redis-0.redis:26379,10.0.0.2,[fd00::3]:26380/meetgate/4"
    )
    assert where == SentinelLocation(
        sentinels=(("redis-0.redis", 26379), ("10.0.0.2", 26379), ("fd00::3", 26380)),
        master_name="meetgate",
        db=4,
        username=None,
        password=GOOD_PASSWORD,
        sentinel_username=None,
        sentinel_password=GOOD_PASSWORD,
    )
    assert GOOD_PASSWORD not in repr(where)


def test_sentinel_credentials_can_differ_or_be_none() -> None:
    plain = parse_sentinel_url("redis+sentinel://s1/mymaster")
    assert (plain.db, plain.password, plain.sentinel_password) == (0, None, None)
    other = parse_sentinel_url("redis+sentinel://app:p%40ss@s1/m?sentinel_password=s%2Fpw")
    assert (other.username, other.password) == ("app", "p@ss")
    assert (other.sentinel_username, other.sentinel_password) == ("app", "s/pw")
    open_sentinels = parse_sentinel_url("redis+sentinel://:pw@s1/m?sentinel_password=")
    assert open_sentinels.password == "pw" and open_sentinels.sentinel_password is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://s1:26379", "must name the master"),
        ("redis+sentinel://s1:26379/", "must name the master"),
        ("redis+sentinel://s1/bad name", "must name the master"),
        ("redis+sentinel://s1/m/0/extra", "must name the master"),
        ("redis+sentinel://s1/m/x", "database after the master's name must be a number"),
        ("redis+sentinel:///m", "host:port"),
        ("redis+sentinel://s1,,s2/m", "host:port"),
        ("redis+sentinel://s1:port/m", "host:port"),
        ("redis+sentinel://[fd00::1/m", "host:port"),
        ("redis+sentinel://s1:70000/m", "outside 1-65535"),
        ("redis+sentinel://s1/m?socket_timeout=1", "unknown option 'socket_timeout'"),
        ("redis+sentinel://s1/m#frag", "fragment"),
    ],
)
def test_malformed_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sentinel_url(url)


def config(tmp_path: Path, store_url: str) -> Path:
    path = tmp_path / "meetgate.toml"
    path.write_text(
        f"""[admin]
token = "{"a" * 40}"
[store]
url = "{store_url}"
[tickets]
[[tickets.keys]]
secret = "{"s" * 40}"
[admission]
pseudonym_key = "{"p" * 40}"
""",
        encoding="utf-8",
    )
    return path


def test_settings_accept_a_sentinel_url(tmp_path: Path) -> None:
    url = f"redis+sentinel://:{GOOD_PASSWORD}@redis-0:26379,redis-1:26379/meetgate/0"
    assert load_settings(config(tmp_path, url), environ={}).store.url == url


def test_settings_name_a_bad_sentinel_url_without_its_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, f"redis+sentinel://:{GOOD_PASSWORD}@s1:26379"), environ={})
    report = str(caught.value)
    assert "[store] url (MEETGATE_STORE__URL): must name the master" in report
    assert GOOD_PASSWORD not in report
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, "sentinel://s1/m"), environ={})
    assert "redis+sentinel://" in str(caught.value)
