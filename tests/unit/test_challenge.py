"""The proof-of-work challenge: a correct answer admits; each bad one is refused for its reason."""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.admission.challenge import (
    DEFAULT_MAX_AGE_SECONDS,
    MAX_CLOCK_SKEW_SECONDS,
    Challenge,
    ChallengeFailed,
    RefusalReason,
    Solved,
    difficulty_for,
    issue_challenge,
    leading_zero_bits,
    verify_solution,
)
from gateway.errors import MeetgateError

KEY = secrets.token_bytes(32)
OTHER_KEY = secrets.token_bytes(32)
NOW = 1_800_000_000.0
ADDR = "198.51.100.7"
ROOM = "team-call"
DIFFICULTY = 8


def zero_bits(token: str, answer: str) -> int:
    return leading_zero_bits(hashlib.sha256(f"{token}:{answer}".encode()).digest())


def find_answer(token: str, difficulty: int, start: int = 0) -> str:
    """The smallest answer from `start` on with enough zero bits, by brute force."""
    for n in itertools.count(start):
        if zero_bits(token, str(n)) >= difficulty:
            return str(n)
    raise AssertionError("unreachable")


def find_short_answer(token: str, difficulty: int) -> str:
    """An answer with fewer than `difficulty` zero bits."""
    for n in itertools.count():
        if zero_bits(token, str(n)) < difficulty:
            return str(n)
    raise AssertionError("unreachable")


def issue(
    *, room: str = ROOM, addr: str = ADDR, now: float = NOW, difficulty: int = DIFFICULTY
) -> Challenge:
    return issue_challenge(KEY, client_addr=addr, room=room, now=now, difficulty=difficulty)


def verify(
    token: str,
    answer: str,
    *,
    key: bytes = KEY,
    room: str = ROOM,
    addr: str = ADDR,
    now: float = NOW + 10,
    max_age: float = DEFAULT_MAX_AGE_SECONDS,
) -> Solved:
    return verify_solution(
        key, token, answer, client_addr=addr, room=room, now=now, max_age_seconds=max_age
    )


def refused(reason: RefusalReason, token: str, answer: str, **kwargs: Any) -> None:
    with pytest.raises(ChallengeFailed) as info:
        verify(token, answer, **kwargs)
    assert info.value.reason == reason
    assert info.value.status == 403
    assert info.value.code == "challenge_failed"
    # One fixed public message: it never names the reason, the token or the address.
    assert info.value.message == ChallengeFailed.message


@pytest.fixture(scope="module")
def solved() -> tuple[Challenge, str]:
    challenge = issue()
    return challenge, find_answer(challenge.token, DIFFICULTY)


def decode(token: str) -> bytearray:
    return bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --- the happy path -------------------------------------------------------------------------


def test_a_correct_answer_verifies(solved: tuple[Challenge, str]) -> None:
    challenge, answer = solved
    result = verify(challenge.token, answer)
    assert result.difficulty == DIFFICULTY
    assert result.expires_at == pytest.approx(NOW + DEFAULT_MAX_AGE_SECONDS, abs=0.001)
    assert challenge.expires_at == pytest.approx(result.expires_at)
    assert challenge.difficulty == DIFFICULTY
    assert len(result.challenge_id) >= 16


def test_challenge_is_an_exception_with_a_public_message() -> None:
    error = ChallengeFailed("expired")
    assert isinstance(error, MeetgateError)
    assert error.status == 403
    assert error.code == "challenge_failed"
    assert "JavaScript" in error.message


def test_tokens_are_compact_url_safe_and_carry_no_address() -> None:
    longest_room = "r" * 64
    for addr in (ADDR, "2001:db8::1"):
        token = issue(room=longest_room, addr=addr, difficulty=24).token
        assert len(token) < 200
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        assert addr.encode() not in decode(token)
        assert addr not in token


def test_every_challenge_has_its_own_id_with_96_bits_or_more() -> None:
    first, second = issue(difficulty=0), issue(difficulty=0)
    assert first.token != second.token
    ids = {verify(c.token, "0").challenge_id for c in (first, second)}
    assert len(ids) == 2
    for challenge_id in ids:
        assert len(base64.urlsafe_b64decode(challenge_id + "==")) * 8 >= 96


def test_replayed_answer_gives_the_same_challenge_id(solved: tuple[Challenge, str]) -> None:
    """verify_solution is pure; the caller refuses a replay by claiming the id once."""
    challenge, answer = solved
    first = verify(challenge.token, answer, now=NOW + 1)
    again = verify(challenge.token, answer, now=NOW + 50)
    assert again.challenge_id == first.challenge_id
    other_answer = find_answer(challenge.token, DIFFICULTY, start=int(answer) + 1)
    assert verify(challenge.token, other_answer).challenge_id == first.challenge_id


# --- refusals -------------------------------------------------------------------------------


def test_wrong_answer_is_refused(solved: tuple[Challenge, str]) -> None:
    challenge, _ = solved
    refused("insufficient_work", challenge.token, find_short_answer(challenge.token, DIFFICULTY))


def test_fewer_zero_bits_than_asked_is_refused() -> None:
    """An answer good for difficulty 8 does not pass a difficulty-12 challenge unless lucky."""
    challenge = issue(difficulty=12)
    answer = next(
        str(n) for n in itertools.count() if DIFFICULTY <= zero_bits(challenge.token, str(n)) < 12
    )
    refused("insufficient_work", challenge.token, answer)
    good = find_answer(challenge.token, 12)
    assert zero_bits(challenge.token, good) >= 12
    assert verify(challenge.token, good).difficulty == 12


def test_answer_for_another_room_is_refused(solved: tuple[Challenge, str]) -> None:
    challenge, answer = solved
    refused("wrong_room", challenge.token, answer, room="other-room")
    refused("wrong_room", challenge.token, answer, room=ROOM + "x")
    refused("wrong_room", challenge.token, answer, room=ROOM[:-1])


def test_answer_from_another_client_address_is_refused(solved: tuple[Challenge, str]) -> None:
    challenge, answer = solved
    refused("mac_mismatch", challenge.token, answer, addr="198.51.100.8")
    refused("mac_mismatch", challenge.token, answer, addr="")
    refused("mac_mismatch", challenge.token, answer, addr=ADDR + " ")


def test_stale_challenge_is_refused(solved: tuple[Challenge, str]) -> None:
    challenge, answer = solved
    assert verify(challenge.token, answer, now=NOW + DEFAULT_MAX_AGE_SECONDS)
    refused("expired", challenge.token, answer, now=NOW + DEFAULT_MAX_AGE_SECONDS + 0.01)
    refused("expired", challenge.token, answer, now=NOW + 31, max_age=30)
    refused("expired", challenge.token, answer, now=NOW + 86_400 * 365)


def test_future_dated_challenge_is_refused() -> None:
    challenge = issue(now=NOW + 60, difficulty=0)
    refused("future", challenge.token, "0", now=NOW)
    within_skew = issue(now=NOW + MAX_CLOCK_SKEW_SECONDS, difficulty=0)
    assert verify(within_skew.token, "0", now=NOW)
    beyond_skew = issue(now=NOW + MAX_CLOCK_SKEW_SECONDS + 0.01, difficulty=0)
    refused("future", beyond_skew.token, "0", now=NOW)


def test_wrong_key_is_refused(solved: tuple[Challenge, str]) -> None:
    challenge, answer = solved
    refused("mac_mismatch", challenge.token, answer, key=OTHER_KEY)
    refused("mac_mismatch", challenge.token, answer, key=KEY[:-1] + bytes([KEY[-1] ^ 1]))


# Byte offsets in a token: version 0, nonce 1..16, difficulty 17, issued-at 18..25, room 26..,
# MAC the last 32 bytes.
FIELDS = {
    "version": 0,
    "nonce": 5,
    "difficulty": 17,
    "issued_at": 25,
    "room": 26,
    "mac": -1,
}


@pytest.mark.parametrize("field", sorted(FIELDS))
def test_tampering_with_any_field_is_refused(field: str) -> None:
    challenge = issue(difficulty=0)
    assert verify(challenge.token, "0")
    raw = decode(challenge.token)
    raw[FIELDS[field]] ^= 0x01
    refused("mac_mismatch", encode(bytes(raw)), "0")


def test_lowering_the_difficulty_is_refused(solved: tuple[Challenge, str]) -> None:
    challenge, _ = solved
    raw = decode(challenge.token)
    raw[17] = 0
    refused("mac_mismatch", encode(bytes(raw)), "0")


def test_moving_the_issue_time_is_refused(solved: tuple[Challenge, str]) -> None:
    challenge, answer = solved
    raw = decode(challenge.token)
    raw[18:26] = struct.pack(">Q", int((NOW + 3600) * 1000))
    refused("mac_mismatch", encode(bytes(raw)), answer, now=NOW + 3600)


def test_swapping_the_room_is_refused(solved: tuple[Challenge, str]) -> None:
    challenge, answer = solved
    raw = decode(challenge.token)
    forged = bytes(raw[:26]) + b"other-room" + bytes(raw[-32:])
    refused("mac_mismatch", encode(forged), answer, room="other-room")


def test_truncated_and_extended_tokens_are_refused(solved: tuple[Challenge, str]) -> None:
    challenge, answer = solved
    raw = bytes(decode(challenge.token))
    refused("mac_mismatch", encode(raw[:-1]), answer)
    refused("mac_mismatch", encode(raw[:-33] + raw[-32:]), answer)
    refused("mac_mismatch", encode(raw + b"\x00"), answer)
    refused("malformed", encode(raw[:40]), answer)
    refused("malformed", encode(raw + b"\x00" * 64), answer)


def test_another_spelling_of_the_same_token_is_refused() -> None:
    """Base64 with stray low bits decodes to the same bytes; only the canonical form passes."""
    challenge = issue(difficulty=0)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = challenge.token[-1]
    respelled = [
        challenge.token[:-1] + c
        for c in alphabet
        if c != last and decode(challenge.token[:-1] + c) == decode(challenge.token)
    ]
    assert respelled, "this token length has no alternative spelling"
    for token in respelled:
        refused("malformed", token, "0")
    refused("malformed", challenge.token + "=", "0")
    for char in "+/.~ ":
        refused("malformed", challenge.token[:10] + char + challenge.token[11:], "0")


def test_the_longest_and_shortest_answers_are_accepted() -> None:
    challenge = issue(difficulty=0)
    assert verify(challenge.token, "0")
    assert verify(challenge.token, "9" * 20)


GARBAGE_ANSWERS = {
    "empty": "",
    "negative": "-1",
    "plus": "+1",
    "leading space": " 1",
    "trailing space": "1 ",
    "trailing newline": "1\n",
    "decimal point": "1.0",
    "exponent": "1e3",
    "hex": "0x1f",
    "underscore": "1_000",
    "21 digits": "9" * 21,
    "arabic-indic digits": "\u0661\u0662\u0663",
    "fullwidth digits": "\uff11\uff12\uff13",
    "vulgar fraction": "\u00bd",
    "nan": "NaN",
    "huge text": "x" * 100_000,
    "huge number": "1" * 10_000,
    "nul": "\x00",
}


@pytest.mark.parametrize("answer", GARBAGE_ANSWERS.values(), ids=GARBAGE_ANSWERS.keys())
def test_garbage_answers_are_refused(answer: str) -> None:
    refused("bad_answer", issue(difficulty=0).token, answer)


GARBAGE_TOKENS = {
    "empty": ("", "malformed"),
    "padding only": ("=", "malformed"),
    "one char": ("A", "malformed"),
    "too short": ("AA", "malformed"),
    "dots": ("....", "malformed"),
    "huge": ("a" * 100_000, "malformed"),
    "unicode": ("\u00e9" * 80, "malformed"),
    "nul bytes": ("\x00" * 80, "malformed"),
    "standard base64 alphabet": ("+/" * 50, "malformed"),
    "another format": ("v1.abc.def", "malformed"),
    "short payload": ("dG9rZW4", "malformed"),
    "longest length, all zero": ("A" * 163, "mac_mismatch"),
}


@pytest.mark.parametrize(("token", "reason"), GARBAGE_TOKENS.values(), ids=GARBAGE_TOKENS.keys())
def test_garbage_tokens_are_refused(token: str, reason: RefusalReason) -> None:
    refused(reason, token, "0")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(token=st.text(max_size=300), answer=st.text(max_size=40))
def test_arbitrary_text_never_verifies_or_crashes(token: str, answer: str) -> None:
    with pytest.raises(ChallengeFailed):
        verify(token, answer)


@settings(max_examples=60, deadline=None)
@given(
    raw=st.binary(min_size=0, max_size=200), answer=st.from_regex(r"[0-9]{1,20}", fullmatch=True)
)
def test_arbitrary_well_encoded_tokens_never_verify(raw: bytes, answer: str) -> None:
    with pytest.raises(ChallengeFailed) as info:
        verify(encode(raw), answer)
    assert info.value.reason in ("malformed", "mac_mismatch")


@settings(max_examples=40, deadline=None)
@given(answer=st.text(max_size=30).filter(lambda s: not (s.isascii() and s.isdigit())))
def test_arbitrary_non_digit_answers_are_refused(answer: str) -> None:
    challenge = issue(difficulty=0)
    refused("bad_answer", challenge.token, answer)


@settings(max_examples=30, deadline=None)
@given(room=st.text(max_size=40), addr=st.text(max_size=40))
def test_odd_rooms_and_addresses_are_refused_not_crashing(room: str, addr: str) -> None:
    challenge = issue(difficulty=0)
    if room == ROOM and addr == ADDR:
        return
    with pytest.raises(ChallengeFailed) as info:
        verify(challenge.token, "0", room=room, addr=addr)
    assert info.value.reason == ("wrong_room" if addr == ADDR else "mac_mismatch")


# --- issuing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"difficulty": -1},
        {"difficulty": 33},
        {"room": ""},
        {"room": "r" * 65},
        {"now": float("nan")},
        {"now": float("inf")},
        {"now": -1.0},
    ],
)
def test_issue_refuses_values_it_cannot_encode(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        issue(**kwargs)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError):
        issue_challenge(b"short", client_addr=ADDR, room=ROOM, now=NOW, difficulty=1)
    challenge = issue(difficulty=0)
    with pytest.raises(ValueError):
        verify_solution(b"", challenge.token, "0", client_addr=ADDR, room=ROOM, now=NOW)


def test_ipv6_addresses_and_long_rooms_round_trip() -> None:
    challenge = issue_challenge(
        KEY, client_addr="2001:db8::42", room="r" * 64, now=NOW, difficulty=DIFFICULTY
    )
    answer = find_answer(challenge.token, DIFFICULTY)
    solved = verify_solution(
        KEY, challenge.token, answer, client_addr="2001:db8::42", room="r" * 64, now=NOW
    )
    assert solved.difficulty == DIFFICULTY


# --- difficulty -----------------------------------------------------------------------------


def test_difficulty_is_the_base_when_quiet() -> None:
    assert difficulty_for(0) == 16
    assert difficulty_for(99) == 16
    assert difficulty_for(-5) == 16
    assert difficulty_for(0, base=10) == 10


def test_difficulty_rises_one_bit_per_step() -> None:
    assert difficulty_for(100) == 17
    assert difficulty_for(250) == 18
    assert difficulty_for(30, base=10, step=10, maximum=20) == 13


def test_difficulty_is_capped() -> None:
    assert difficulty_for(800) == 24
    assert difficulty_for(10**9) == 24
    assert difficulty_for(10**9, maximum=20) == 20


@given(a=st.integers(-(10**6), 10**6), b=st.integers(-(10**6), 10**6))
@settings(max_examples=50)
def test_difficulty_is_monotone_and_bounded(a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert 16 <= difficulty_for(low) <= difficulty_for(high) <= 24


def test_difficulty_step_must_be_positive() -> None:
    with pytest.raises(ValueError):
        difficulty_for(10, step=0)
