"""`meetgate doctor`'s verdict on trusted_proxies: public ranges judged merged (many small ones are
one wide one), IPv4-mapped IPv6 ranges as the IPv4 ranges they are, shared address space
(100.64.0.0/10) not taken for private."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.doctor import check_trusted_proxies
from gateway.doctor_findings import Verdict


@pytest.mark.parametrize(
    ("trusted", "verdict"),
    [
        (["::ffff:0:0/96"], Verdict.FAIL),
        (["::ffff:10.0.0.0/104"], Verdict.PASS),
        (["::ffff:8.0.0.0/104"], Verdict.FAIL),
        (["::ffff:93.184.216.34/128"], Verdict.WARN),
        (["100.64.0.0/10"], Verdict.WARN),
        (["100.64.0.1/32", "10.0.0.0/8"], Verdict.WARN),
        # Two halves of a /24: one /24, a front's subnet at most.
        (["93.184.216.0/25", "93.184.216.128/25"], Verdict.WARN),
        (["93.184.216.0/24", "93.184.217.0/32"], Verdict.FAIL),
        (["2001:db8::/32"], Verdict.PASS),
        (["2001:4860::/48", "2001:4861::/48"], Verdict.FAIL),
    ],
)
def test_trusted_proxies_verdicts(trusted: list[str], verdict: Verdict) -> None:
    assert check_trusted_proxies(trusted).verdict is verdict


def test_many_small_public_ranges_are_one_wide_range_on_a_short_line() -> None:
    """20,000 public /24s: a FAIL (not a WARN), and a line that names a few of them."""
    base = int(ipaddress.ip_address("20.0.0.0"))
    # Every other /24, so that merging cannot shorten the list.
    trusted = [str(ipaddress.ip_network((base + i * 512, 24))) for i in range(20_000)]
    finding = check_trusted_proxies(trusted)
    assert finding.verdict is Verdict.FAIL
    assert len(finding.detail) < 400, finding.detail
    assert "more" in finding.detail and "5,120,000 public addresses" in finding.detail
