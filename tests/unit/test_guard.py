"""The connection guard's keys and rules (gateway/edge/guard.py); its behaviour against a real
server is tests/integration/test_slow_clients.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.client_address import parse_networks
from gateway.edge.guard import address_key
from gateway.errors import ConfigError
from gateway.settings import load_settings
from tests.unit.test_settings import GOOD, write


def test_an_ipv4_client_is_capped_by_its_address() -> None:
    assert address_key(("203.0.113.7", 5000), ()) == address_key(("203.0.113.7", 6000), ())
    assert address_key(("203.0.113.7", 5000), ()) != address_key(("203.0.113.8", 5000), ())


def test_an_ipv6_client_is_capped_by_its_64() -> None:
    # A subscriber gets a /64 at least: every address in it is the same client to the cap.
    one = address_key(("2001:db8:1:2::1", 5000, 0, 0), ())
    assert one == address_key(("2001:db8:1:2:ffff:ffff:ffff:ffff", 5000, 0, 0), ())
    assert one != address_key(("2001:db8:1:3::1", 5000, 0, 0), ())


def test_an_ipv4_mapped_address_is_its_ipv4_address() -> None:
    assert address_key(("::ffff:203.0.113.7", 5000, 0, 0), ()) == address_key(
        ("203.0.113.7", 1), ()
    )


@pytest.mark.parametrize("peer", [None, (), "/run/meetgate.sock", ("not-an-address", 1)])
def test_a_peer_that_is_not_an_ip_address_is_not_capped_by_address(peer: object) -> None:
    assert address_key(peer, ()) is None


def test_a_trusted_proxy_is_not_capped_by_address() -> None:
    trusted = parse_networks(["10.0.0.0/8", "2001:db8::/32"])
    assert address_key(("10.1.2.3", 1), trusted) is None
    assert address_key(("::ffff:10.1.2.3", 1, 0, 0), trusted) is None
    assert address_key(("2001:db8::5", 1, 0, 0), trusted) is None
    assert address_key(("11.1.2.3", 1), trusted) is not None


def test_the_per_address_cap_cannot_exceed_the_replicas(tmp_path: Path) -> None:
    text = GOOD + "[limits]\nmax_connections = 100\nmax_connections_per_address = 101\n"
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ={})
    assert "max_connections_per_address must not exceed max_connections" in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("header_read_seconds", "0"),
        ("body_read_seconds", "-1"),
        ("max_connections", "8"),
        ("max_connections_per_address", "0"),
    ],
)
def test_limits_out_of_range_are_named(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, GOOD + f"[limits]\n{key} = {value}\n"), environ={})
    assert f"[limits] {key}" in str(caught.value)
