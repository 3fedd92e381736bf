"""What the gate makes of an upstream's response headers (gateway/proxy/headers.py): the cases
Jitsi's web server as the tests run it does not send (its own CSP, its own security headers, two
Dates, a Connection naming a field), and what a hostile or careless upstream could send."""

from __future__ import annotations

import pytest

from gateway.proxy.headers import downstream_response_headers, jitsi_security_headers

PLAIN = jitsi_security_headers(secure=False)
TLS = jitsi_security_headers(secure=True)
OWN_FRAME_ANCESTORS = (b"content-security-policy", b"frame-ancestors 'self'")


def values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def test_hsts_only_over_tls() -> None:
    assert values(downstream_response_headers([], PLAIN), b"strict-transport-security") == []
    assert values(downstream_response_headers([], TLS), b"strict-transport-security") == [
        b"max-age=31536000; includeSubDomains"
    ]


def test_the_upstreams_server_and_second_date_are_dropped() -> None:
    upstream = [
        (b"Server", b"nginx/1.22.1"),
        (b"Date", b"Sat, 05 Dec 2026 01:00:00 GMT"),
        (b"date", b"Sat, 05 Dec 2026 02:00:00 GMT"),
        (b"content-type", b"text/html"),
    ]
    out = downstream_response_headers(upstream, PLAIN)
    assert values(out, b"server") == []
    assert values(out, b"date") == [b"Sat, 05 Dec 2026 01:00:00 GMT"]
    assert values(out, b"content-type") == [b"text/html"]


def test_the_gates_security_headers_replace_the_upstreams() -> None:
    """An upstream granting the camera to every origin, or letting any site frame the page, is
    overruled; no field is sent twice with two values."""
    upstream = [
        (b"x-frame-options", b"ALLOW-FROM https://evil.example"),
        (b"Permissions-Policy", b"camera=*, geolocation=*"),
        (b"feature-policy", b"camera *"),
        (b"referrer-policy", b"unsafe-url"),
        (b"x-content-type-options", b"sniff"),
        (b"strict-transport-security", b"max-age=0"),
    ]
    out = downstream_response_headers(upstream, PLAIN)
    assert values(out, b"x-frame-options") == [b"SAMEORIGIN"]
    assert values(out, b"referrer-policy") == [b"no-referrer"]
    assert values(out, b"x-content-type-options") == [b"nosniff"]
    assert values(out, b"feature-policy") == []
    assert values(out, b"strict-transport-security") == []
    [policy] = values(out, b"permissions-policy")
    assert b"camera=(self)" in policy and b"geolocation=()" in policy and b"*" not in policy


def test_frame_ancestors_is_added_beside_an_upstream_csp_without_it() -> None:
    """A second CSP header restricts further (a browser enforces each); the upstream's stays."""
    upstream = [(b"content-security-policy", b"default-src 'self'; script-src 'self'")]
    out = downstream_response_headers(upstream, PLAIN)
    assert values(out, b"content-security-policy") == [
        b"default-src 'self'; script-src 'self'",
        b"frame-ancestors 'self'",
    ]


@pytest.mark.parametrize(
    "policy",
    [
        b"frame-ancestors 'none'",
        b"default-src 'self'; frame-ancestors https://intranet.example",
        b"default-src 'self';FRAME-ANCESTORS 'self'",
        b"img-src 'self', frame-ancestors 'self'",
        b"default-src 'self';\tframe-ancestors\t'self'",
    ],
)
def test_an_upstream_frame_ancestors_is_left_as_it_is(policy: bytes) -> None:
    out = downstream_response_headers([(b"content-security-policy", policy)], PLAIN)
    assert values(out, b"content-security-policy") == [policy]


@pytest.mark.parametrize(
    "policy",
    [
        b"default-src 'self'",
        b"default-src frame-ancestors",  # a source, not the directive
        b"frame-ancestorsx 'self'",
        b"",
        b";;;",
    ],
)
def test_what_only_looks_like_frame_ancestors_does_not_count(policy: bytes) -> None:
    out = downstream_response_headers([(b"content-security-policy", policy)], PLAIN)
    assert values(out, b"content-security-policy") == [policy, OWN_FRAME_ANCESTORS[1]]


def test_a_report_only_policy_does_not_count() -> None:
    """Report-only enforces nothing: the gate's frame-ancestors is still added."""
    upstream = [(b"content-security-policy-report-only", b"frame-ancestors *")]
    out = downstream_response_headers(upstream, PLAIN)
    assert OWN_FRAME_ANCESTORS in out


def test_a_field_the_upstreams_connection_names_is_dropped_but_not_the_gates() -> None:
    """An upstream cannot take the gate's headers off by naming them hop-by-hop."""
    upstream = [
        (b"connection", b"x-secret, x-frame-options, referrer-policy"),
        (b"x-secret", b"1"),
        (b"etag", b'"abc"'),
    ]
    out = downstream_response_headers(upstream, PLAIN)
    assert values(out, b"x-secret") == [] and values(out, b"connection") == []
    assert values(out, b"etag") == [b'"abc"']
    assert values(out, b"x-frame-options") == [b"SAMEORIGIN"]
    assert values(out, b"referrer-policy") == [b"no-referrer"]
