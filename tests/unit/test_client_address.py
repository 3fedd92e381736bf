"""The address a request is limited by: spoofed forwarding headers never count."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.client_address import (
    MAX_REMEMBERED,
    ClientAddresses,
    client_address,
    network_of,
    parse_networks,
)

TRUSTED = parse_networks(["10.0.0.0/8", "fd00::/8"])


def h(**headers: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]


def test_untrusted_peer_headers_are_ignored() -> None:
    headers = h(x_forwarded_for="1.2.3.4", forwarded="for=5.6.7.8")
    assert client_address("203.0.113.9", headers, TRUSTED) == "203.0.113.9"
    assert client_address("203.0.113.9", headers, ()) == "203.0.113.9"


def test_trusted_proxy_gives_rightmost_untrusted_hop() -> None:
    headers = h(x_forwarded_for="6.6.6.6, 198.51.100.7, 10.1.1.1")
    assert client_address("10.0.0.2", headers, TRUSTED) == "198.51.100.7"


def test_forwarded_header_with_ipv6_and_ports() -> None:
    headers = h(forwarded='for=6.6.6.6, for="[2001:db8::1]:4711";proto=https')
    assert client_address("fd00::5", headers, TRUSTED) == "2001:db8::1"
    headers = h(x_forwarded_for="198.51.100.7:5555")
    assert client_address("10.0.0.2", headers, TRUSTED) == "198.51.100.7"


def test_multiple_xff_headers_are_joined_in_order() -> None:
    headers = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"198.51.100.7")]
    assert client_address("10.0.0.2", headers, TRUSTED) == "198.51.100.7"


@pytest.mark.parametrize("garbage", ["", "unknown", "not-an-ip", "1.2.3", "[::1", "999.1.1.1"])
def test_garbage_hop_falls_back_to_the_trusted_peer(garbage: str) -> None:
    headers = h(x_forwarded_for=f"6.6.6.6, {garbage}")
    assert client_address("10.0.0.2", headers, TRUSTED) == "10.0.0.2"


def test_all_hops_trusted_gives_the_leftmost() -> None:
    headers = h(x_forwarded_for="10.9.9.9, 10.1.1.1")
    assert client_address("10.0.0.2", headers, TRUSTED) == "10.9.9.9"


def test_ipv4_mapped_ipv6_is_ipv4() -> None:
    assert client_address("::ffff:198.51.100.7", [], ()) == "198.51.100.7"


def test_networks() -> None:
    assert network_of("198.51.100.7") == "198.51.100.0/24"
    assert network_of("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert network_of("nonsense") == "unknown"


@settings(max_examples=200)
@given(st.text(max_size=300), st.text(max_size=300))
def test_no_header_makes_an_untrusted_peer_someone_else(xff: str, forwarded: str) -> None:
    headers = [(b"x-forwarded-for", xff.encode("utf-8")), (b"forwarded", forwarded.encode())]
    assert client_address("203.0.113.9", headers, TRUSTED) == "203.0.113.9"
    # Behind a trusted proxy, whatever the headers say, the answer is an address or the peer.
    answer = client_address("10.0.0.2", headers, TRUSTED)
    assert answer == "10.0.0.2" or network_of(answer) != "unknown"


hops = st.sampled_from(
    ["203.0.113.9", "10.0.0.3", "fd00::1", "[2001:db8::7]:443", "garbage", "198.51.100.7:80", ""]
)


@settings(max_examples=200, deadline=None)
@given(
    peer=st.sampled_from([None, "10.0.0.2", "203.0.113.5", "fd00::2", "not an address"]),
    xff=st.lists(hops, max_size=4),
    forwarded=st.lists(hops, max_size=3),
    trusted=st.booleans(),
)
def test_kept_answers_are_the_same_as_fresh_ones(
    peer: str | None, xff: list[str], forwarded: list[str], trusted: bool
) -> None:
    headers = [(b"user-agent", b"x")]
    if xff:
        headers.append((b"x-forwarded-for", ", ".join(xff).encode()))
    if forwarded:
        headers.append((b"forwarded", ", ".join(f"for={h}" for h in forwarded).encode()))
    networks = TRUSTED if trusted else ()
    addresses = ClientAddresses(networks)
    expected = client_address(peer, headers, networks)
    assert addresses.resolve(peer, headers) == expected
    assert addresses.resolve(peer, headers) == expected
    # A header a client could vary does not change what is kept for another peer's request.
    assert addresses.resolve("192.0.2.44", headers) == client_address(
        "192.0.2.44", headers, networks
    )


def test_kept_answers_are_bounded() -> None:
    addresses = ClientAddresses(TRUSTED)
    for n in range(MAX_REMEMBERED + 5):
        xff = f"198.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}".encode()
        assert addresses.resolve("10.0.0.2", [(b"x-forwarded-for", xff)]) == xff.decode()
    assert len(addresses._known) <= MAX_REMEMBERED


def test_long_forwarding_chains_are_answered_but_not_kept() -> None:
    addresses = ClientAddresses(TRUSTED)
    chain = ", ".join(["10.0.0.9"] * 100 + ["198.51.100.7"]).encode()
    assert addresses.resolve("10.0.0.2", [(b"x-forwarded-for", chain)]) == "198.51.100.7"
    assert len(addresses._known) == 0


@given(st.ip_addresses(v=4))
def test_the_quick_slash_24_is_the_parsed_one(address: object) -> None:
    text = str(address)
    assert network_of(text) == str(ipaddress.ip_network(f"{text}/24", strict=False))
