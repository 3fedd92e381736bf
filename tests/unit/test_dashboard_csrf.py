"""The host dashboard's CSRF tokens: bound to one host admission and one room, keyed."""

from __future__ import annotations

import pytest

from gateway.errors import CsrfFailed
from gateway.host.dashboard import CsrfTokens

HOST = "a" * 64
OTHER_HOST = "b" * 64


def test_a_token_is_good_for_its_admission_and_room_only() -> None:
    tokens = CsrfTokens(b"k" * 32)
    token = tokens.issue(HOST, "weekly")
    tokens.check(token, HOST, "weekly")
    for admission, room in ((OTHER_HOST, "weekly"), (HOST, "weekly--1"), (HOST, "other")):
        with pytest.raises(CsrfFailed):
            tokens.check(token, admission, room)


@pytest.mark.parametrize("given", [None, "", "x", "é" * 64, "\ud800"])
def test_missing_and_odd_tokens_are_refused(given: str | None) -> None:
    with pytest.raises(CsrfFailed):
        CsrfTokens(b"k" * 32).check(given, HOST, "weekly")


def test_another_deployment_key_makes_other_tokens() -> None:
    token = CsrfTokens(b"k" * 32).issue(HOST, "weekly")
    assert CsrfTokens(b"j" * 32).issue(HOST, "weekly") != token
    with pytest.raises(CsrfFailed):
        CsrfTokens(b"j" * 32).check(token, HOST, "weekly")
